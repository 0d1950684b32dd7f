"""SQL for the MCP server registry (migration 0009).

Like :mod:`chamberlain.store.sqlite`, every function is synchronous and called only
by the JobStore actor, inside the transaction of the batch it is serving.  A server
is stored as it was registered (:class:`~chamberlain.records.McpServer`): its env
and header values keep their ``${secret:name}`` references, so the table holds no
secret value.  Which servers a job asked for is a column of ``jobs``
(:mod:`chamberlain.store.sqlite` reads and writes it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from chamberlain import jsoncodec
from chamberlain.records import McpServer

_COLUMNS = "name, command, env, url, headers, created_at"


def _server(row: sqlite3.Row) -> McpServer:
    return McpServer(
        name=row["name"],
        command=tuple(json.loads(row["command"])),
        env=json.loads(row["env"]),
        url=row["url"],
        headers=json.loads(row["headers"]),
        created_at=row["created_at"],
    )


def create(conn: sqlite3.Connection, server: McpServer) -> McpServer | None:
    """Register ``server``; None when one with its name exists (nothing changes)."""
    row = conn.execute(
        f"INSERT INTO mcp_servers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
        f" ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}",
        (
            server.name,
            jsoncodec.dumps(list(server.command)),
            jsoncodec.dumps(dict(server.env)),
            server.url,
            jsoncodec.dumps(dict(server.headers)),
            server.created_at,
        ),
    ).fetchone()
    return None if row is None else _server(row)


def list_servers(conn: sqlite3.Connection, names: Iterable[str] | None = None) -> list[McpServer]:
    """The servers named (those that exist), or every one when ``names`` is None; by name."""
    if names is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM mcp_servers ORDER BY name").fetchall()
    else:
        wanted = sorted(set(names))
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM mcp_servers WHERE name IN ({marks}) ORDER BY name", wanted
        ).fetchall()
    return [_server(row) for row in rows]


def delete(conn: sqlite3.Connection, name: str) -> bool:
    """Forget server ``name``; False when there is none."""
    return conn.execute("DELETE FROM mcp_servers WHERE name = ?", (name,)).rowcount == 1
