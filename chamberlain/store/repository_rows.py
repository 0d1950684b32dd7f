"""SQL for the repositories added through the API (migration 0015).

Synchronous, on the JobStore's connection, inside the transaction of the batch it
serves, like :mod:`chamberlain.store.mcp_rows`.  An entry is kept as the config
would hold it: its token a ``${secret:name}`` reference, so the table holds no
secret value.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from chamberlain import jsoncodec
from chamberlain.records import AddedRepository


def create(
    conn: sqlite3.Connection, name: str, spec: Mapping[str, Any], *, now: float
) -> AddedRepository | None:
    """Keep repository ``name``; None when one of that name is kept already."""
    row = conn.execute(
        "INSERT INTO repositories (name, spec, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO NOTHING RETURNING name, spec, created_at",
        (name, jsoncodec.dumps(dict(spec)), now),
    ).fetchone()
    return None if row is None else _repository(row)


def list_all(conn: sqlite3.Connection) -> list[AddedRepository]:
    """Every repository added through the API, by name."""
    rows = conn.execute("SELECT name, spec, created_at FROM repositories ORDER BY name")
    return [_repository(row) for row in rows]


def delete(conn: sqlite3.Connection, name: str) -> bool:
    """Forget repository ``name``; False when there is none."""
    return conn.execute("DELETE FROM repositories WHERE name = ?", (name,)).rowcount == 1


def _repository(row: Any) -> AddedRepository:
    return AddedRepository(name=row[0], spec=json.loads(row[1]), created_at=row[2])
