"""The registry's SQL (migration 0008) and the read-only start-up read."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from chamberlain.sealing import Sealer, SecretInfo, hint
from chamberlain.store import secret_rows
from chamberlain.store.sqlite import MIGRATIONS, SqliteStore

T0 = 1_700_000_000.0
SEALER = Sealer.random()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "state.db")
    try:
        yield opened
    finally:
        opened.close()


def create(store: SqliteStore, name: str, value: str, **extra: object) -> SecretInfo | None:
    fields: dict[str, object] = {
        "name": name,
        "description": None,
        "sealed": SEALER.seal(name, value),
        "hint": hint(value),
        "check": SEALER.check_blob(),
        "now": T0,
    }
    fields.update(extra)
    store.begin()
    created = secret_rows.create(store.conn, **fields)  # type: ignore[arg-type]
    store.commit()
    return created


def rotate(store: SqliteStore, name: str, value: str, **extra: object) -> SecretInfo | None:
    store.begin()
    rotated = secret_rows.rotate(
        store.conn,
        name=name,
        sealed=SEALER.seal(name, value),
        hint=hint(value),
        check=SEALER.check_blob(),
        **extra,  # type: ignore[arg-type]
    )
    store.commit()
    return rotated


def test_create_then_get_and_list(store: SqliteStore) -> None:
    made = create(store, "github", "ghp_abcd1234", description="the bot's token")
    assert made == SecretInfo(
        name="github",
        description="the bot's token",
        created_at=T0,
        rotated_at=None,
        hint="****1234",
    )
    create(store, "aws", "AKIA-secret-99")
    assert secret_rows.get(store.conn, "github") == made
    assert [s.name for s in secret_rows.list_all(store.conn)] == ["aws", "github"]
    assert secret_rows.get(store.conn, "nope") is None


def test_a_taken_name_changes_nothing(store: SqliteStore) -> None:
    first = create(store, "github", "ghp_abcd1234")
    assert create(store, "github", "other-value-5678", now=T0 + 5) is None
    assert secret_rows.get(store.conn, "github") == first
    (sealed,) = store.conn.execute("SELECT sealed FROM secrets").fetchone()
    assert SEALER.unseal("github", sealed) == "ghp_abcd1234"


def test_rotation_sets_rotated_at_and_keeps_or_replaces_the_description(
    store: SqliteStore,
) -> None:
    create(store, "github", "ghp_abcd1234", description="kept")
    kept = rotate(store, "github", "ghp_new-5678", now=T0 + 60)
    assert kept is not None
    assert (kept.created_at, kept.rotated_at, kept.hint, kept.description) == (
        T0,
        T0 + 60,
        "****5678",
        "kept",
    )
    replaced = rotate(
        store, "github", "ghp_newer-9999", now=T0 + 90, description=None, keep_description=False
    )
    assert replaced is not None and replaced.description is None
    assert replaced.rotated_at == T0 + 90
    (sealed,) = store.conn.execute("SELECT sealed FROM secrets").fetchone()
    assert SEALER.unseal("github", sealed) == "ghp_newer-9999"


def test_rotating_or_deleting_an_unknown_secret_says_so(store: SqliteStore) -> None:
    assert rotate(store, "nope", "some-value", now=T0) is None
    assert secret_rows.delete(store.conn, "nope") is False
    assert tuple(store.conn.execute("SELECT COUNT(*) FROM secret_key_check").fetchone()) == (0,)


def test_delete_forgets_the_value_but_keeps_the_key_check(store: SqliteStore) -> None:
    create(store, "github", "ghp_abcd1234")
    assert secret_rows.delete(store.conn, "github") is True
    assert secret_rows.list_all(store.conn) == ()
    registry = secret_rows.read_sealed(store.path)
    assert registry.values == {}
    assert registry.check is not None
    SEALER.verify(registry.check)


def test_the_key_check_is_stored_once_by_the_first_write(store: SqliteStore) -> None:
    create(store, "a", "value-number-1", check=b"first")
    create(store, "b", "value-number-2", check=b"second")
    rotate(store, "a", "value-number-3", now=T0 + 1)
    rows = store.conn.execute("SELECT sealed FROM secret_key_check").fetchall()
    assert [tuple(row) for row in rows] == [(b"first",)]


def test_read_sealed_reads_committed_values_beside_an_open_store(store: SqliteStore) -> None:
    create(store, "github", "ghp_abcd1234")
    create(store, "aws", "AKIA-secret-99")
    registry = secret_rows.read_sealed(store.path)
    assert {name: SEALER.unseal(name, blob) for name, blob in registry.values.items()} == {
        "github": "ghp_abcd1234",
        "aws": "AKIA-secret-99",
    }
    assert registry.check is not None


def test_read_sealed_of_no_database_creates_nothing(tmp_path: Path) -> None:
    registry = secret_rows.read_sealed(tmp_path / "state.db")
    assert (registry.values, registry.check) == ({}, None)
    assert list(tmp_path.iterdir()) == []


def test_read_sealed_of_an_older_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    conn.execute("INSERT INTO schema_migrations VALUES (7, 0)")
    conn.commit()
    conn.close()
    registry = secret_rows.read_sealed(path)
    assert (registry.values, registry.check) == ({}, None)
    conn = sqlite3.connect(path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "secrets" not in tables


def test_read_sealed_of_a_file_that_is_no_database_raises(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        secret_rows.read_sealed(path)


def test_the_registry_is_migration_8() -> None:
    assert "CREATE TABLE secrets" in MIGRATIONS[7]
