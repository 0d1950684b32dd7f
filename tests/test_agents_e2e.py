"""The bundled coding-agent plugins behind the real daemon, with fake CLIs on PATH.

The fakes (tests/agent_fakes) speak the real CLIs' JSONL, hang while their stdin
stays open, and log every invocation (argv, cwd, stdin lines) to FAKE_AGENT_LOG, so
a test can prove how the plugin ran them.  Settings reach the plugins through their
``env`` config, as an operator would set them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DaemonFactory, DaemonProcess, api_client, finished_job, wait_for

from chamberlain.plugins.strays import find_job_processes

pytestmark = pytest.mark.e2e

FAKES = Path(__file__).resolve().parent / "agent_fakes"


def agent_config(tmp_path: Path, mode: str = "normal", **plugin: Any) -> dict[str, Any]:
    env = {
        "FAKE_AGENT_LOG": str(tmp_path / "agent-log.jsonl"),
        "FAKE_AGENT_STATE": str(tmp_path / "agent-state"),
        "FAKE_AGENT_MODE": mode,
    }
    settings = {"env": env, "retry": {"max_attempts": 1}, **plugin}
    return {"plugins": {"claude_code": settings, "codex": settings}}


def invocations(tmp_path: Path, agent: str) -> list[dict[str, Any]]:
    log = tmp_path / "agent-log.jsonl"
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["agent"] == agent]


async def start(daemon: DaemonFactory, config: dict[str, Any]) -> DaemonProcess:
    return await daemon(config, env={"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}"})


async def trigger(c: httpx.AsyncClient, plugin: str, command: str, payload: Any) -> str:
    r = await c.post(f"/trigger/{plugin}/{command}", json={"payload": payload})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def waiting(c: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body: dict[str, Any] = (await c.get(f"/job/{job_id}?include=messages")).json()
        return body if body["waiting_for_input"] else None

    found: dict[str, Any] = await wait_for(check, timeout=30)
    return found


def texts(job: dict[str, Any], kind: str) -> list[str]:
    return [m["text"] for m in job["messages"] if m["kind"] == kind]


async def instruct(c: httpx.AsyncClient, job_id: str, prompt: str) -> str:
    r = await c.post(f"/job/{job_id}/instruct", json={"prompt": prompt})
    assert r.status_code == 202, r.text
    new: str = r.json()["job_id"]
    return new


# -- claude_code ----------------------------------------------------------------------


async def test_claude_run_answers_and_a_follow_up_resumes_its_session(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(daemon, agent_config(tmp_path))
    async with api_client(d) as c:
        first = await finished_job(c, await trigger(c, "claude_code", "run", {"prompt": "hello"}))
        assert first["status"] == "succeeded", first["last_error"]
        result = first["result"]["result"]
        assert result["text"] == "echo: hello"
        session_id = first["session"]["session_id"]
        assert result["session_id"] == session_id
        # The agent's words streamed as the job's stderr messages.
        assert "echo: hello" in texts(first, "stderr")

        second = await finished_job(c, await instruct(c, first["job_id"], "HISTORY"))
        assert second["status"] == "succeeded", second["last_error"]
        # The resumed conversation remembers the first prompt.
        assert "hello" in second["result"]["result"]["text"]
        assert second["session"]["session_id"] == session_id
    runs = invocations(tmp_path, "claude")
    assert len(runs) == 2
    assert f"--resume={session_id}" in runs[1]["argv"]
    assert not any(arg.startswith("--resume") for arg in runs[0]["argv"])
    assert runs[1]["cwd"] == runs[0]["cwd"]
    # A run closes the CLI's stdin after the prompt (the CLI would hang otherwise).
    assert all(run["stdin_eof"] for run in runs)


async def test_claude_session_is_interactive_until_completed(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(daemon, agent_config(tmp_path))
    async with api_client(d) as c:
        job_id = await trigger(c, "claude_code", "session", {"prompt": "ASK:What should I build?"})
        asked = await waiting(c, job_id)
        assert "What should I build?" in texts(asked, "stdout")
        r = await c.post(f"/job/{job_id}/message", json={"message": "a CLI"})
        assert r.status_code == 200, r.text

        async def answered() -> dict[str, Any] | None:
            body: dict[str, Any] = (await c.get(f"/job/{job_id}?include=messages")).json()
            replied = "echo: a CLI" in texts(body, "stdout")
            return body if replied and body["waiting_for_input"] else None

        await wait_for(answered, timeout=30)
        r = await c.post(f"/job/{job_id}/complete")
        assert r.status_code == 202, r.text
        done = await finished_job(c, job_id)
        assert done["status"] == "succeeded", done["last_error"]
        assert done["result"]["result"]["text"] == "echo: a CLI"
        assert done["result"]["result"]["exchanges"] == 2
        assert done["session"]["session_id"]
    (run,) = invocations(tmp_path, "claude")
    sent = [json.loads(line)["message"]["content"] for line in run["stdin"]]
    assert sent == ["ASK:What should I build?", "a CLI"]
    assert run["stdin_eof"]


async def test_claude_session_completed_mid_turn_still_answers(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(daemon, agent_config(tmp_path))
    async with api_client(d) as c:
        job_id = await trigger(c, "claude_code", "session", {"prompt": "hi"})
        await waiting(c, job_id)
        r = await c.post(f"/job/{job_id}/message", json={"message": "SLEEP:60"})
        assert r.status_code == 200, r.text
        r = await c.post(f"/job/{job_id}/complete")
        assert r.status_code == 202, r.text
        done = await finished_job(c, job_id)
        # Not "unanswered": the plugin cut the turn short within the daemon's grace.
        assert done["status"] == "succeeded", done["last_error"]
        assert done["result"]["result"]["text"] == "echo: hi"
    assert find_job_processes([job_id]) == {}


async def test_a_crashing_claude_fails_the_job_with_its_reason(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(daemon, agent_config(tmp_path, mode="crash"))
    async with api_client(d) as c:
        done = await finished_job(c, await trigger(c, "claude_code", "run", {"prompt": "hello"}))
    assert done["status"] == "dead"
    assert done["last_error"].startswith("claude exited with code 1: fatal: simulated crash")


async def test_a_hanging_claude_is_ended_by_the_timeout_with_nothing_left(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(
        daemon,
        agent_config(tmp_path, mode="hang", timeouts={"run": "3s"}, interactive_timeout="1s"),
    )
    async with api_client(d) as c:
        run = await finished_job(c, await trigger(c, "claude_code", "run", {"prompt": "hello"}))
        session = await finished_job(c, await trigger(c, "claude_code", "session", {"prompt": "x"}))
    # The run is stopped by the plugin just before its deadline; the silent session
    # by the daemon's idle timeout, its whole process group with it.
    assert run["status"] == "dead"
    assert "stopped at the job deadline" in run["last_error"]
    assert session["status"] == "dead"
    assert session["last_error"].startswith("timed out: no input or output for 1s")
    assert find_job_processes([run["job_id"], session["job_id"]]) == {}


# -- codex ----------------------------------------------------------------------------


async def test_codex_run_answers_and_a_follow_up_resumes_its_thread(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(daemon, agent_config(tmp_path))
    async with api_client(d) as c:
        first = await finished_job(c, await trigger(c, "codex", "run", {"prompt": "hello"}))
        assert first["status"] == "succeeded", first["last_error"]
        assert first["result"]["result"]["text"] == "echo: hello"
        thread_id = first["session"]["thread_id"]
        assert "echo: hello" in texts(first, "stderr")
        second = await finished_job(c, await instruct(c, first["job_id"], "HISTORY"))
        assert second["status"] == "succeeded", second["last_error"]
        assert "hello" in second["result"]["result"]["text"]
        assert second["session"]["thread_id"] == thread_id
    runs = invocations(tmp_path, "codex")
    assert len(runs) == 2
    argv = runs[1]["argv"]
    assert argv[argv.index("resume") + 1] == thread_id
    assert "resume" not in runs[0]["argv"]
    assert runs[1]["cwd"] == runs[0]["cwd"]
    assert all(run["stdin_eof"] for run in runs)


async def test_a_crashing_codex_fails_the_job_with_its_reason(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(daemon, agent_config(tmp_path, mode="crash"))
    async with api_client(d) as c:
        done = await finished_job(c, await trigger(c, "codex", "run", {"prompt": "hello"}))
    assert done["status"] == "dead"
    assert "simulated crash" in done["last_error"], done["last_error"]
    assert "exit" in done["last_error"] and "code 1" in done["last_error"], done["last_error"]


async def test_a_hanging_codex_is_ended_by_the_timeout_with_nothing_left(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(daemon, agent_config(tmp_path, mode="hang", timeouts={"run": "3s"}))
    async with api_client(d) as c:
        done = await finished_job(c, await trigger(c, "codex", "run", {"prompt": "hello"}))
    assert done["status"] == "dead"
    assert done["last_error"].startswith("codex: codex stopped at the job deadline")
    assert find_job_processes([done["job_id"]]) == {}


async def test_claude_in_a_loop_ends_on_the_iteration_whose_reply_ends_with_the_token(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await start(daemon, agent_config(tmp_path))
    async with api_client(d) as c:
        r = await c.post(
            "/trigger/claude_code/run",
            json={
                "payload": {"prompt": "DONEAT:2:DONE"},
                "loop": {"max_iterations": 4, "completion_token": "DONE"},
            },
        )
        assert r.status_code == 202, r.text
        done = await finished_job(c, r.json()["job_id"])
        history = (await c.get(f"/job/{done['job_id']}/iterations")).json()
    assert done["status"] == "succeeded", done["last_error"]
    assert done["completion_reason"] == "promise_detected"
    # The final assistant text is the iteration's result: the token rule applies.
    assert done["result"]["result"].splitlines()[-1] == "DONE"
    assert [it["promise_detected"] for it in history["iterations"]] == [False, True]
    runs = invocations(tmp_path, "claude")
    assert len(runs) == 2
    second = json.loads(runs[1]["stdin"][0])["message"]["content"]
    assert "Iteration 2 of 4." in second
    assert "end your reply with a line containing only: DONE" in second


async def test_claude_works_in_the_job_s_kept_workspace_and_its_follow_up_too(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    config = agent_config(tmp_path)
    config["plugins"]["claude_code"]["config"] = {"cwd": str(tmp_path)}
    d = await start(daemon, config)
    async with api_client(d) as c:
        r = await c.post(
            "/trigger/claude_code/run", json={"payload": {"prompt": "hello"}, "workspace": True}
        )
        assert r.status_code == 202, r.text
        first = await finished_job(c, r.json()["job_id"])
        second = await finished_job(c, await instruct(c, first["job_id"], "HISTORY"))
    workspace = tmp_path / "workspaces" / first["workspace_id"]
    runs = invocations(tmp_path, "claude")
    # The kept workspace wins over config.cwd; the follow-up resumes there.
    assert [run["cwd"] for run in runs] == [str(workspace), str(workspace)]
    assert f"--resume={first['session']['session_id']}" in runs[1]["argv"]
    assert "hello" in second["result"]["result"]["text"]
