"""The command-line client against a real daemon: every command, table and --json,
and every exit code a script may branch on."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml
from conftest import API_KEY, BUNDLED_PLUGINS, DaemonFactory, DaemonProcess, api_client, wait_for

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


async def test_reload_shows_what_changed_and_every_problem_of_a_refused_file(
    d: DaemonProcess, tmp_path: Path
) -> None:
    config = yaml.safe_load(d.config_path.read_text())
    config["service"]["max_workers"] = 3
    config["service"]["name"] = "renamed"
    d.config_path.write_text(yaml.safe_dump(config))
    done = await client(d, "reload", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"service\.max_workers\s+changed\s+4 -> 3", done.stdout), done.stdout
    assert re.search(r"service\.name\s+restart_required", done.stdout), done.stdout
    # Each plugin's parallelism follows max_workers (its default), and says so.
    assert re.search(r"plugins\.echo\s+changed\s+parallelism 4 -> 3", done.stdout), done.stdout
    assert re.search(r": \d+ changes, 1 waiting for a restart$", done.stderr.strip())
    again = await client(d, "reload", "--json", home=tmp_path)
    assert json.loads(again.stdout)["changes"] == []

    config["service"]["max_workers"] = "lots"
    config["plugins"]["echo"]["timeouts"]["health"] = "-1s"
    d.config_path.write_text(yaml.safe_dump(config))
    refused = await client(d, "reload", home=tmp_path)
    assert refused.returncode == 1
    assert "422" in refused.stderr
    assert "  service.max_workers: " in refused.stderr
    assert "  plugins.echo.timeouts.health: " in refused.stderr
    # Reloading is the admin's: a token without the scope is refused as such.
    scoped = await client(d, "reload", home=tmp_path, token="rw-token")
    assert scoped.returncode == 6 and "403" in scoped.stderr


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


E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

WATCHED: dict[str, Any] = {
    "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
    "plugins": {
        "echo": {"schedules": [{"id": "beat", "command": "health", "every": "1h"}]},
        "observed": {"retry": {"max_attempts": 1}},
    },
    "pipelines": [
        {
            "name": "gate",
            "on": "manual.gate",
            "steps": [
                {
                    "id": "ship",
                    "uses": "echo.handle",
                    "approval": {
                        "required": True,
                        "inputs_schema": {
                            "type": "object",
                            "properties": {"env": {"enum": ["staging", "production"]}},
                        },
                    },
                    "with": {"env": "{approval.inputs.env}"},
                }
            ],
        }
    ],
}


async def stopped(proc: trio.Process) -> None:
    """``proc`` gone and reaped, even when the test failed half-way."""
    if proc.returncode is None:
        proc.kill()
    with trio.move_on_after(10, shield=True):
        await proc.wait()
    if proc.stdout is not None:
        await proc.stdout.aclose()


async def read_until(stream: trio.abc.ReceiveStream, seen: bytearray, wanted: bytes) -> None:
    """Read ``stream`` into ``seen`` until ``wanted`` is in it (20 s at most)."""
    with trio.fail_after(20):
        while wanted not in seen:
            chunk = await stream.receive_some(4096)
            if not chunk:
                raise AssertionError(f"the stream ended without {wanted!r}: {bytes(seen)!r}")
            seen.extend(chunk)


async def test_follow_streams_the_lines_while_the_job_runs(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(WATCHED)
    go = tmp_path / "go"
    payload = json.dumps({"lines": ["first line"], "wait_for": str(go), "after": ["last line"]})
    env = {**os.environ, "CHAMBERLAIN_URL": d.base_url, "CHAMBERLAIN_TOKEN": API_KEY}
    argv = [sys.executable, "-m", "chamberlain", "trigger", "observed", "poll"]
    proc = await trio.lowlevel.open_process(
        [*argv, "--payload", payload, "--follow"], stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        seen = bytearray()
        await read_until(proc.stdout, seen, b"first line")
        # The line came while the job still runs: it waits for the file.
        async with api_client(d) as c:
            (job,) = (await c.get("/jobs")).json()["jobs"]
            assert job["status"] == "running"
        await trio.Path(go).touch()
        await read_until(proc.stdout, seen, b"finished: succeeded")
        with trio.fail_after(20):
            await proc.wait()
    finally:
        await stopped(proc)
    assert proc.returncode == 0
    text = seen.decode()
    assert text.index("first line") < text.index("last line") < text.index("finished")
    logs = await client(d, "logs", job["job_id"], home=tmp_path)
    assert "stderr     first line" in logs.stdout and "last line" in logs.stdout


async def test_wait_on_a_terminal_shows_a_live_status_line(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(WATCHED)
    go = tmp_path / "go"
    payload = json.dumps({"wait_for": str(go)})
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env |= {"CHAMBERLAIN_URL": d.base_url, "CHAMBERLAIN_TOKEN": API_KEY, "TERM": "xterm"}
    main, side = pty.openpty()
    argv = [sys.executable, "-m", "chamberlain", "trigger", "observed", "poll", "--wait"]
    seen = bytearray()
    running = trio.Event()

    async def read() -> None:
        # Until the process is gone and its terminal closes (EIO, or an empty read).
        while True:
            try:
                chunk = await trio.to_thread.run_sync(os.read, main, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)
            if b": running" in seen:
                running.set()

    proc = await trio.lowlevel.open_process(
        [*argv, "--payload", payload], stdin=side, stdout=side, stderr=side, env=env
    )
    os.close(side)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            with trio.fail_after(20):
                await running.wait()
            await trio.Path(go).touch()
            with trio.fail_after(20):
                await proc.wait()
    finally:
        await stopped(proc)
        os.close(main)
    assert proc.returncode == 0
    # The status line (job id, status, seconds since it started), then the job.
    assert re.search(rb"[0-9a-f-]{36}: running\s+\d+s", bytes(seen))
    assert b"succeeded" in seen


async def test_plugins_schedules_pipelines_and_runs(daemon: DaemonFactory, tmp_path: Path) -> None:
    d = await daemon(WATCHED)
    names = await client(d, "plugins", "-q", home=tmp_path)
    assert {"echo", "observed"} <= set(names.stdout.split()), names.stdout
    echo = await client(d, "plugins", "echo", "--json", home=tmp_path)
    assert [c["name"] for c in json.loads(echo.stdout)["commands"]] == ["poll", "handle", "health"]
    assert "handle" in (await client(d, "plugins", "echo", home=tmp_path)).stdout
    assert (await client(d, "plugins", "nope", home=tmp_path)).returncode == 1

    schedules = await client(d, "schedules", "--json", home=tmp_path)
    (beat,) = json.loads(schedules.stdout)["schedules"]
    assert (beat["plugin"], beat["id"]) == ("echo", "beat")
    assert "beat" in (await client(d, "schedules", home=tmp_path)).stdout
    reset = await client(
        d, "schedules", "--reset", "echo/beat", "--reason", "fixed", home=tmp_path, token="rw-token"
    )
    assert reset.returncode == 0, reset.stderr
    assert (await client(d, "schedules", "--reset", "beat", home=tmp_path)).returncode == 2

    started = await client(d, "pipeline", "gate", "-q", home=tmp_path)
    assert started.returncode == 0, started.stderr
    (run_id,) = started.stdout.split()

    async def awaiting() -> bool:
        shown = await client(d, "runs", run_id, "--json", home=tmp_path)
        return bool(json.loads(shown.stdout)["status"] == "awaiting_approval")

    await wait_for(awaiting)
    listed = await client(d, "runs", "--status", "awaiting_approval", "-q", home=tmp_path)
    assert listed.stdout.split() == [run_id]
    table = await client(d, "runs", run_id, home=tmp_path)
    assert "awaiting_approval" in table.stdout and "ship" in table.stdout
    bad = await client(d, "approve", run_id, "ship", "-i", "env=moon", home=tmp_path)
    assert bad.returncode == 1 and "inputs.env: 'moon' is not one of" in bad.stderr
    approved = await client(
        d,
        "approve",
        run_id,
        "ship",
        "-i",
        "env=staging",
        "--comment",
        "go",
        "--json",
        home=tmp_path,
    )
    assert approved.returncode == 0, approved.stderr
    decision = json.loads(approved.stdout)["approval"]
    assert (decision["by"], decision["inputs"]) == ("api_key", {"env": "staging"})
    late = await client(d, "reject", run_id, "ship", home=tmp_path)
    assert late.returncode == 1 and "409" in late.stderr

    paused = await client(d, "pipeline", "gate", "--paused", "--json", home=tmp_path)
    other = json.loads(paused.stdout)["run_id"]
    await wait_for(lambda: _run_status(d, other, tmp_path, "paused"))
    again = await client(d, "run-action", other, "pause", home=tmp_path)
    assert again.returncode == 1 and "409" in again.stderr and "paused already" in again.stderr
    misused = await client(d, "run-action", other, "resume", "--stop-running", home=tmp_path)
    assert misused.returncode == 2 and "--stop-running belongs to pause" in misused.stderr
    resumed = await client(d, "run-action", other, "resume", "--json", home=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["message"] == "resumed: what is due starts now"
    await wait_for(lambda: _run_status(d, other, tmp_path, "awaiting_approval"))
    cancelled = await client(d, "run-action", other, "cancel", home=tmp_path)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    log = await client(d, "run-events", other, "--kind", "action", "--json", home=tmp_path)
    actions = [e["detail"]["action"] for e in json.loads(log.stdout)["events"]]
    assert actions == ["resume", "cancel"]
    table = await client(d, "run-events", other, home=tmp_path)
    assert "run.created" in table.stdout and "approval.awaited" in table.stdout
    missing = await client(d, "approve", "nope", "ship", home=tmp_path)
    assert missing.returncode == 1 and "404" in missing.stderr


async def _run_status(d: DaemonProcess, run_id: str, home: Path, status: str) -> bool:
    shown = await client(d, "runs", run_id, "--json", home=home)
    return bool(json.loads(shown.stdout)["status"] == status)


async def complete(d: DaemonProcess | None, line: str, home: Path) -> list[str]:
    """What a shell's tab after ``line`` offers, as argcomplete answers bash."""
    out = home / "completion.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAMBERLAIN_")}
    env |= {
        "HOME": str(home),
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "CHAMBERLAIN_URL": d.base_url if d is not None else "http://127.0.0.1:9",
        "CHAMBERLAIN_TOKEN": API_KEY,
    }

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chamberlain"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )

    done = await trio.to_thread.run_sync(run)
    assert done.returncode == 0, done.stderr
    return sorted(word.strip() for word in out.read_text().split("\n") if word.strip())


