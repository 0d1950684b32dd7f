"""SQL for the secret registry (migration 0008): sealed values and the key check.

The functions taking a connection are, like :mod:`chamberlain.store.sqlite`,
synchronous and called only by the JobStore actor, inside the transaction of the
batch it is serving.  Values arrive and leave sealed (see
:mod:`chamberlain.sealing`): nothing here ever holds one in the clear.

:func:`read_sealed` is the exception: it opens the database read-only, on a
connection of its own, before the actor tree starts (``chamberlain start`` and
``check`` unseal every value into the daemon's vault), and it changes nothing, not
even the schema: a database older than migration 0008 simply has no secrets.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs

from chamberlain.sealing import SecretInfo

_INFO_COLUMNS = "name, description, created_at, rotated_at, hint"


@attrs.frozen(kw_only=True)
class SealedRegistry:
    """Every sealed value by name, and the key check (None: none stored yet)."""

    values: dict[str, bytes] = attrs.field(factory=dict, repr=False)
    check: bytes | None = attrs.field(default=None, repr=False)


def _info(row: sqlite3.Row) -> SecretInfo:
    return SecretInfo(
        name=row["name"],
        description=row["description"],
        created_at=row["created_at"],
        rotated_at=row["rotated_at"],
        hint=row["hint"],
    )


def _keep_check(conn: sqlite3.Connection, check: bytes, now: float) -> None:
    # Only the first write stores it: every later one was made with the same key,
    # since the daemon refuses to start with another.
    conn.execute(
        "INSERT OR IGNORE INTO secret_key_check (id, sealed, created_at) VALUES (1, ?, ?)",
        (check, now),
    )


def create(
    conn: sqlite3.Connection,
    *,
    name: str,
    description: str | None,
    sealed: bytes,
    hint: str,
    check: bytes,
    now: float,
) -> SecretInfo | None:
    """Register a new secret; None when one with that name exists (nothing changes)."""
    row = conn.execute(
        "INSERT INTO secrets (name, description, sealed, hint, created_at) VALUES (?, ?, ?, ?, ?)"
        f" ON CONFLICT (name) DO NOTHING RETURNING {_INFO_COLUMNS}",
        (name, description, sealed, hint, now),
    ).fetchone()
    if row is None:
        return None
    _keep_check(conn, check, now)
    return _info(row)


def rotate(
    conn: sqlite3.Connection,
    *,
    name: str,
    sealed: bytes,
    hint: str,
    check: bytes,
    now: float,
    description: str | None = None,
    keep_description: bool = True,
) -> SecretInfo | None:
    """Give a secret a new value (and description, unless kept); None when it is unknown."""
    row = conn.execute(
        "UPDATE secrets SET sealed = ?, hint = ?, rotated_at = ?,"
        " description = CASE WHEN ? THEN description ELSE ? END"
        f" WHERE name = ? RETURNING {_INFO_COLUMNS}",
        (sealed, hint, now, keep_description, description, name),
    ).fetchone()
    if row is None:
        return None
    _keep_check(conn, check, now)
    return _info(row)


def delete(conn: sqlite3.Connection, name: str) -> bool:
    """Forget a secret; False when it is unknown.  The key check stays."""
    return conn.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount == 1


def get(conn: sqlite3.Connection, name: str) -> SecretInfo | None:
    """What the registry tells about one secret, or None."""
    row = conn.execute(f"SELECT {_INFO_COLUMNS} FROM secrets WHERE name = ?", (name,)).fetchone()
    return None if row is None else _info(row)


def list_all(conn: sqlite3.Connection) -> tuple[SecretInfo, ...]:
    """What the registry tells about every secret, by name."""
    rows = conn.execute(f"SELECT {_INFO_COLUMNS} FROM secrets ORDER BY name").fetchall()
    return tuple(_info(row) for row in rows)


def read_sealed(path: Path | str) -> SealedRegistry:
    """Every sealed value and the key check of the database at ``path``, read-only.

    A database that does not exist yet, or predates the registry, holds none.
    sqlite3's errors (a file that is not a database, one that cannot be read) are
    the caller's to report.
    """
    location = Path(path)
    if not location.exists():
        return SealedRegistry()
    conn = sqlite3.connect(f"{location.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name IN ('secrets', 'secret_key_check')"
            )
        }
        if "secrets" not in tables:
            return SealedRegistry()
        values = {
            str(name): bytes(sealed)
            for name, sealed in conn.execute("SELECT name, sealed FROM secrets")
        }
        row = conn.execute("SELECT sealed FROM secret_key_check WHERE id = 1").fetchone()
        return SealedRegistry(values=values, check=None if row is None else bytes(row[0]))
    finally:
        conn.close()
