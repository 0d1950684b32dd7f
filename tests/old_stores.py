"""Stores as an earlier release left them, to test what a migration does to their rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chamberlain.store.sqlite import MIGRATIONS, _statements


def store_before(path: Path, marker: str) -> sqlite3.Connection:
    """A database at ``path`` migrated up to (not including) the first migration whose
    SQL holds ``marker``, open in autocommit for the test to add rows; close it
    before opening a :class:`~chamberlain.store.sqlite.SqliteStore` on it."""
    version = next(i for i, sql in enumerate(MIGRATIONS, start=1) if marker in sql)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for number, script in enumerate(MIGRATIONS[: version - 1], start=1):
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (number,))
    return conn
