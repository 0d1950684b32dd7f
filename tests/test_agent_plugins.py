"""The bundled coding-agent plugins (claude_code, codex), run as the gateway runs them.

Each test starts the plugin's entrypoint as a subprocess with the fake CLIs of
tests/agent_fakes first on PATH, writes the request line (and, for an interactive
session, the input lines) to its stdin and reads its stdout. The fakes log every
invocation (argv, cwd, stdin lines) to FAKE_AGENT_LOG, and keep their sessions under
FAKE_AGENT_STATE, so a follow-up can resume what an earlier job started.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "agent_fakes"
CLAUDE = REPO / "plugins" / "claude_code" / "run.py"
CODEX = REPO / "plugins" / "codex" / "run.py"
TIMEOUT = 10.0


@pytest.fixture
def agent_env(tmp_path: Path) -> dict[str, str]:
    env = {
        "PATH": f"{FAKES}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "FAKE_AGENT_LOG": str(tmp_path / "agent-log.jsonl"),
        "FAKE_AGENT_STATE": str(tmp_path / "agent-state"),
    }
    return env


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def request(command: str, payload: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "protocol": 2,
        "job_id": "job-1",
        "command": command,
        "config": {},
        "state": {},
        "context": {"ductile_plugin": "agent"},
        "payload": dict(payload or {}),
        "deadline_at": "2099-01-01T00:00:00.000Z",
        **extra,
    }


def run_plugin(
    entrypoint: Path, body: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[int, dict[str, Any], str]:
    """A plain v2 job: the request is all of stdin; the response all of stdout."""
    done = subprocess.run(
        [str(entrypoint)],
        input=json.dumps(body) + "\n",
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=entrypoint.parent,
        timeout=TIMEOUT,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout + done.stderr
    return done.returncode, json.loads(lines[0]), done.stderr


def agent_log(env: Mapping[str, str]) -> list[dict[str, Any]]:
    path = Path(env["FAKE_AGENT_LOG"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def stdin_texts(record: Mapping[str, Any]) -> list[str]:
    """The user messages a fake claude received, from its logged stdin lines."""
    texts = []
    for line in record["stdin"]:
        message = json.loads(line)
        assert message["type"] == "user"
        assert message["message"]["role"] == "user"
        texts.append(message["message"]["content"])
    return texts


class Interactive:
    """An interactive attempt: JSON lines both ways, as the gateway speaks them."""

    def __init__(self, entrypoint: Path, body: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            [str(entrypoint)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env),
            cwd=entrypoint.parent,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.send({**body, "interactive": True})

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def send(self, message: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def say(self, text: str, message_id: str) -> None:
        self.send({"type": "input", "message": text, "message_id": message_id})

    def complete(self) -> None:
        self.send({"type": "complete"})
        assert self.process.stdin is not None
        self.process.stdin.close()

    def next(self) -> dict[str, Any]:
        line = self.lines.get(timeout=TIMEOUT)
        assert line is not None, "the plugin closed stdout: " + "".join(self.stderr)
        document: dict[str, Any] = json.loads(line)
        return document

    def until(self, kind: str) -> list[dict[str, Any]]:
        """Lines up to and including the first of ``kind``."""
        seen = []
        while True:
            line = self.next()
            seen.append(line)
            if line["type"] == kind:
                return seen

    def finish(self) -> int:
        assert self.lines.get(timeout=TIMEOUT) is None, "more stdout after the response"
        return self.process.wait(timeout=TIMEOUT)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def interactive() -> Iterator[Any]:
    started: list[Interactive] = []

    def start(entrypoint: Path, body: Mapping[str, Any], env: Mapping[str, str]) -> Interactive:
        session = Interactive(entrypoint, body, env)
        started.append(session)
        return session

    yield start
    for session in started:
        session.close()


# --------------------------------------------------------------------- claude_code run


def test_claude_run_answers_with_the_result_in_the_workspace(
    agent_env: dict[str, str], workspace: Path
) -> None:
    (workspace / ".mcp.json").write_text(json.dumps({"mcpServers": {"docs": {"url": "x"}}}))
    body = request(
        "run",
        {"prompt": "TOOL:git status"},
        workspace_dir=str(workspace),
        config={"model": "opus", "max_turns": 3, "allowed_tools": ["Bash(git:*)", "Read"]},
    )
    code, response, stderr = run_plugin(CLAUDE, body, agent_env)

    assert code == 0
    assert response["status"] == "ok", response
    result = response["result"]
    assert result["text"] == "ran git status"
    assert result["subtype"] == "success"
    assert result["num_turns"] == 2
    assert result["total_cost_usd"] > 0
    assert result["usage"]["output_tokens"] == 14
    session_id = result["session_id"]
    assert session_id
    assert response["session"] == {"session_id": session_id}
    assert response["events"][0]["type"] == "claude_code.result"
    assert response["events"][0]["payload"]["session_id"] == session_id
    # Live lines: the tool call and the text, on stderr (a run is not interactive).
    assert "[tool] Bash: git status" in stderr.splitlines()
    assert "ran git status" in stderr.splitlines()

    [record] = agent_log(agent_env)
    assert record["cwd"] == str(workspace)
    assert record["argv"] == [
        "--print",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        "opus",
        "--max-turns",
        "3",
        "--allowedTools",
        "Bash(git:*),Read",
        "--mcp-config",
        str(workspace / ".mcp.json"),
    ]
    assert stdin_texts(record) == ["TOOL:git status"]
    assert record["stdin_eof"], "the plugin must close the CLI's stdin after the prompt"


def test_claude_run_without_a_workspace_runs_in_the_plugin_directory(
    agent_env: dict[str, str],
) -> None:
    code, response, _ = run_plugin(CLAUDE, request("run", {"prompt": "hello"}), agent_env)
    assert (code, response["status"], response["result"]["text"]) == (0, "ok", "echo: hello")
    [record] = agent_log(agent_env)
    assert record["cwd"] == str(CLAUDE.parent)
    assert "--mcp-config" not in record["argv"]


def test_claude_error_result_fails_the_job_and_keeps_the_session(
    agent_env: dict[str, str],
) -> None:
    code, response, _ = run_plugin(CLAUDE, request("run", {"prompt": "FAIL:overloaded"}), agent_env)
    assert code == 0
    assert response["status"] == "error"
    assert response["error"] == "claude: API Error: overloaded"
    assert response["retry"] is True  # a failed API call may pass next time
    assert response["session"]["session_id"] == response["result"]["session_id"]


def test_claude_crash_names_the_exit_code_and_the_last_stderr_line(
    agent_env: dict[str, str],
) -> None:
    agent_env["FAKE_AGENT_MODE"] = "crash"
    code, response, stderr = run_plugin(CLAUDE, request("run", {"prompt": "hi"}), agent_env)
    assert code == 0
    assert response["status"] == "error"
    assert response["error"] == "claude exited with code 1: fatal: simulated crash"
    assert "fatal: simulated crash" in stderr  # the CLI's stderr is relayed
    assert response["session"]["session_id"]  # from the init event


def test_claude_missing_binary_is_a_config_error(agent_env: dict[str, str]) -> None:
    body = request("run", {"prompt": "hi"}, config={"binary": "no-such-claude"})
    code, response, _ = run_plugin(CLAUDE, body, agent_env)
    assert code == 78
    assert response["status"] == "error"
    assert response["retry"] is False
    assert "no-such-claude" in response["error"]
    assert agent_log(agent_env) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"max_turns": "3"}, "max_turns must be a positive integer"),
        ({"allowed_tools": "Bash"}, "allowed_tools must be a list of strings"),
        ({"model": 4}, "model must be a string"),
    ],
)
def test_claude_bad_config_exits_78(
    agent_env: dict[str, str], config: dict[str, Any], message: str
) -> None:
    code, response, _ = run_plugin(
        CLAUDE, request("run", {"prompt": "hi"}, config=config), agent_env
    )
    assert code == 78
    assert response["retry"] is False
    assert message in response["error"]


def test_claude_health_reports_the_binary_and_version(agent_env: dict[str, str]) -> None:
    code, response, _ = run_plugin(CLAUDE, request("health"), agent_env)
    assert code == 0
    assert response["status"] == "ok"
    assert response["result"]["binary"] == str(FAKES / "claude")
    assert response["result"]["version"] == "2.1.0 (Claude Code)"


# --------------------------------------------------------------------- claude_code session


def test_claude_session_relays_inputs_and_waits_after_each_turn(
    agent_env: dict[str, str], workspace: Path, interactive: Any
) -> None:
    body = request("session", {"prompt": "start"}, workspace_dir=str(workspace))
    session = interactive(CLAUDE, body, agent_env)

    assert session.until("waiting") == [
        {"type": "output", "text": "echo: start"},
        {"type": "waiting"},
    ]
    session.say("ASK:Which branch?", "m1")
    assert session.until("waiting") == [
        {"type": "output", "text": "Which branch?"},
        {"type": "waiting"},
    ]
    session.say("TOOL:git checkout main", "m2")
    assert session.until("waiting") == [
        {"type": "output", "text": "[tool] Bash: git checkout main"},
        {"type": "output", "text": "ran git checkout main"},
        {"type": "waiting"},
    ]
    session.complete()
    response = session.next()
    assert session.finish() == 0

    assert response["type"] == "response"
    assert response["status"] == "ok", response
    assert response["result"]["text"] == "ran git checkout main"
    assert response["result"]["exchanges"] == 3
    session_id = response["result"]["session_id"]
    assert response["session"] == {"session_id": session_id}
    [record] = agent_log(agent_env)
    assert record["cwd"] == str(workspace)
    assert stdin_texts(record) == ["start", "ASK:Which branch?", "TOOL:git checkout main"]
    assert record["stdin_eof"]


def test_claude_session_without_a_prompt_waits_first(
    agent_env: dict[str, str], interactive: Any
) -> None:
    session = interactive(CLAUDE, request("session"), agent_env)
    assert session.next() == {"type": "waiting"}
    session.say("hi", "m1")
    assert session.until("waiting")[0] == {"type": "output", "text": "echo: hi"}
    session.complete()
    response = session.next()
    assert session.finish() == 0
    assert (response["status"], response["result"]["text"]) == ("ok", "echo: hi")


def test_claude_session_complete_during_a_turn_lets_it_finish(
    agent_env: dict[str, str], interactive: Any
) -> None:
    session = interactive(CLAUDE, request("session", {"prompt": "SLEEP:0.3"}), agent_env)
    session.complete()
    lines = session.until("response")
    assert session.finish() == 0
    assert {"type": "waiting"} not in lines
    assert lines[-1]["status"] == "ok"
    assert lines[-1]["result"]["text"] == "slept 0.3"


def test_claude_session_complete_stops_a_long_turn_within_the_gateway_s_grace(
    agent_env: dict[str, str], interactive: Any
) -> None:
    # Through the daemon, the job would fail as unanswered otherwise (see
    # tests/test_agents_e2e.py); here: the turn is cut short, the answer is ok.
    session = interactive(CLAUDE, request("session", {"prompt": "SLEEP:60"}), agent_env)
    session.complete()
    lines = session.until("response")
    assert session.finish() == 0
    assert lines[-1]["status"] == "ok"
    assert lines[-1]["result"]["text"] is None


def test_claude_session_replays_the_transcript_before_waiting(
    agent_env: dict[str, str], interactive: Any
) -> None:
    transcript = [
        {"message_id": "m1", "message": "first", "at": "2026-01-01T00:00:00Z"},
        {"message_id": "m2", "message": "second", "at": "2026-01-01T00:00:01Z"},
    ]
    body = request("session", {"prompt": "start"}, transcript=transcript)
    session = interactive(CLAUDE, body, agent_env)

    assert session.until("waiting") == [
        {"type": "output", "text": "echo: start"},
        {"type": "output", "text": "echo: first"},
        {"type": "output", "text": "echo: second"},
        {"type": "waiting"},
    ]
    session.say("HISTORY", "m3")
    assert session.until("waiting")[0] == {"type": "output", "text": "start | first | second"}
    session.complete()
    response = session.next()
    assert session.finish() == 0
    assert response["status"] == "ok"
    [record] = agent_log(agent_env)
    assert stdin_texts(record) == ["start", "first", "second", "HISTORY"]


def test_claude_session_crash_answers_with_an_error(
    agent_env: dict[str, str], interactive: Any
) -> None:
    agent_env["FAKE_AGENT_MODE"] = "crash"
    session = interactive(CLAUDE, request("session", {"prompt": "hi"}), agent_env)
    response = session.until("response")[-1]
    assert session.finish() == 0
    assert response["status"] == "error"
    assert response["error"].startswith("claude exited with code 1")


# --------------------------------------------------------------------- claude_code follow-up


def test_claude_follow_up_resumes_the_session_in_the_same_cwd(
    agent_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    config = {"cwd": str(project)}
    _, first, _ = run_plugin(CLAUDE, request("run", {"prompt": "plan"}, config=config), agent_env)
    assert first["status"] == "ok"
    session_id = first["session"]["session_id"]

    follow_up = {"job_id": "job-1", "prompt": "HISTORY", "session": first["session"]}
    body = request("run", {"prompt": "plan"}, config=config, follow_up=follow_up, job_id="job-2")
    code, second, _ = run_plugin(CLAUDE, body, agent_env)

    assert code == 0
    assert second["status"] == "ok", second
    assert second["result"]["text"] == "plan"  # the resumed conversation remembers it
    assert second["session"] == {"session_id": session_id}
    earlier, later = agent_log(agent_env)
    assert f"--resume={session_id}" in later["argv"]
    assert not any(arg.startswith("--resume") for arg in earlier["argv"])
    assert later["cwd"] == earlier["cwd"] == str(project)
    assert stdin_texts(later) == ["HISTORY"]


def test_claude_follow_up_of_an_unknown_session_fails_without_retry(
    agent_env: dict[str, str],
) -> None:
    follow_up = {"job_id": "job-1", "prompt": "go on", "session": {"session_id": "gone"}}
    code, response, _ = run_plugin(
        CLAUDE, request("run", {"prompt": "x"}, follow_up=follow_up), agent_env
    )
    assert code == 0
    assert response["status"] == "error"
    assert response["error"] == "claude: No conversation found with session ID: gone"
    assert response["retry"] is False


def test_claude_follow_up_without_a_session_starts_afresh(agent_env: dict[str, str]) -> None:
    follow_up = {"job_id": "job-1", "prompt": "again", "session": None}
    code, response, stderr = run_plugin(
        CLAUDE, request("run", {"prompt": "x"}, follow_up=follow_up), agent_env
    )
    assert (code, response["status"], response["result"]["text"]) == (0, "ok", "echo: again")
    assert "left no session to resume" in stderr
    [record] = agent_log(agent_env)
    assert not any(arg.startswith("--resume") for arg in record["argv"])


# --------------------------------------------------------------------- claude_code loops


def iteration(
    number: int,
    maximum: int = 5,
    *,
    token: str | None = "DONE",
    previous: tuple[dict[str, Any], ...] = (),
    attempt: int = 1,
) -> dict[str, Any]:
    """A loop iteration's ``iteration`` field, as the gateway sends it."""
    return {
        "number": number,
        "max": maximum,
        "attempt": attempt,
        "completion_token": token,
        "previous": list(previous),
    }


