"""run_plugin against real processes, on the real clock.

Each test bounds itself with ``trio.fail_after``; waits on the outside world poll a
condition with a deadline instead of sleeping a fixed time.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from chamberlain.plugins.process import STDERR_LINE_MAX, Limits, ProcessControl, run_plugin
from chamberlain.plugins.protocol import (
    Outcome,
    OutcomeKind,
    ProcessResult,
    Response,
    TerminationReason,
    decide_outcome,
    encode_request,
)

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "plugins"
BUNDLED = HERE.parent / "plugins"

FAST = Limits(kill_grace=0.5, linger=0.5)
TEST_DEADLINE = 15.0


def request(
    command: str = "handle",
    *,
    payload: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    seconds: float = 60.0,
) -> bytes:
    return encode_request(
        job_id="job-1",
        command=command,
        config=config or {},
        state={},
        context={},
        payload=payload,
        event=None,
        deadline_at=datetime.now(UTC) + timedelta(seconds=seconds),
    )


def write_script(directory: Path, body: str, name: str = "plugin.sh") -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


async def run(
    entrypoint: Path,
    cwd: Path,
    *,
    time_limit: float = 10.0,
    limits: Limits = FAST,
    body: bytes | None = None,
    **kwargs: Any,
) -> ProcessResult:
    return await run_plugin(
        entrypoint=entrypoint,
        cwd=cwd,
        request=body if body is not None else request(),
        timeout=time_limit,
        limits=limits,
        **kwargs,
    )


def live_group_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are not zombies.

    Zombies are excluded on purpose: an orphan is reaped by whatever adopts it, which
    may take a moment or (in some containers) forever, but it runs nothing.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def is_running(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return text[text.rindex(")") + 2] not in ("Z", "X")


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    with trio.fail_after(within):
        # ASYNC110: the condition is the state of other processes, not something a
        # trio.Event could be set for.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.01)


def is_reaped(pid: int) -> bool:
    """True once ``pid`` is no longer an unreaped child of ours (never blocks)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not Path(f"/proc/{pid}").exists()
    return False


def same_directory(a: str | Path, b: str | Path) -> bool:
    return os.path.samefile(a, b)


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