async def test_shell_completion_names_commands_plugins_and_jobs(
    d: DaemonProcess, tmp_path: Path
) -> None:
    assert await complete(d, "chamberlain tri", tmp_path) == ["trigger"]
    assert await complete(d, "chamberlain trigger ec", tmp_path) == ["echo"]
    assert await complete(d, "chamberlain trigger echo h", tmp_path) == ["handle", "health"]
    assert await complete(d, "chamberlain trigger echo poll --wa", tmp_path) == ["--wait"]
    done = await client(d, "trigger", "echo", "poll", "-q", home=tmp_path)
    (job_id,) = done.stdout.split()
    assert await complete(d, f"chamberlain job {job_id[:6]}", tmp_path) == [job_id]
    # A daemon that cannot be reached completes nothing, and says nothing.
    assert await complete(None, "chamberlain trigger ec", tmp_path) == []

    for shell in ("bash", "zsh"):
        code = await client(d, "completion", shell, home=tmp_path)
        assert code.returncode == 0 and "chamberlain" in code.stdout
    bash = tmp_path / "complete.bash"
    bash.write_text((await client(d, "completion", "bash", home=tmp_path)).stdout)
    checked = await trio.run_process(["bash", "-n", str(bash)], check=False)
    assert checked.returncode == 0