def finished(number: int, *feedback: dict[str, Any]) -> dict[str, Any]:
    return {"number": number, "summary": f"echo: iteration {number}", "feedback": list(feedback)}


def feedback(
    command: list[str], exit_code: int | None, output_tail: str = "", *, passed: bool = False
) -> dict[str, Any]:
    return {
        "command": command,
        "exit_code": exit_code,
        "passed": passed,
        "output_tail": output_tail,
    }


def completes(result: object, token: str) -> bool:
    """The gateway's rule: a string result whose last non-empty line is the token."""
    if not isinstance(result, str):
        return False
    lines = [line.strip() for line in result.splitlines() if line.strip()]
    return bool(lines) and lines[-1] == token


def test_claude_loop_prompt_carries_the_iteration_the_feedback_and_the_token(
    agent_env: dict[str, str],
) -> None:
    tests_failed = feedback(
        ["npm", "test"], 1, "FAIL src/app.test.js\n  expected 3, got 4\n\n  1 failed\n"
    )
    lint_passed = feedback(["sh", "-c", "ruff check ."], 0, "All checks passed!", passed=True)
    body = request(
        "run",
        {"prompt": "Fix the failing test."},
        iteration=iteration(2, previous=(finished(1, tests_failed, lint_passed),)),
    )
    code, response, stderr = run_plugin(CLAUDE, body, agent_env)

    prompt = (
        "Fix the failing test.\n"
        "\n"
        "Iteration 2 of 5.\n"
        "\n"
        "Feedback on iteration 1:\n"
        "- npm test: failed (exit code 1)\n"
        "    FAIL src/app.test.js\n"
        "      expected 3, got 4\n"
        "\n"
        "      1 failed\n"
        "- sh -c 'ruff check .': passed (exit code 0)\n"
        "    All checks passed!\n"
        "\n"
        "When the task is complete, end your reply with a line containing only: DONE"
    )
    [record] = agent_log(agent_env)
    assert stdin_texts(record) == [prompt]
    assert "Iteration 2 of 5." in prompt.splitlines()
    assert not any(arg.startswith("--resume") for arg in record["argv"])
    assert "[claude_code] iteration 2 of 5" in stderr.splitlines()

    assert code == 0
    assert response["status"] == "ok", response
    # The result is the agent's final text, a string: the gateway's token rule reads it.
    # The fake echoes the prompt, whose last line mentions the token without being it.
    assert response["result"] == f"echo: {prompt}"
    assert not completes(response["result"], "DONE")
    assert "complete" not in response
    # The summary moved to the event; the session is where it always is.
    session_id = response["session"]["session_id"]
    [event] = response["events"]
    assert event["type"] == "claude_code.result"
    payload = event["payload"]
    assert payload["session_id"] == session_id
    assert (payload["subtype"], payload["num_turns"], payload["exchanges"]) == ("success", 1, 1)
    assert payload["total_cost_usd"] > 0
    assert payload["usage"]["output_tokens"] == 7
    assert (payload["is_error"], payload["iteration"], payload["attempt"]) == (False, 2, 1)
    assert "text" not in payload


