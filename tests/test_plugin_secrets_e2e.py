"""The real daemon keeps its secrets: plugins get an allow-listed environment, and every
configured token and secret is redacted from job results, messages and logs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DaemonFactory, DaemonProcess, base_config, wait_for

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

pytestmark = pytest.mark.e2e

ADMIN_KEY = "admin-key-5f1e9c"
UNRELATED = "unrelated-secret-77d0"
#: Opens every secret of the registry: the one variable a plugin must never see.
SECRET_KEY = "c2VjcmV0LWtleS1mb3ItdGhlLWUyZS10ZXN0cy0zMmI="
#: ``api.auth.tokens[reader]`` in the shared test config.
READER_TOKEN = "reader-token"

#: What the daemon's environment holds when these tests start it.
DAEMON_ENV = {
    "CHAMBERLAIN_API_KEY": ADMIN_KEY,
    "CHAMBERLAIN_SECRET_KEY": SECRET_KEY,
    "SECRET_THING": UNRELATED,
    "LANG": "C.UTF-8",
    "TZ": "UTC",
    "USER": "plugin-tester",
    "PASSED_ON": "on purpose",
    "NOT_PASSED": "kept back",
}


def secrets_config(tmp_path: Path, plugin: dict[str, Any] | None = None) -> dict[str, Any]:
    config = base_config(tmp_path)
    config["plugin_roots"] = [str(E2E_PLUGINS)]
    config["api"]["auth"]["api_key"] = "${CHAMBERLAIN_API_KEY}"
    config["plugins"] = {"environ": plugin or {}}
    return config


async def start(daemon: DaemonFactory, config: dict[str, Any]) -> DaemonProcess:
    d = await daemon(config=config, env=DAEMON_ENV)
    d.api_key = ADMIN_KEY
    return d


async def run_job(d: DaemonProcess, payload: dict[str, Any]) -> dict[str, Any]:
    """Trigger ``environ.poll`` and return the finished job with its messages."""
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        r = await client.post("/trigger/environ/poll", json={"payload": payload})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        async def finished() -> dict[str, Any] | None:
            r = await client.get(f"/job/{job_id}", params={"include": "messages"})
            assert r.status_code == 200, r.text
            job: dict[str, Any] = r.json()
            return job if job["status"] in ("succeeded", "failed", "dead") else None

        job: dict[str, Any] = await wait_for(finished)
        return job


async def test_plugins_get_an_allow_listed_environment_and_secrets_are_redacted(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(daemon, secrets_config(tmp_path))

    # The token reaches stderr in pieces, with pauses, so the daemon reads one line in
    # several chunks; the payload itself never holds a whole secret.
    job = await run_job(d, {"split": ["using rea", "der-token and admin-", "key-5f1e9c now"]})
    assert job["status"] == "succeeded", job
    text = json.dumps(job)
    for secret in (ADMIN_KEY, UNRELATED, READER_TOKEN, SECRET_KEY):
        assert secret not in text

    env: dict[str, str] = job["result"]["result"]["env"]
    assert "CHAMBERLAIN_API_KEY" not in env
    assert "CHAMBERLAIN_SECRET_KEY" not in env
    assert "SECRET_THING" not in env
    assert "NOT_PASSED" not in env
    assert env["CHAMBERLAIN_JOB_ID"] == job["job_id"]
    assert env["CHAMBERLAIN_PLUGIN"] == "environ"
    # A ``python3`` shim (pyenv) may put its own directories in front.
    assert env["PATH"].endswith(os.environ["PATH"])
    assert env["USER"] == "plugin-tester"
    assert env["LANG"] == "C.UTF-8"
    assert env["TZ"] == "UTC"
    allowed = {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "PYTHONUNBUFFERED"}
    # A ``python3`` shim that is a shell script (pyenv's) adds a few of its own.
    shim = {"PWD", "OLDPWD", "SHLVL", "_"}
    prefixes = ("LC_", "CHAMBERLAIN_", "PYENV_", "_PYENV_")
    assert {n for n in env if n not in allowed | shim and not n.startswith(prefixes)} == set()

    stderr = [m["text"] for m in job["messages"] if m["kind"] == "stderr"]
    assert stderr == [
        "using [redacted:api.auth.tokens[reader]] and [redacted:api.auth.api_key] now"
    ]

    # A plugin's error is redacted in the job and in the daemon's log line about it.
    failed = await run_job(d, {"fail": ["bad key: admin-", "key-5f1e9c"]})
    assert failed["status"] == "failed", failed
    assert failed["last_error"] == "bad key: [redacted:api.auth.api_key]"

    def logged() -> list[str]:
        return [line for line in d.stderr_lines() if "[redacted:api.auth.api_key]" in line]

    async def redacted_line_logged() -> bool:
        return bool(logged())

    await wait_for(redacted_line_logged)
    for secret in (ADMIN_KEY, UNRELATED, READER_TOKEN):
        assert not [line for line in d.stderr_lines() if secret in line]


async def test_env_and_env_passthrough_reach_the_plugin(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    plugin = {
        "env": {"GREETING": "hello world", "TZ": "Europe/Paris"},
        "env_passthrough": ["PASSED_ON"],
    }
    d = await start(daemon, secrets_config(tmp_path, plugin))
    job = await run_job(d, {})
    assert job["status"] == "succeeded", job
    env: dict[str, str] = job["result"]["result"]["env"]
    assert env["GREETING"] == "hello world"
    assert env["TZ"] == "Europe/Paris"  # ``env`` wins over the daemon's value
    assert env["PASSED_ON"] == "on purpose"
    assert "NOT_PASSED" not in env
    assert "SECRET_THING" not in env
