"""Loop jobs end to end: the real daemon, the bash ``looper`` plugin, HTTP.

``tests/e2e_plugins/looper`` logs every request it gets to ``payload.log``, says it
is done (a last line ``DONE``) on iteration ``payload.complete_at``, and can quote
the token, fail, or wait on a gate file mid-iteration.  Waits poll with a deadline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import (
    BUNDLED_PLUGINS,
    DaemonFactory,
    api_client,
    deep_merge,
    finished_job,
    wait_for,
)

from chamberlain.plugins.strays import find_job_processes

pytestmark = pytest.mark.e2e

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

#: Feedback commands: one that passes, one that fails with output.
FEEDBACK = [
    {"command": ["sh", "-c", "echo lint ok"], "timeout": "10s"},
    {"command": ["sh", "-c", "echo 2 tests failed; echo details >&2; exit 1"]},
]


def config(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
        "plugins": {
            "looper": {"retry": {"backoff_base": "100ms"}, "loop": {"trigger_feedback": True}}
        },
    }
    return deep_merge(base, extra)


async def start_loop(c: httpx.AsyncClient, payload: dict[str, Any], **loop: Any) -> str:
    body = {"payload": payload, "loop": {"completion_token": "DONE", **loop}}
    r = await c.post("/trigger/looper/work", json=body)
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def iterations(c: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    r = await c.get(f"/job/{job_id}/iterations")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def running_iteration(c: httpx.AsyncClient, job_id: str, number: int) -> None:
    """Until iteration ``number`` of the job has started."""

    async def started() -> bool:
        return (await iterations(c, job_id))["current_iteration"] == number

    await wait_for(started, timeout=30)


def requests(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


async def test_a_loop_ends_when_an_iteration_says_it_is_done(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    log = tmp_path / "requests.jsonl"
    d = await daemon(config())
    async with api_client(d) as c:
        job_id = await start_loop(
            c, {"log": str(log), "complete_at": 3}, max_iterations=5, feedback=FEEDBACK
        )
        done = await finished_job(c, job_id)
        history = await iterations(c, job_id)
        r = await c.get(f"/job/{job_id}?include=messages")
        messages = [m["text"] for m in r.json()["messages"] if m["kind"] == "system"]
    assert done["status"] == "succeeded", done["last_error"]
    assert done["completion_reason"] == "promise_detected"
    assert done["attempt"] == 1
    assert done["result"]["result"] == "all tests pass\nDONE"
    assert [it["number"] for it in done["result"]["loop"]["iterations"]] == [1, 2, 3]

    assert history["completion_reason"] == "promise_detected"
    assert (history["current_iteration"], history["max_iterations"]) == (3, 5)
    first, second, third = history["iterations"]
    assert [first["promise_detected"], second["promise_detected"], third["promise_detected"]] == [
        False,
        False,
        True,
    ]
    assert first["output_summary"] == "working on it (iteration 1)"
    assert first["feedback_results"] == [
        {
            "command": ["sh", "-c", "echo lint ok"],
            "exit_code": 0,
            "passed": True,
            "output_tail": "lint ok",
        },
        {
            "command": FEEDBACK[1]["command"],
            "exit_code": 1,
            "passed": False,
            "output_tail": "2 tests failed\ndetails",
        },
    ]
    # No feedback after the iteration that completed.
    assert third["feedback_results"] == []
    assert all(it["completed_at"] is not None for it in history["iterations"])

    # What each iteration was told: its number, and every iteration before it.
    sent = [request["iteration"] for request in requests(log)]
    assert [(it["number"], it["max"], it["attempt"]) for it in sent] == [
        (1, 5, 1),
        (2, 5, 1),
        (3, 5, 1),
    ]
    assert sent[0]["previous"] == [] and sent[0]["completion_token"] == "DONE"
    assert [p["number"] for p in sent[2]["previous"]] == [1, 2]
    assert sent[1]["previous"][0] == {
        "number": 1,
        "summary": "working on it (iteration 1)",
        "feedback": first["feedback_results"],
    }
    assert "iteration 2/5 started" in messages
    assert "iteration 1/5 feedback: 1 of 2 commands passed" in messages


async def test_a_token_quoted_in_the_text_does_not_end_the_loop(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config())
    async with api_client(d) as c:
        job_id = await start_loop(c, {"mode": "quote"}, max_iterations=3)
        done = await finished_job(c, job_id)
        history = await iterations(c, job_id)
    assert done["status"] == "failed"
    assert done["completion_reason"] == "max_iterations"
    assert done["last_error"] == "max_iterations: no iteration of 3 said it was complete"
    assert [it["promise_detected"] for it in history["iterations"]] == [False] * 3
    # The result still holds every iteration.
    assert len(done["result"]["loop"]["iterations"]) == 3


async def test_completion_on_the_last_allowed_iteration_is_a_promise(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(config())
    async with api_client(d) as c:
        done = await finished_job(c, await start_loop(c, {"complete_at": 2}, max_iterations=2))
    assert done["status"] == "succeeded"
    assert done["completion_reason"] == "promise_detected"


async def test_a_failing_iteration_is_run_once_more_then_ends_the_loop(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(config())
    async with api_client(d) as c:
        once = await start_loop(c, {"mode": "fail_once", "fail_at": 2, "complete_at": 3})
        always = await start_loop(c, {"mode": "fail", "fail_at": 2})
        recovered = await finished_job(c, once)
        broken = await finished_job(c, always)
        history = await iterations(c, always)
    assert recovered["status"] == "succeeded", recovered["last_error"]
    assert recovered["completion_reason"] == "promise_detected"
    assert broken["status"] == "failed"
    assert broken["completion_reason"] == "iteration_error"
    assert broken["last_error"] == ("iteration_error: iteration 2 failed twice: iteration 2 broke")
    second = history["iterations"][1]
    assert (second["runs"], second["completed_at"], second["error"]) == (
        2,
        None,
        "iteration 2 broke",
    )
    assert len(history["iterations"]) == 2


async def test_a_feedback_command_that_hangs_is_stopped_at_its_timeout(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(config())
    feedback = [{"command": ["sleep", "60"], "timeout": "1s"}]
    async with api_client(d) as c:
        job_id = await start_loop(c, {"complete_at": 2}, feedback=feedback)
        done = await finished_job(c, job_id)
        history = await iterations(c, job_id)
    assert done["completion_reason"] == "promise_detected"
    (result,) = history["iterations"][0]["feedback_results"]
    assert (result["exit_code"], result["passed"]) == (None, False)
    assert result["output_tail"].endswith("[stopped: timeout after 1s]")
    assert find_job_processes([job_id]) == {}


async def test_stop_lets_the_iteration_finish_and_runs_no_more(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    d = await daemon(config())
    async with api_client(d) as c:
        job_id = await start_loop(c, {"gate": str(gate), "gate_at": 2}, feedback=FEEDBACK)
        await running_iteration(c, job_id, 2)
        r = await c.post(f"/job/{job_id}/stop")
        assert r.status_code == 202, r.text
        assert r.json() == {"job_id": job_id, "status": "stopping"}
        assert (await iterations(c, job_id))["stop_requested"] is True
        await trio.Path(f"{gate}.2").touch()
        done = await finished_job(c, job_id)
        history = await iterations(c, job_id)
        again = await c.post(f"/job/{job_id}/stop")
        plain = await c.post("/trigger/echo/poll", json={})
        plain_stop = await c.post(f"/job/{plain.json()['job_id']}/stop")
        unknown = await c.post("/job/00000000-0000-4000-8000-000000000000/stop")
    assert done["status"] == "succeeded"
    assert done["completion_reason"] == "manual_stop"
    # Iteration 2 finished; its feedback did not run, nor did iteration 3.
    assert [it["number"] for it in history["iterations"]] == [1, 2]
    assert history["iterations"][1]["completed_at"] is not None
    assert history["iterations"][1]["feedback_results"] == []
    assert again.status_code == 409 and again.json()["status"] == "succeeded"
    assert plain_stop.status_code == 409 and "not a loop job" in plain_stop.json()["error"]
    assert unknown.status_code == 404


async def test_cancel_kills_the_iteration_and_ends_the_loop_cancelled(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    d = await daemon(config())
    async with api_client(d) as c:
        job_id = await start_loop(c, {"gate": str(gate), "gate_at": 2})
        await running_iteration(c, job_id, 2)
        r = await c.post(f"/job/{job_id}/cancel")
        assert r.status_code == 200, r.text
        done = await finished_job(c, job_id)
        history = await iterations(c, job_id)
    assert done["status"] == "cancelled"
    assert done["completion_reason"] == "cancelled"
    assert [it["number"] for it in history["iterations"]] == [1, 2]
    assert find_job_processes([job_id]) == {}


async def test_a_loop_killed_with_the_daemon_resumes_at_its_iteration(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    log, gate = tmp_path / "requests.jsonl", tmp_path / "gate"
    cfg = config()
    d = await daemon(cfg)
    async with api_client(d) as c:
        job_id = await start_loop(
            c, {"log": str(log), "gate": str(gate), "gate_at": 2, "complete_at": 3}
        )
        await running_iteration(c, job_id, 2)
    d.kill()
    await d.wait()
    again = await daemon(cfg)
    async with api_client(again) as c:
        done = await finished_job(c, job_id)
        history = await iterations(c, job_id)
    assert done["status"] == "succeeded", done["last_error"]
    assert done["completion_reason"] == "promise_detected"
    assert done["attempt"] == 2
    sent = [(r["iteration"]["number"], r["iteration"]["attempt"]) for r in requests(log)]
    # Iteration 1 ran once; iteration 2 ran again (its second run), then 3.
    assert sent == [(1, 1), (2, 1), (2, 2), (3, 1)]
    assert [(it["number"], it["runs"]) for it in history["iterations"]] == [(1, 1), (2, 2), (3, 1)]


async def test_bad_loops_are_refused_with_the_field_named(daemon: DaemonFactory) -> None:
    d = await daemon(
        config(plugins={"looper": {"loop": {"max_iterations": 3, "max_iterations_cap": 4}}})
    )
    async with api_client(d) as c:
        for loop, error in [
            ({"max_iterations": 0}, "loop.max_iterations must be an integer from 1 to 4"),
            ({"max_iterations": 5}, "loop.max_iterations must be an integer from 1 to 4, got 5"),
            ({"feedback": [{"command": "npm test"}]}, "loop.feedback[0].command must be an argv"),
            ({"feedback": [{"command": []}]}, "loop.feedback[0].command must be a non-empty"),
            ({"iteration_timeout": "soon"}, "loop.iteration_timeout"),
            ({"max_iters": 3}, "loop: unknown field 'max_iters'"),
        ]:
            r = await c.post("/trigger/looper/work", json={"loop": loop})
            assert r.status_code == 400, (loop, r.text)
            assert r.json()["error"].startswith(error), (loop, r.json())
        r = await c.post(
            "/jobs",
            json={"jobs": [{"plugin": "looper", "command": "work", "loop": {"max_iterations": 9}}]},
        )
        assert r.status_code == 400 and "jobs[0].loop.max_iterations" in r.json()["error"]
        # The plugin's default applies when the trigger names none.
        job_id = await start_loop(c, {"mode": "quote"})
        assert (await iterations(c, job_id))["max_iterations"] == 3
        await finished_job(c, job_id)
        # A batch item may be a loop too.
        r = await c.post(
            "/jobs",
            json={
                "jobs": [
                    {
                        "plugin": "looper",
                        "command": "work",
                        "payload": {"complete_at": 1},
                        "loop": {"completion_token": "DONE"},
                    }
                ]
            },
        )
        assert r.status_code == 202, r.text
        batched = await finished_job(c, r.json()["jobs"][0]["job_id"])
        assert batched["completion_reason"] == "promise_detected"


async def test_feedback_commands_come_from_the_config_unless_it_lets_triggers_name_them(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    d = await daemon(
        config(
            plugins={
                "looper": {
                    "loop": {
                        "trigger_feedback": False,
                        "feedback": [{"command": ["pwd"]}],
                        "feedback_cwd": str(checkout),
                    }
                }
            }
        )
    )
    async with api_client(d) as c:
        r = await c.post(
            "/trigger/looper/work",
            json={"loop": {"feedback": [{"command": ["sh", "-c", "rm -rf ~"]}]}},
        )
        assert r.status_code == 400, r.text
        assert "loop.trigger_feedback is true" in r.json()["error"]
        job_id = await start_loop(c, {"complete_at": 2})
        await finished_job(c, job_id)
        history = await iterations(c, job_id)
    (result,) = history["iterations"][0]["feedback_results"]
    # The config's command, run in the configured directory.
    assert (result["command"], result["output_tail"]) == (["pwd"], str(checkout))


async def test_a_finished_loop_is_followed_up_by_a_new_loop(daemon: DaemonFactory) -> None:
    d = await daemon(config())
    async with api_client(d) as c:
        first = await start_loop(c, {"complete_at": 1}, max_iterations=4)
        await finished_job(c, first)
        r = await c.post(f"/job/{first}/instruct", json={"prompt": "now the docs"})
        assert r.status_code == 202, r.text
        follow = await finished_job(c, r.json()["job_id"])
    assert follow["follows"] == first
    assert follow["loop"]["max_iterations"] == 4
    assert follow["completion_reason"] == "promise_detected"