def test_claude_loop_first_iteration_without_a_token_adds_only_its_number(
    agent_env: dict[str, str],
) -> None:
    body = request("run", {"prompt": "hello"}, iteration=iteration(1, 3, token=None))
    code, response, _ = run_plugin(CLAUDE, body, agent_env)
    assert (code, response["status"]) == (0, "ok")
    assert response["result"] == "echo: hello\n\nIteration 1 of 3."
    [record] = agent_log(agent_env)
    assert stdin_texts(record) == ["hello\n\nIteration 1 of 3."]


def test_claude_loop_prompt_shows_only_the_last_feedback_its_tail_cut(
    agent_env: dict[str, str],
) -> None:
    long_tail = "early output\n" + "x" * 10_000 + "\nthe last line"
    previous = (
        finished(1, feedback(["pytest"], 2, "an old failure")),
        finished(2, feedback(["pytest", "-x"], None, long_tail)),
    )
    body = request("run", {"prompt": "go"}, iteration=iteration(3, 4, previous=previous))
    code, response, _ = run_plugin(CLAUDE, body, agent_env)
    assert (code, response["status"]) == (0, "ok")
    [record] = agent_log(agent_env)
    [prompt] = stdin_texts(record)
    assert prompt.startswith("go\n\nIteration 3 of 4.\n\nFeedback on iteration 2:\n")
    assert "- pytest -x: failed (no exit code)\n    \u2026xxx" in prompt
    assert "an old failure" not in prompt and "iteration 1" not in prompt
    assert "early output" not in prompt  # the tail keeps the end
    assert prompt.endswith(
        "    the last line\n\n"
        "When the task is complete, end your reply with a line containing only: DONE"
    )
    assert len(prompt) < 4096 + 300


