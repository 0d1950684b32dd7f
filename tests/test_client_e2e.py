"""The command-line client against a real daemon: every command, table and --json,
and every exit code a script may branch on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import API_KEY, DaemonFactory, DaemonProcess, api_client

pytestmark = pytest.mark.e2e

CONFIG: dict[str, Any] = {
    "plugins": {
        "echo": {
            "retry": {"max_attempts": 1, "on_timeout": False},
            "timeouts": {"health": "1s"},
        }
    }
}


async def client(
    d: DaemonProcess | None, *args: str, home: Path, token: str | None = API_KEY
) -> subprocess.CompletedProcess[str]:
    """``chamberlain ARGS`` as a user runs it, with ``d``'s URL and ``token`` in the
    environment (none for ``d`` None), ``home`` as its HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAMBERLAIN_")}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "NO_COLOR": "1"})
    if d is not None:
        env["CHAMBERLAIN_URL"] = d.base_url
    if token is not None:
        env["CHAMBERLAIN_TOKEN"] = token

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chamberlain", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )

    return await trio.to_thread.run_sync(run)


@pytest.fixture
async def d(daemon: DaemonFactory) -> DaemonProcess:
    return await daemon(CONFIG)


async def test_trigger_waits_and_exits_as_the_job_ended(d: DaemonProcess, tmp_path: Path) -> None:
    done = await client(d, "trigger", "echo", "poll", "-p", "greeting=hi", "--wait", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout and "greeting" in done.stdout

    # --json is the API's answer, unchanged.
    done = await client(
        d, "trigger", "echo", "handle", "-p", "n:=3", "--wait", "--json", home=tmp_path
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    async with api_client(d) as c:
        assert shown == (await c.get(f"/job/{shown['job_id']}")).json()
    assert shown["payload"] == {"n": 3}

    failed = await client(
        d, "trigger", "echo", "handle", "-p", "mode=fatal", "--wait", "-q", home=tmp_path
    )
    assert failed.returncode == 1
    (job_id,) = failed.stdout.split()
    async with api_client(d) as c:
        assert (await c.get(f"/job/{job_id}")).json()["status"] == "failed"

    # The job's own timeout (health: 1s, not retried) is exit 3, as is a --timeout
    # that passes while the job still runs.
    hung = await client(d, "trigger", "echo", "health", "-p", "mode=hang", "--wait", home=tmp_path)
    assert hung.returncode == 3, hung.stderr
    assert "timed_out" in hung.stdout
    slow = await client(
        d,
        "trigger",
        "echo",
        "handle",
        "-p",
        "mode=slow",
        "-p",
        "seconds:=20",
        "--wait",
        "--timeout",
        "1s",
        "-q",
        home=tmp_path,
    )
    assert slow.returncode == 3
    (slow_id,) = slow.stdout.split()
    assert f"{slow_id} is still running after the --timeout" in slow.stderr

    # Cancelled: the cancel answers, and the job waited for exits 4.
    cancelled = await client(d, "cancel", slow_id, home=tmp_path)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout
    waited = await client(d, "job", slow_id, "--wait", "--json", home=tmp_path)
    assert waited.returncode == 4
    assert json.loads(waited.stdout)["status"] == "cancelled"
    again = await client(d, "cancel", slow_id, home=tmp_path)
    assert again.returncode == 1
    assert again.stderr.startswith(f"chamberlain: POST /job/{slow_id}/cancel: 409 ")


async def test_trigger_without_wait_answers_at_once(d: DaemonProcess, tmp_path: Path) -> None:
    quiet = await client(d, "trigger", "echo", "poll", "-q", home=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    (job_id,) = quiet.stdout.split()
    shown = await client(d, "trigger", "echo", "poll", "--json", home=tmp_path)
    answer = json.loads(shown.stdout)
    assert (answer["status"], answer["plugin"], answer["command"]) == ("queued", "echo", "poll")
    table = await client(d, "trigger", "echo", "poll", home=tmp_path)
    assert table.returncode == 0 and "queued" in table.stdout
    done = await client(d, "job", job_id, "--wait", home=tmp_path)
    assert done.returncode == 0 and job_id in done.stdout


async def test_payloads_from_pairs_json_and_files(d: DaemonProcess, tmp_path: Path) -> None:
    body = tmp_path / "payload.json"
    body.write_text('{"path": "/home", "keep": 7}')
    for args, payload in (
        (("-p", "path=/home", "-p", "keep:=7"), {"path": "/home", "keep": 7}),
        (("--payload", '{"path": "/srv"}'), {"path": "/srv"}),
        (("--payload", f"@{body}"), {"path": "/home", "keep": 7}),
    ):
        done = await client(d, "trigger", "echo", "poll", *args, "--wait", "--json", home=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["payload"] == payload
    for args, said in (
        (("-p", "nothing"), "-p nothing: expected key=value or key:=JSON"),
        (("-p", "n:=[1"), "-p n:=[1: not JSON after :="),
        (("--payload", "[1]"), "--payload must be a JSON object"),
        (("--payload", f"@{tmp_path / 'missing.json'}"), "No such file or directory"),
        (("-p", "a=b", "--payload", "{}"), "give -p pairs or --payload, not both"),
    ):
        bad = await client(d, "trigger", "echo", "poll", *args, home=tmp_path)
        assert bad.returncode == 2, (args, bad.stderr)
        assert said in bad.stderr
    unknown = await client(d, "trigger", "echo", "poll", "--bogus", home=tmp_path)
    assert unknown.returncode == 2


async def test_listing_and_the_daemon_s_state(d: DaemonProcess, tmp_path: Path) -> None:
    ok = await client(d, "trigger", "echo", "poll", "--wait", "-q", home=tmp_path)
    bad = await client(
        d, "trigger", "echo", "handle", "-p", "mode=fatal", "--wait", "-q", home=tmp_path
    )
    (ok_id,), (bad_id,) = ok.stdout.split(), bad.stdout.split()

    failed = await client(d, "jobs", "--status", "failed,dead", "-q", home=tmp_path)
    assert (failed.returncode, failed.stdout.split()) == (0, [bad_id])
    listed = await client(d, "jobs", "--plugin", "echo", "--json", home=tmp_path)
    answer = json.loads(listed.stdout)
    assert [j["job_id"] for j in answer["jobs"]] == [bad_id, ok_id]
    assert answer["total"] == 2
    table = await client(d, "jobs", home=tmp_path)
    assert ok_id[:8] in table.stdout and "2 of 2 jobs" in table.stderr
    refused = await client(d, "jobs", "--status", "nope", home=tmp_path)
    assert refused.returncode == 1 and "400" in refused.stderr

    retried = await client(d, "retry", ok_id, "--wait", "--json", home=tmp_path)
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["status"] == "succeeded"

    queue = await client(d, "queue", "--json", home=tmp_path)
    assert json.loads(queue.stdout)["running_total"] == 0
    assert "0 running" in (await client(d, "queue", home=tmp_path)).stderr
    health = await client(d, "health", "--json", home=tmp_path)
    assert (health.returncode, json.loads(health.stdout)["status"]) == (0, "ok")
    assert "uptime_seconds" in (await client(d, "health", home=tmp_path)).stdout
    unknown = await client(d, "job", "nope", home=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr == "chamberlain: GET /job/nope: 404 unknown job 'nope'\n"


async def test_connection_failures_have_their_own_exit_codes(
    d: DaemonProcess, tmp_path: Path
) -> None:
    wrong = await client(d, "jobs", home=tmp_path, token="wrong-token")
    assert wrong.returncode == 6
    assert "401" in wrong.stderr and "wrong-token" not in wrong.stderr
    none = await client(d, "jobs", home=tmp_path, token=None)
    assert none.returncode == 6 and "no token given" in none.stderr
    scoped = await client(d, "trigger", "echo", "handle", home=tmp_path, token="ro-token")
    assert scoped.returncode == 6 and "403" in scoped.stderr

    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # Bound, not listening: a port nothing answers on.
        gone = await client(None, "jobs", "--url", f"http://127.0.0.1:{port}", home=tmp_path)
    assert gone.returncode == 5
    assert gone.stderr.startswith(
        f"chamberlain: cannot reach the daemon at http://127.0.0.1:{port}"
    )


async def test_a_profile_gives_the_url_and_token(d: DaemonProcess, tmp_path: Path) -> None:
    profiles = tmp_path / ".config" / "chamberlain" / "client.toml"
    profiles.parent.mkdir(parents=True)
    profiles.write_text(
        f'[default]\nurl = "{d.base_url}"\ntoken = "{API_KEY}"\n'
        f'[reader]\nurl = "{d.base_url}"\ntoken = "reader-token"\n'
    )
    profiles.chmod(0o600)
    used = await client(None, "health", "--json", home=tmp_path, token=None)
    assert used.returncode == 0, used.stderr
    read_only = await client(
        None, "trigger", "echo", "handle", "--profile", "reader", home=tmp_path, token=None
    )
    assert read_only.returncode == 6
    missing = await client(None, "jobs", "--profile", "work", home=tmp_path, token=None)
    assert missing.returncode == 2
    assert "no profile 'work' (profiles: default, reader)" in missing.stderr

    profiles.chmod(0o644)
    open_to_all = await client(None, "jobs", home=tmp_path, token=None)
    assert open_to_all.returncode == 2
    assert "is open to others (mode 0644)" in open_to_all.stderr
    assert API_KEY not in open_to_all.stderr