@pytest.fixture
def stray_pids() -> Iterator[list[int]]:
    """Pids a test deliberately let escape; killed afterwards whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ----------------------------------------------------- the outcome matrix, for real

SIMPLE_CASES = [
    # (id, script body, kind, retryable, error or error prefix)
    (
        "ok",
        """cat >/dev/null; echo '{"status":"ok","result":1}'""",
        OutcomeKind.SUCCEEDED,
        False,
        None,
    ),
    (
        "ok-after-junk-nonzero-exit",
        """echo 'warming up'; echo '{"status":"ok","result":2}'; exit 3""",
        OutcomeKind.SUCCEEDED,
        False,
        None,
    ),
    (
        "status-error",
        """echo '{"status":"error","error":"upstream down"}'; exit 1""",
        OutcomeKind.FAILED,
        True,
        "upstream down",
    ),
    (
        "retry-false",
        """echo '{"status":"error","error":"bad input","retry":false}'""",
        OutcomeKind.FAILED,
        False,
        "bad input",
    ),
    (
        "status-error-exit-78",
        """echo '{"status":"error","error":"no api key"}'; exit 78""",
        OutcomeKind.FAILED,
        False,
        "no api key",
    ),
    (
        "exit-78-no-output",
        """echo 'api_key is not set' >&2; exit 78""",
        OutcomeKind.FAILED,
        False,
        "plugin reported a configuration error (exit code 78): api_key is not set",
    ),
    (
        "non-json",
        """echo 'Traceback (most recent call last):'; echo 'KeyError: x' >&2; exit 1""",
        OutcomeKind.FAILED,
        True,
        "invalid response: not JSON (exit code 1): KeyError: x",
    ),
    (
        "empty",
        "exit 0",
        OutcomeKind.FAILED,
        True,
        "invalid response: empty output (exit code 0)",
    ),
    (
        "truncated-json",
        """printf '{"status":"ok","result":'""",
        OutcomeKind.FAILED,
        True,
        "invalid response: not JSON (exit code 0)",
    ),
    (
        "sigsegv",
        """ulimit -c 0; echo 'about to crash' >&2; kill -SEGV $$""",
        OutcomeKind.FAILED,
        True,
        "killed by signal SIGSEGV (11): about to crash",
    ),
    (
        "sigkill-after-partial-output",
        """printf '{"status":'; kill -KILL $$""",
        OutcomeKind.FAILED,
        True,
        "killed by signal SIGKILL (9)",
    ),
    (
        "does-not-read-stdin",
        """echo '{"status":"ok","result":"ignored stdin"}'""",
        OutcomeKind.SUCCEEDED,
        False,
        None,
    ),
    (
        "closes-stdin-and-keeps-going",
        """exec 0<&-; sleep 0.05; echo '{"status":"ok"}'""",
        OutcomeKind.SUCCEEDED,
        False,
        None,
    ),
]


@pytest.mark.parametrize(
    ("body", "kind", "retryable", "error"),
    [pytest.param(*case[1:], id=case[0]) for case in SIMPLE_CASES],
)
async def test_outcome_matrix_end_to_end(
    tmp_path: Path, body: str, kind: OutcomeKind, retryable: bool, error: str | None
) -> None:
    script = write_script(tmp_path, body)
    # 1 MiB of request: more than a pipe holds, so a plugin that never reads stdin
    # really does leave our writer stuck on a full pipe until it exits.
    big = request(payload={"blob": "x" * (1024 * 1024)})
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, body=big)
    outcome = decide_outcome(result)
    assert (outcome.kind, outcome.retryable, outcome.error) == (kind, retryable, error)
    assert result.terminated is None
    assert result.spawn_error is None


async def test_ok_receives_request_cwd_and_unbuffered_env(tmp_path: Path) -> None:
    body = request("poll", payload={"name": "Zoë"}, config={"k": "v"})
    with trio.fail_after(TEST_DEADLINE):
        result = await run(FIXTURES / "echo_request.py", tmp_path, body=body)
    outcome = decide_outcome(result)
    assert outcome.kind is OutcomeKind.SUCCEEDED, outcome.error
    assert outcome.response is not None
    answer = outcome.response.result
    assert answer["request"] == json.loads(body)
    assert same_directory(answer["cwd"], tmp_path)
    assert answer["unbuffered"] == "1"
    assert result.exit_code == 0
    assert result.signal is None
    assert result.duration > 0


async def test_env_replaces_the_environment(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """printf '{"status":"ok","result":["%s","%s","%s"]}' \\
            "$FOO" "$PYTHONUNBUFFERED" "$HOME" """,
    )
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, env={"FOO": "bar"})
    outcome = decide_outcome(result)
    assert outcome.response is not None
    assert outcome.response.result == ["bar", "1", ""]


# ---------------------------------------------------------------------- output caps


async def test_stdout_over_the_cap_stops_the_plugin(tmp_path: Path) -> None:
    script = write_script(tmp_path, "trap '' TERM PIPE; while :; do echo xxxxxxxxxxxxxxx; done")
    limits = Limits(stdout_max=1000, kill_grace=0.5, linger=0.5)
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, limits=limits)
    assert result.stdout_overflow
    assert len(result.stdout) == 1000
    assert result.terminated is TerminationReason.STDOUT_OVERFLOW
    outcome = decide_outcome(result)
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.FAILED, True)
    assert outcome.error == "stdout exceeded 1000 bytes cap"
    assert outcome.raw_output is not None
    assert outcome.raw_output.startswith("xxxxxxxxxxxxxxx\n")


async def test_stdout_over_the_real_10_mib_cap(tmp_path: Path) -> None:
    script = write_script(tmp_path, "head -c 11000000 /dev/zero")
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, limits=Limits(kill_grace=0.5))
    assert result.stdout_overflow
    assert len(result.stdout) == 10 * 1024 * 1024
    assert decide_outcome(result).error == "stdout exceeded 10 MiB cap"


async def test_stdout_exactly_at_the_cap_is_fine(tmp_path: Path) -> None:
    answer = b'{"status":"ok","result":"' + b"y" * 50 + b'"}'
    script = write_script(tmp_path, f"printf '%s' '{answer.decode()}'")
    limits = Limits(stdout_max=len(answer), kill_grace=0.5, linger=0.5)
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, limits=limits)
    assert not result.stdout_overflow
    assert decide_outcome(result).kind is OutcomeKind.SUCCEEDED


async def test_stderr_over_the_cap_keeps_the_tail(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """i=1; while [ $i -le 2000 ]; do echo "line $i" >&2; i=$((i+1)); done
        echo '{"status":"ok"}'""",
    )
    limits = Limits(stderr_max=100, kill_grace=0.5, linger=0.5)
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, limits=limits)
    assert result.stderr_truncated
    assert len(result.stderr_tail) == 100
    assert result.stderr_tail.endswith(b"line 1999\nline 2000\n")
    assert decide_outcome(result).kind is OutcomeKind.SUCCEEDED


async def test_stderr_under_the_cap_is_whole(tmp_path: Path) -> None:
    script = write_script(tmp_path, """echo one >&2; echo two >&2; echo '{"status":"ok"}'""")
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path)
    assert result.stderr_tail == b"one\ntwo\n"
    assert not result.stderr_truncated


# --------------------------------------------------------------- stderr line stream


async def test_stderr_lines_arrive_while_the_plugin_runs(tmp_path: Path) -> None:
    lines: list[str] = []
    first_line = trio.Event()

    def on_line(line: str) -> None:
        lines.append(line)
        first_line.set()

    results: list[ProcessResult] = []

    async def runner() -> None:
        results.append(
            await run(FIXTURES / "chatty.sh", tmp_path, on_stderr_line=on_line, time_limit=10)
        )

    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner)
            # chatty.sh cannot finish before ./go exists, so this line was delivered
            # while it was still running.
            await first_line.wait()
            assert lines == ["waiting for go"]
            assert not results
            (tmp_path / "go").touch()
    assert lines == ["waiting for go", "got go"]
    assert decide_outcome(results[0]).kind is OutcomeKind.SUCCEEDED


async def test_long_stderr_lines_are_split_and_last_line_flushed(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """head -c 10000 /dev/zero | tr '\\0' a >&2; printf '\\r\\nno newline' >&2
        echo '{"status":"ok"}'""",
    )
    lines: list[str] = []
    with trio.fail_after(TEST_DEADLINE):
        await run(script, tmp_path, on_stderr_line=lines.append)
    assert [len(line) for line in lines] == [STDERR_LINE_MAX, STDERR_LINE_MAX, 1808, 10]
    assert lines[-1] == "no newline"


async def test_stderr_line_split_keeps_utf8_characters_whole(tmp_path: Path) -> None:
    # 4095 ASCII bytes then "é" (2 bytes) straddling the 4096-byte split point.
    script = write_script(
        tmp_path,
        """head -c 4095 /dev/zero | tr '\\0' a >&2; printf '\\303\\251tail\\n' >&2
        echo '{"status":"ok"}'""",
    )
    lines: list[str] = []
    with trio.fail_after(TEST_DEADLINE):
        await run(script, tmp_path, on_stderr_line=lines.append)
    assert lines == ["a" * 4095, "étail"]


async def test_failing_stderr_callback_does_not_fail_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = write_script(tmp_path, """echo a >&2; echo b >&2; echo '{"status":"ok"}'""")
    calls: list[str] = []

    def broken(line: str) -> None:
        calls.append(line)
        raise RuntimeError("observer bug")

    with caplog.at_level(logging.ERROR, logger="chamberlain.plugins"):
        with trio.fail_after(TEST_DEADLINE):
            result = await run(script, tmp_path, on_stderr_line=broken, plugin="demo")
    assert decide_outcome(result).kind is OutcomeKind.SUCCEEDED
    assert calls == ["a"]
    [record] = caplog.records
    assert "on_stderr_line" in record.getMessage()
    assert getattr(record, "plugin", None) == "demo"
    assert getattr(record, "component", None) == "plugins"


# ------------------------------------------------------- timeouts and process trees


async def test_timeout_kills_a_term_ignoring_tree(tmp_path: Path) -> None:
    control = ProcessControl()
    with trio.fail_after(TEST_DEADLINE):
        start = trio.current_time()
        result = await run(FIXTURES / "stubborn.sh", tmp_path, time_limit=0.5, control=control)
        elapsed = trio.current_time() - start
    assert result.terminated is TerminationReason.TIMEOUT
    assert result.signal == signal.SIGKILL
    # SIGTERM at 0.5 s was ignored; SIGKILL came after the 0.5 s grace.
    assert 0.95 <= elapsed < 5
    outcome = decide_outcome(result)
    assert (outcome.kind, outcome.retryable, outcome.error) == (
        OutcomeKind.TIMED_OUT,
        True,
        "timed out after 0.5s",
    )
    assert b"child: ignoring TERM" in result.stderr_tail

    assert control.pid is not None
    child = read_pid(tmp_path / "child.pid")
    await eventually(lambda: not is_running(child))
    await eventually(lambda: not live_group_members(control.pid or 0))
    assert is_reaped(control.pid)


async def test_timeout_even_if_valid_json_arrives_during_grace(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """trap 'echo "{\\"status\\":\\"ok\\"}"; exit 0' TERM
        while :; do sleep 0.05; done""",
    )
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, time_limit=0.3)
    assert result.terminated is TerminationReason.TIMEOUT
    assert result.stdout.strip() == b'{"status":"ok"}'
    assert result.exit_code == 0
    outcome = decide_outcome(result)
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert outcome.response is None


async def test_grandchild_holding_stdout_does_not_keep_the_job_alive(tmp_path: Path) -> None:
    control = ProcessControl()
    # A long linger: returning quickly proves the group kill ended the run, not linger.
    limits = Limits(kill_grace=0.5, linger=10.0)
    with trio.fail_after(TEST_DEADLINE):
        result = await run(FIXTURES / "grandchild.sh", tmp_path, limits=limits, control=control)
    assert result.duration < 5
    outcome = decide_outcome(result)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.response == Response(status="ok", result="answered")
    grandchild = read_pid(tmp_path / "grandchild.pid")
    await eventually(lambda: not is_running(grandchild))
    assert not live_group_members(control.pid or 0)


async def test_descendant_that_left_the_group_only_costs_the_linger(
    tmp_path: Path, stray_pids: list[int]
) -> None:
    limits = Limits(kill_grace=0.5, linger=0.3)
    with trio.fail_after(TEST_DEADLINE):
        result = await run(FIXTURES / "escapee.sh", tmp_path, limits=limits)
    stray_pids.append(read_pid(tmp_path / "escapee.pid"))
    assert result.duration < 5
    outcome = decide_outcome(result)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.response == Response(status="ok", result="answered")


# ------------------------------------------------------------ stopping from outside


async def test_control_terminate_mid_run(tmp_path: Path) -> None:
    script = write_script(tmp_path, "echo started >&2; exec sleep 30")
    control = ProcessControl()

    def on_line(line: str) -> None:
        if line == "started":
            control.terminate(TerminationReason.CANCELLED)
            control.terminate(TerminationReason.TIMEOUT)  # first reason wins

    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, control=control, on_stderr_line=on_line)
    assert control.reason is TerminationReason.CANCELLED
    assert result.terminated is TerminationReason.CANCELLED
    assert result.signal == signal.SIGTERM
    assert result.duration < 5
    outcome = decide_outcome(result)
    assert (outcome.kind, outcome.retryable, outcome.error) == (
        OutcomeKind.CANCELLED,
        False,
        "cancelled",
    )


async def test_shutdown_terminate_is_interrupted(tmp_path: Path) -> None:
    script = write_script(tmp_path, "echo started >&2; exec sleep 30")
    control = ProcessControl()

    def on_line(line: str) -> None:
        control.terminate(TerminationReason.SHUTDOWN)

    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, control=control, on_stderr_line=on_line)
    outcome = decide_outcome(result)
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.INTERRUPTED, True)


async def test_terminate_before_spawn_never_starts_the_process(tmp_path: Path) -> None:
    script = write_script(tmp_path, "touch started")
    control = ProcessControl()
    control.terminate(TerminationReason.SHUTDOWN)
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, control=control)
    assert control.pid is None
    assert result.terminated is TerminationReason.SHUTDOWN
    assert result.exit_code is None
    assert not (tmp_path / "started").exists()
    assert decide_outcome(result).kind is OutcomeKind.INTERRUPTED


async def test_terminate_after_exit_changes_nothing(tmp_path: Path) -> None:
    script = write_script(tmp_path, """echo '{"status":"ok"}'""")
    control = ProcessControl()
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path, control=control)
    control.terminate(TerminationReason.CANCELLED)
    assert result.terminated is None
    assert decide_outcome(result).kind is OutcomeKind.SUCCEEDED


async def test_outer_cancellation_kills_the_group_and_reaps(tmp_path: Path) -> None:
    control = ProcessControl()
    started = trio.Event()

    def on_line(line: str) -> None:
        if line == "started":
            started.set()

    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:

            async def runner() -> None:
                await run(
                    FIXTURES / "stubborn.sh",
                    tmp_path,
                    control=control,
                    on_stderr_line=on_line,
                    limits=Limits(kill_grace=30, linger=30),
                )
                pytest.fail("run_plugin returned instead of raising Cancelled")

            nursery.start_soon(runner)
            await started.wait()
            child = read_pid(tmp_path / "child.pid")
            assert is_running(child)
            start = trio.current_time()
            nursery.cancel_scope.cancel()
        # Not the 30 s kill_grace: cancellation goes straight to SIGKILL.
        assert trio.current_time() - start < 5

    pid = control.pid
    assert pid is not None
    # Reaped before Cancelled propagated: no zombie of ours is left.
    assert is_reaped(pid)
    await eventually(lambda: not is_running(child))
    await eventually(lambda: not live_group_members(pid))


# ------------------------------------------------------------------- spawn failures


async def test_missing_interpreter_is_a_spawn_error(tmp_path: Path) -> None:
    script = tmp_path / "plugin.sh"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path)
    assert result.spawn_error is not None
    assert "interpreter was not found" in result.spawn_error
    assert result.spawn_errno == errno.ENOENT
    assert result.exit_code is None
    outcome = decide_outcome(result)
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.FAILED, False)
    assert outcome.error is not None
    assert outcome.error.startswith("failed to start plugin: ")


async def test_missing_entrypoint_is_a_spawn_error(tmp_path: Path) -> None:
    with trio.fail_after(TEST_DEADLINE):
        result = await run(tmp_path / "nope.sh", tmp_path)
    assert result.spawn_errno == errno.ENOENT
    assert result.spawn_error is not None
    assert "interpreter" not in result.spawn_error


async def test_missing_working_directory_is_a_spawn_error(tmp_path: Path) -> None:
    script = write_script(tmp_path, "echo hi")
    missing = tmp_path / "gone"
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, missing)
    assert result.spawn_error is not None
    assert str(missing) in result.spawn_error
    assert "interpreter" not in result.spawn_error


async def test_non_executable_entrypoint_is_a_spawn_error(tmp_path: Path) -> None:
    script = write_script(tmp_path, "echo hi")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with trio.fail_after(TEST_DEADLINE):
        result = await run(script, tmp_path)
    assert result.spawn_errno == errno.EACCES
    assert decide_outcome(result).retryable is False


# ------------------------------------------------------------------ bundled plugins


async def run_bundled(
    plugin: str,
    entrypoint: str,
    body: bytes,
    *,
    time_limit: float = 10.0,
    on_stderr_line: Callable[[str], None] | None = None,
) -> Outcome:
    with trio.fail_after(TEST_DEADLINE):
        result = await run_plugin(
            entrypoint=BUNDLED / plugin / entrypoint,
            cwd=BUNDLED / plugin,
            request=body,
            timeout=time_limit,
            limits=FAST,
            on_stderr_line=on_stderr_line,
        )
    return decide_outcome(result)


async def test_echo_ok() -> None:
    body = request("handle", payload={"x": 1}, config={"message": "hello there"})
    outcome = await run_bundled("echo", "run.sh", body)
    assert outcome.kind is OutcomeKind.SUCCEEDED, outcome.error
    assert outcome.response is not None
    assert outcome.response.result == {"message": "hello there", "request": json.loads(body)}
    assert outcome.response.events == (
        {"type": "echo.handle", "payload": {"message": "hello there", "job_id": "job-1"}},
    )
    assert outcome.response.state_updates == {"last_command": "handle", "last_job_id": "job-1"}


async def test_echo_health_with_default_message() -> None:
    outcome = await run_bundled("echo", "run.sh", request("health"))
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.response is not None
    assert outcome.response.result["message"] == "echo"
    assert outcome.response.events[0]["type"] == "echo.health"


@pytest.mark.parametrize(
    ("mode", "kind", "retryable", "error"),
    [
        ("error", OutcomeKind.FAILED, True, "echo: asked to fail"),
        ("fatal", OutcomeKind.FAILED, False, "echo: asked to fail for good"),
        ("protocol_error", OutcomeKind.FAILED, True, "invalid response: not JSON (exit code 1)"),
    ],
)
async def test_echo_failure_modes(
    mode: str, kind: OutcomeKind, retryable: bool, error: str
) -> None:
    outcome = await run_bundled("echo", "run.sh", request(payload={"mode": mode}))
    assert (outcome.kind, outcome.retryable, outcome.error) == (kind, retryable, error)


async def test_echo_hang_times_out() -> None:
    outcome = await run_bundled("echo", "run.sh", request(payload={"mode": "hang"}), time_limit=0.3)
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert outcome.signal == signal.SIGTERM


async def test_echo_stderr_and_slow_modes() -> None:
    lines: list[str] = []
    outcome = await run_bundled(
        "echo", "run.sh", request(payload={"mode": "stderr"}), on_stderr_line=lines.append
    )
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert lines == [
        "echo: first line on stderr",
        "echo: second line on stderr",
        "echo: third line on stderr",
    ]
    slow = await run_bundled("echo", "run.sh", request(payload={"mode": "slow", "seconds": 0.1}))
    assert slow.kind is OutcomeKind.SUCCEEDED


async def test_sys_exec_runs_the_configured_command_without_a_shell() -> None:
    config = {
        "command": [
            "sh",
            "-c",
            'echo "$CHAMBERLAIN_PAYLOAD_NAME|$CHAMBERLAIN_PAYLOAD_N_1|'
            '$CHAMBERLAIN_JOB_ID|$CHAMBERLAIN_COMMAND"',
        ]
    }
    body = request("handle", payload={"name": "Ada; rm -rf /", "n-1": {"a": [1]}}, config=config)
    outcome = await run_bundled("sys_exec", "run.py", body)
    assert outcome.kind is OutcomeKind.SUCCEEDED, outcome.error
    assert outcome.response is not None
    expected_stdout = 'Ada; rm -rf /|{"a":[1]}|job-1|handle\n'
    assert outcome.response.result == {
        "exit_code": 0,
        "stdout": expected_stdout,
        "stderr": "",
        "truncated": False,
    }
    assert outcome.response.events == (
        {
            "type": "sys_exec.completed",
            "payload": {
                "exit_code": 0,
                "stdout": expected_stdout,
                "stderr": "",
                "command": config["command"],
            },
        },
    )


async def test_sys_exec_string_command_is_split_not_shelled(tmp_path: Path) -> None:
    config = {"command": "printf '%s|' 'a b' $HOME", "cwd": str(tmp_path)}
    outcome = await run_bundled("sys_exec", "run.py", request("poll", config=config))
    assert outcome.response is not None
    assert outcome.response.result["stdout"] == "a b|$HOME|"


async def test_sys_exec_nonzero_exit_fails_without_retry() -> None:
    config = {"command": ["sh", "-c", "echo oops >&2; exit 3"]}
    outcome = await run_bundled("sys_exec", "run.py", request(config=config))
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.FAILED, False)
    assert outcome.error == "command exited with code 3: oops"
    assert outcome.response is not None
    assert outcome.response.result["exit_code"] == 3


async def test_sys_exec_retry_on_failure() -> None:
    config = {"command": ["false"], "retry_on_failure": True}
    outcome = await run_bundled("sys_exec", "run.py", request(config=config))
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.FAILED, True)


async def test_sys_exec_output_keeps_the_tail() -> None:
    config = {"command": ["sh", "-c", "seq 1 5000"], "max_output": 20}
    outcome = await run_bundled("sys_exec", "run.py", request(config=config))
    assert outcome.response is not None
    assert outcome.response.result["stdout"].endswith("4999\n5000\n")
    assert len(outcome.response.result["stdout"]) == 20
    assert outcome.response.result["truncated"] is True


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({}, id="missing"),
        pytest.param({"command": []}, id="empty"),
        pytest.param({"command": [1, 2]}, id="not-strings"),
        pytest.param({"command": ["/nonexistent/program"]}, id="not-found"),
    ],
)
async def test_sys_exec_bad_command_is_a_config_error(config: dict[str, Any]) -> None:
    with trio.fail_after(TEST_DEADLINE):
        result = await run_plugin(
            entrypoint=BUNDLED / "sys_exec" / "run.py",
            cwd=BUNDLED / "sys_exec",
            request=request(config=config),
            timeout=10,
            limits=FAST,
        )
    assert result.exit_code == 78
    outcome = decide_outcome(result)
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.FAILED, False)
    assert outcome.error is not None
    assert outcome.error.startswith("sys_exec: ")


async def test_sys_exec_health_reports_the_command() -> None:
    config = {"command": ["uptime"]}
    outcome = await run_bundled("sys_exec", "run.py", request("health", config=config))
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.response is not None
    assert outcome.response.result == {"command": ["uptime"], "cwd": None}


async def test_sys_exec_stops_the_command_before_the_deadline() -> None:
    config = {"command": ["sleep", "30"]}
    # 1.5 s to the deadline minus sys_exec's 1 s margin: it answers before we kill it.
    outcome = await run_bundled(
        "sys_exec", "run.py", request(config=config, seconds=1.5), time_limit=10
    )
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("command timed out after")