def test_claude_loop_reply_ending_with_the_token_is_a_plain_string(
    agent_env: dict[str, str],
) -> None:
    body = request("run", {"prompt": "DONEAFTER:DONE"}, iteration=iteration(1))
    code, response, _ = run_plugin(CLAUDE, body, agent_env)
    assert (code, response["status"]) == (0, "ok")
    assert response["result"] == "working\nDONE"
    assert completes(response["result"], "DONE")
    assert "complete" not in response  # the gateway's rule decides, not the plugin


def test_claude_loop_iterations_are_fresh_runs_until_one_ends_with_the_token(
    agent_env: dict[str, str],
) -> None:
    # The gateway's part, played by the test: one run per iteration, each told what
    # the feedback said after the one before, until a reply ends with the token.
    previous: list[dict[str, Any]] = []
    results = []
    for number in (1, 2, 3):
        body = request(
            "run",
            {"prompt": "DONEAT:2:ALL GREEN"},
            iteration=iteration(number, 3, token="ALL GREEN", previous=tuple(previous)),
        )
        code, response, _ = run_plugin(CLAUDE, body, agent_env)
        assert (code, response["status"]) == (0, "ok"), response
        results.append(response["result"])
        if completes(response["result"], "ALL GREEN"):
            break
        previous.append(finished(number, feedback(["make", "check"], 1, f"{number} left")))

    assert results == ["still working", "working\nALL GREEN"]
    first, second = agent_log(agent_env)
    assert not any(arg.startswith("--resume") for arg in first["argv"] + second["argv"])
    assert json.loads(first["stdin"][0])["session_id"] == "default"
    [later] = stdin_texts(second)
    assert "Iteration 2 of 3." in later.splitlines()
    assert "- make check: failed (exit code 1)\n    1 left" in later


