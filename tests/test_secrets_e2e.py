"""The secret registry on a real daemon: CRUD with scopes, encryption at rest, the key.

Each test starts ``chamberlain start`` as a subprocess.  The value is looked for in
everything the daemon leaves on disk (the database, its WAL) and in everything it
printed; the key is given through ``CHAMBERLAIN_SECRET_KEY`` or found in the key file
beside the state.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import TOKENS, DaemonFactory, DaemonProcess, base_config, deep_merge, run_cli

from chamberlain.sealing import KEY_FILE_NAME, SECRET_KEY_ENV, Sealer, new_key_text, parse_key

pytestmark = pytest.mark.e2e

VALUE = "sk-live-9f8e7d6c5b4a-first"
ROTATED = "sk-live-0a1b2c3d4e5f-second"
SECRET_TOKENS = [
    *TOKENS,
    {"name": "sro", "token": "sro-token", "scopes": ["secrets:ro"]},
    {"name": "srw", "token": "srw-token", "scopes": ["secrets:rw"]},
]
EXTRA: dict[str, Any] = {"api": {"auth": {"tokens": SECRET_TOKENS}}}


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)


def client(d: DaemonProcess, token: str = "test-key") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=d.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
    )


def on_disk(state: Path) -> bytes:
    """Every byte the database leaves: the file, its WAL and shared memory."""
    return b"".join(path.read_bytes() for path in sorted(state.parent.glob(state.name + "*")))


def plain_lines(proc_stderr: str) -> list[str]:
    return [line for line in proc_stderr.splitlines() if line and not line.startswith("{")]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(deep_merge(base_config(tmp_path), EXTRA)))
    return path


async def test_crud_with_scopes(daemon: DaemonFactory) -> None:
    d = await daemon(EXTRA)
    async with client(d, "srw-token") as rw, client(d, "sro-token") as ro:
        r = await rw.post("/secrets", json={"name": "openai", "value": VALUE, "description": "x"})
        assert r.status_code == 201, r.text
        assert r.headers["Location"] == "/secrets/openai"
        created = r.json()
        assert created["hint"] == "****irst" and created["rotated_at"] is None
        assert (
            await rw.post("/secrets", json={"name": "openai", "value": VALUE})
        ).status_code == 409

        r = await ro.get("/secrets")
        assert r.status_code == 200 and r.json() == {"secrets": [created]}
        assert (await ro.get("/secrets/openai")).json() == created
        r = await ro.put("/secrets/openai", json={"value": ROTATED})
        assert r.status_code == 403 and "secrets:rw" in r.json()["error"]

        r = await rw.put("/secrets/openai", json={"value": ROTATED})
        assert r.status_code == 200
        rotated = r.json()
        assert rotated["rotated_at"] is not None and rotated["hint"] == "****cond"
        assert rotated["created_at"] == created["created_at"]

        r = await rw.delete("/secrets/openai")
        assert r.status_code == 204 and r.content == b""
        assert (await ro.get("/secrets/openai")).status_code == 404
        assert (await rw.delete("/secrets/openai")).status_code == 404
    async with client(d, "jobsro-token") as other:
        assert (await other.get("/secrets")).status_code == 403
    async with client(d, "reader-token") as reader:
        assert (await reader.get("/secrets")).status_code == 200
    assert await d.stop() == 0
    printed = "\n".join(d.stderr_lines())
    assert VALUE not in printed and ROTATED not in printed


async def test_values_are_encrypted_at_rest(daemon: DaemonFactory, tmp_path: Path) -> None:
    key = new_key_text()
    d = await daemon(EXTRA, env={SECRET_KEY_ENV: key})
    async with client(d) as c:
        r = await c.post("/secrets", json={"name": "openai", "value": VALUE})
        assert r.status_code == 201, r.text
        # Committed: whatever holds it now is on disk (the WAL at least).
        disk = on_disk(d.state_path)
        assert VALUE.encode() not in disk
        assert base64.b64encode(VALUE.encode()) not in disk
        assert b"openai" in disk  # the look was in the right place
        r = await c.put("/secrets/openai", json={"value": ROTATED})
        assert r.status_code == 200
        disk = on_disk(d.state_path)
        assert VALUE.encode() not in disk and ROTATED.encode() not in disk
    assert await d.stop() == 0
    # After a clean stop the WAL is folded into the file: look there again.
    assert ROTATED.encode() not in on_disk(d.state_path)
    # What is stored opens with the daemon's key, to the value last given.
    conn = sqlite3.connect(d.state_path)
    try:
        (sealed,) = conn.execute("SELECT sealed FROM secrets WHERE name = 'openai'").fetchone()
    finally:
        conn.close()
    sealer = Sealer(parse_key(key, source="test"))
    assert sealer.unseal("openai", sealed) == ROTATED
    assert not (tmp_path / KEY_FILE_NAME).exists()


async def test_secrets_survive_a_restart_and_a_wrong_key_stops_the_start(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    key = new_key_text()
    first = await daemon(EXTRA, env={SECRET_KEY_ENV: key})
    async with client(first) as c:
        assert (
            await c.post("/secrets", json={"name": "openai", "value": VALUE})
        ).status_code == 201
        listed = (await c.get("/secrets")).json()
    assert await first.stop() == 0

    wrong = await daemon(EXTRA, env={SECRET_KEY_ENV: new_key_text()}, wait_ready=False)
    assert await wrong.wait() == 78
    printed = "\n".join(wrong.stderr_lines())
    assert "Traceback" not in printed
    (line,) = plain_lines(printed)
    assert line.startswith(
        f"chamberlain: {wrong.config_path}: the secret key from {SECRET_KEY_ENV}"
    )
    assert "is not the key the stored secrets were sealed with" in line
    assert str(wrong.state_path) in line

    again = await daemon(EXTRA, env={SECRET_KEY_ENV: key})
    async with client(again) as c:
        assert (await c.get("/secrets")).json() == listed
    assert await again.stop() == 0
    # chamberlain check opens them too, with the right key only.
    config = write_config(tmp_path)
    ok = run_cli_with("check", "--config", str(config), env={SECRET_KEY_ENV: key})
    assert ok.returncode == 0, ok.stderr
    assert f"secrets: 1 in the registry, opened with {SECRET_KEY_ENV}" in ok.stdout
    bad = run_cli_with("check", "--config", str(config), env={SECRET_KEY_ENV: new_key_text()})
    assert bad.returncode == 78
    assert "is not the key the stored secrets were sealed with" in bad.stderr


async def test_a_key_file_is_made_0600_beside_the_state_and_kept(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    old = os.umask(0o022)
    try:
        d = await daemon(EXTRA)
    finally:
        os.umask(old)
    key_file = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    async with client(d) as c:
        assert (
            await c.post("/secrets", json={"name": "openai", "value": VALUE})
        ).status_code == 201
    assert await d.stop() == 0
    again = await daemon(EXTRA)
    async with client(again) as c:
        assert [s["name"] for s in (await c.get("/secrets")).json()["secrets"]] == ["openai"]
    assert await again.stop() == 0
    assert key_file.read_text() == key

    # Open to the group: refused, as ssh refuses such a private key.
    key_file.chmod(0o640)
    refused = await daemon(EXTRA, wait_ready=False)
    assert await refused.wait() == 78
    (line,) = plain_lines("\n".join(refused.stderr_lines()))
    assert f"the secret key file {key_file} is open to others (mode 0640)" in line
    assert f"chmod 600 {key_file}" in line

    # Gone, while secrets are stored: no new key is made (it could not open them).
    key_file.unlink()
    missing = await daemon(EXTRA, wait_ready=False)
    assert await missing.wait() == 78
    (line,) = plain_lines("\n".join(missing.stderr_lines()))
    assert "need the key they were sealed with" in line and str(key_file) in line
    assert not key_file.exists()


async def test_a_malformed_key_is_one_line_saying_how_to_make_one(daemon: DaemonFactory) -> None:
    d = await daemon(EXTRA, env={SECRET_KEY_ENV: "hunter2"}, wait_ready=False)
    assert await d.wait() == 78
    printed = "\n".join(d.stderr_lines())
    (line,) = plain_lines(printed)
    assert f"{SECRET_KEY_ENV} is not a secret key" in line
    assert "chamberlain secret-key" in line
    assert "hunter2" not in printed


def test_secret_key_prints_a_key(tmp_path: Path) -> None:
    proc = run_cli("secret-key", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(parse_key(proc.stdout, source="stdout")) == 32
    assert list(tmp_path.iterdir()) == []


def run_cli_with(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``run_cli`` with variables added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "chamberlain", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