async def test_message_and_complete_drive_an_interactive_job(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(WATCHED)
    started = await client(d, "trigger", "asker", "ask", "-q", home=tmp_path)
    assert started.returncode == 0, started.stderr
    (job_id,) = started.stdout.split()

    async def waiting() -> bool:
        async with api_client(d) as c:
            return bool((await c.get(f"/job/{job_id}")).json()["waiting_for_input"])

    await wait_for(waiting)
    sent = await client(d, "message", job_id, "Ada", "--json", home=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["message_sent"] is True
    await wait_for(waiting)
    sent = await client(d, "message", job_id, "blue", home=tmp_path)
    assert sent.returncode == 0 and "message_sent  True" in sent.stdout
    await wait_for(waiting)
    completing = await client(d, "complete", job_id, home=tmp_path)
    assert completing.returncode == 0 and "completing" in completing.stdout
    done = await client(d, "job", job_id, "--wait", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["status"], job["result"]["result"]["answers"]) == ("succeeded", ["Ada", "blue"])
    late = await client(d, "message", job_id, "again", home=tmp_path)
    assert late.returncode == 1 and "409" in late.stderr


async def test_each_command_s_table_and_json_forms(daemon: DaemonFactory, tmp_path: Path) -> None:
    d = await daemon(WATCHED)
    done = await client(
        d, "trigger", "echo", "handle", "-p", "mode=stderr", "--wait", "-q", home=tmp_path
    )
    (job_id,) = done.stdout.split()
    async with api_client(d) as c:
        messages = (await c.get(f"/job/{job_id}?include=messages")).json()["messages"]
    logs = await client(d, "logs", job_id, "--json", home=tmp_path)
    assert json.loads(logs.stdout) == messages
    table = await client(d, "logs", job_id, home=tmp_path)
    assert [line.split(None, 2)[1:] for line in table.stdout.splitlines()] == [
        [m["kind"], m["text"]] for m in messages
    ]

    retried = await client(d, "retry", job_id, home=tmp_path)
    assert retried.returncode == 0 and f"original_job_id  {job_id}" in retried.stdout
    slow = await client(
        d, "trigger", "echo", "handle", "-p", "mode=slow", "-p", "seconds:=20", "-q", home=tmp_path
    )
    (slow_id,) = slow.stdout.split()
    cancelled = await client(d, "cancel", slow_id, "--json", home=tmp_path)
    assert json.loads(cancelled.stdout)["status"] == "cancelled"

    started = await client(d, "pipeline", "gate", home=tmp_path)
    assert started.returncode == 0 and "run_id" in started.stdout
    run_id = started.stdout.split("run_id", 1)[1].split()[0]
    await wait_for(lambda: _run_status(d, run_id, tmp_path, "awaiting_approval"))
    rejected = await client(d, "reject", run_id, "ship", "--comment", "not today", home=tmp_path)
    assert rejected.returncode == 0, rejected.stderr
    assert "step ship rejected" in rejected.stderr and "not today" in rejected.stdout
    assert await _run_status(d, run_id, tmp_path, "failed")
    again = await client(d, "pipeline", "gate", "-q", home=tmp_path)
    (other,) = again.stdout.split()
    await wait_for(lambda: _run_status(d, other, tmp_path, "awaiting_approval"))
    approved = await client(
        d, "approve", other, "ship", "--inputs", '{"env": "production"}', home=tmp_path
    )
    assert approved.returncode == 0, approved.stderr
    assert "step ship approved" in approved.stderr and "production" in approved.stdout

    # Colour is the terminal's: none off a terminal, whatever the command.
    for args in (("health",), ("jobs",), ("plugins",), ("runs",)):
        shown = await client(d, *args, home=tmp_path)
        assert shown.returncode == 0 and "\x1b[" not in shown.stdout, args