def test_claude_loop_failed_iteration_is_an_error_with_its_text(
    agent_env: dict[str, str],
) -> None:
    body = request("run", {"prompt": "FAIL:overloaded"}, iteration=iteration(1, attempt=2))
    code, response, stderr = run_plugin(CLAUDE, body, agent_env)
    assert code == 0
    assert response["status"] == "error"
    # The fake's error repeats the whole message, the iteration's section too.
    assert response["error"].startswith("claude: API Error: overloaded\n")
    assert response["retry"] is True
    assert isinstance(response["result"], str)
    assert response["result"].startswith("API Error: overloaded\n")
    payload = response["events"][0]["payload"]
    assert (payload["is_error"], payload["attempt"]) == (True, 2)
    assert "[claude_code] iteration 1 of 5, attempt 2" in stderr.splitlines()


def test_claude_loop_follow_up_resumes_the_followed_job_s_session(
    agent_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    config = {"cwd": str(project)}
    _, first, _ = run_plugin(CLAUDE, request("run", {"prompt": "plan"}, config=config), agent_env)
    session_id = first["session"]["session_id"]
    follow_up = {"job_id": "job-1", "prompt": "Now the docs.", "session": first["session"]}
    body = request(
        "run",
        {"prompt": "plan"},
        config=config,
        follow_up=follow_up,
        iteration=iteration(1, 2),
        job_id="job-2",
    )
    code, response, _ = run_plugin(CLAUDE, body, agent_env)
    assert (code, response["status"]) == (0, "ok"), response
    _, later = agent_log(agent_env)
    assert f"--resume={session_id}" in later["argv"]
    assert stdin_texts(later) == [
        "Now the docs.\n\nIteration 1 of 2.\n\n"
        "When the task is complete, end your reply with a line containing only: DONE"
    ]
    assert isinstance(response["result"], str)


def test_claude_loop_iteration_must_be_an_object(agent_env: dict[str, str]) -> None:
    body = request("run", {"prompt": "hi"}, iteration=[1, 5])
    code, response, _ = run_plugin(CLAUDE, body, agent_env)
    assert (code, response["status"], response["retry"]) == (0, "error", False)
    assert response["error"] == "claude_code: iteration must be an object"
    assert agent_log(agent_env) == []


# --------------------------------------------------------------------- codex


def test_codex_run_answers_with_text_usage_and_thread(
    agent_env: dict[str, str], workspace: Path
) -> None:
    body = request(
        "run",
        {"prompt": "TOOL:ls"},
        workspace_dir=str(workspace),
        config={"model": "gpt-5-codex", "sandbox": "workspace-write"},
    )
    code, response, stderr = run_plugin(CODEX, body, agent_env)

    assert code == 0
    assert response["status"] == "ok", response
    result = response["result"]
    assert result["text"] == "ran ls"
    assert result["usage"] == {"input_tokens": 120, "cached_input_tokens": 100, "output_tokens": 9}
    assert result["items"] == {"reasoning": 1, "command_execution": 1, "agent_message": 1}
    assert response["session"] == {"thread_id": result["thread_id"]}
    assert response["events"][0]["type"] == "codex.result"
    assert "ran ls" in stderr.splitlines()
    assert "[exec] ls" in stderr.splitlines()

    [record] = agent_log(agent_env)
    assert record["cwd"] == str(workspace)
    assert record["argv"] == [
        "exec",
        "--json",
        "--model",
        "gpt-5-codex",
        "--sandbox",
        "workspace-write",
        "--skip-git-repo-check",
        "--",
        "TOOL:ls",
    ]
    assert record["stdin"] == []
    assert record["stdin_eof"]


def test_codex_follow_up_resumes_the_thread(agent_env: dict[str, str]) -> None:
    _, first, _ = run_plugin(CODEX, request("run", {"prompt": "plan"}), agent_env)
    thread_id = first["session"]["thread_id"]
    follow_up = {"job_id": "job-1", "prompt": "HISTORY", "session": first["session"]}
    code, second, _ = run_plugin(
        CODEX, request("run", {"prompt": "plan"}, follow_up=follow_up), agent_env
    )

    assert code == 0
    assert second["status"] == "ok", second
    assert second["result"]["text"] == "plan"
    assert second["session"] == {"thread_id": thread_id}
    _, later = agent_log(agent_env)
    assert later["argv"][-4:] == ["resume", thread_id, "--", "HISTORY"]


def test_codex_crash_names_the_exit_code(agent_env: dict[str, str]) -> None:
    agent_env["FAKE_AGENT_MODE"] = "crash"
    code, response, stderr = run_plugin(CODEX, request("run", {"prompt": "hi"}), agent_env)
    assert code == 0
    assert response["status"] == "error"
    assert response["error"] == "codex exited with code 1: Error: simulated crash"
    assert "Error: simulated crash" in stderr


def test_codex_failed_turn_is_an_error(agent_env: dict[str, str]) -> None:
    code, response, _ = run_plugin(CODEX, request("run", {"prompt": "FAIL:quota"}), agent_env)
    assert code == 0
    assert response["status"] == "error"
    assert response["error"] == "codex: quota"
    assert response["session"]["thread_id"]


def test_codex_missing_binary_and_bad_sandbox_are_config_errors(agent_env: dict[str, str]) -> None:
    for config in ({"binary": "/nowhere/codex"}, {"sandbox": "yolo"}):
        code, response, _ = run_plugin(
            CODEX, request("run", {"prompt": "hi"}, config=config), agent_env
        )
        assert (code, response["status"], response["retry"]) == (78, "error", False)
    assert agent_log(agent_env) == []


def test_codex_health_reports_the_version(agent_env: dict[str, str]) -> None:
    code, response, _ = run_plugin(CODEX, request("health"), agent_env)
    assert (code, response["status"]) == (0, "ok")
    assert response["result"]["version"] == "codex-cli 0.58.0"


# --------------------------------------------------------------------- the fakes themselves


def test_fake_claude_checks_its_arguments_as_the_real_cli(agent_env: dict[str, str]) -> None:
    def claude(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(FAKES / "claude"), *args],
            input="",
            capture_output=True,
            text=True,
            env=agent_env,
            timeout=TIMEOUT,
            check=False,
        )

    no_verbose = claude("-p", "--output-format", "stream-json", "hi")
    assert no_verbose.returncode == 1
    assert "--output-format=stream-json requires --verbose" in no_verbose.stderr
    text_out = claude("-p", "--input-format", "stream-json", "--verbose")
    assert text_out.returncode == 1
    assert "--input-format=stream-json requires output-format=stream-json" in text_out.stderr
    assert claude("--version").stdout == "2.1.0 (Claude Code)\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["claude", "--print", "--input-format", "stream-json", "--output-format", "stream-json",
         "--verbose"],
        ["claude", "-p", "hello"],
        ["codex", "exec", "--json", "--skip-git-repo-check", "hello"],
    ],
)  # fmt: skip
def test_fakes_hang_while_stdin_stays_open(agent_env: dict[str, str], argv: list[str]) -> None:
    process = subprocess.Popen(
        [str(FAKES / argv[0]), *argv[1:]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=agent_env,
    )
    try:
        assert process.stdin is not None
        if "stream-json" in argv:
            process.stdin.write(
                json.dumps({"type": "user", "message": {"role": "user", "content": "hi"}}) + "\n"
            )
            process.stdin.flush()
        time.sleep(0.3)
        assert process.poll() is None, "the fake must wait for stdin's end"
        out, _ = process.communicate("", timeout=TIMEOUT)
        assert process.returncode == 0
        assert '"result"' in out or out.strip().endswith("hello") or "turn.completed" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_plugins_use_only_the_standard_library() -> None:
    # They run under whatever python3 the machine has, outside the project's venv.
    for entrypoint in (CLAUDE, CODEX):
        done = subprocess.run(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                f"import runpy; runpy.run_path({str(entrypoint)!r})",
            ],
            input="{}",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert "ModuleNotFoundError" not in done.stderr, done.stderr


@pytest.mark.parametrize("entrypoint", [CLAUDE, CODEX])
def test_agents_are_stopped_before_the_job_deadline(
    agent_env: dict[str, str], entrypoint: Path
) -> None:
    # The plugins stop their CLI 2 s before the deadline, to answer (with the session
    # id, for a follow-up) before the daemon's SIGTERM.
    deadline = datetime.now(UTC) + timedelta(seconds=2.4)
    body = request("run", {"prompt": "SLEEP:5"}, deadline_at=deadline.isoformat())
    started = time.monotonic()
    code, response, _ = run_plugin(entrypoint, body, agent_env)
    assert time.monotonic() - started < 2.0
    assert code == 0
    assert response["status"] == "error"
    assert response["error"].endswith("stopped at the job deadline")
    assert response["session"]
