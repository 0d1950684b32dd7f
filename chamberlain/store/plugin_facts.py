"""SQL for plugin facts (migration 0011): the append-only record ``fact_outputs`` asks for.

Like :mod:`chamberlain.store.sqlite`, every function is synchronous and called only
by the JobStore actor, inside the transaction of the batch it is serving, so a fact
is written in the same commit that settles its job: a crash keeps both or neither.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from chamberlain.records import PluginFact

_COLUMNS = "seq, plugin, fact_type, job_id, command, fact, created_at"


def record(conn: sqlite3.Connection, facts: Iterable[PluginFact]) -> None:
    """Append ``facts`` (their ``seq`` is ignored: the table numbers them)."""
    conn.executemany(
        "INSERT INTO plugin_facts (plugin, fact_type, job_id, command, fact, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                f.plugin,
                f.fact_type,
                f.job_id,
                f.command,
                json.dumps(dict(f.fact), separators=(",", ":")),
                f.created_at,
            )
            for f in facts
        ],
    )


def newest(
    conn: sqlite3.Connection, plugin: str, *, fact_type: str | None = None, limit: int = 50
) -> list[PluginFact]:
    """The plugin's newest facts (of ``fact_type``, when given), newest first."""
    where, args = "plugin = ?", [plugin]
    if fact_type is not None:
        where += " AND fact_type = ?"
        args.append(fact_type)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM plugin_facts WHERE {where} ORDER BY seq DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [_fact(row) for row in rows]


def prune(conn: sqlite3.Connection, *, older_than: float, batch: int = 5000) -> int:
    """Delete up to ``batch`` facts recorded before ``older_than``."""
    cur = conn.execute(
        "DELETE FROM plugin_facts WHERE seq IN"
        " (SELECT seq FROM plugin_facts WHERE created_at < ? LIMIT ?)",
        (older_than, batch),
    )
    return cur.rowcount


def _fact(row: sqlite3.Row) -> PluginFact:
    fact: Mapping[str, Any] = json.loads(row["fact"])
    return PluginFact(
        seq=row["seq"],
        plugin=row["plugin"],
        fact_type=row["fact_type"],
        job_id=row["job_id"],
        command=row["command"],
        fact=fact,
        created_at=row["created_at"],
    )
