"""Interactive jobs and follow-ups end to end: the real daemon, real plugins, HTTP.

``tests/e2e_plugins/asker`` is an interactive plugin written in bash: it asks two
questions, each followed by a wait, and answers with both replies once the session
is completed.  ``sessioned`` answers with its request and a session whose ``turn``
counts a chain of follow-ups.  Waits poll with a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import signal
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
from sse_client import Event, open_stream

from chamberlain.plugins.strays import find_job_processes

pytestmark = pytest.mark.e2e

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"
QUESTIONS = ["What is your name?", "What is your favourite colour?"]


def config(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
        "api": {"sse_keepalive": "1s"},
        "plugins": {
            "asker": {"retry": {"backoff_base": "100ms"}, "parallelism": 1},
            "sessioned": {"retry": {"max_attempts": 1}},
        },
    }
    return deep_merge(base, extra)


async def trigger(c: httpx.AsyncClient, plugin: str, command: str, **body: Any) -> str:
    r = await c.post(f"/trigger/{plugin}/{command}", json=body)
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def job(c: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    r = await c.get(f"/job/{job_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def until(c: httpx.AsyncClient, job_id: str, **fields: Any) -> dict[str, Any]:
    """The job once every one of ``fields`` has the value given."""

    async def matches() -> dict[str, Any] | None:
        found = await job(c, job_id)
        return found if all(found[k] == v for k, v in fields.items()) else None

    result: dict[str, Any] = await wait_for(matches, timeout=30)
    return result


async def say(c: httpx.AsyncClient, job_id: str, message: str) -> str:
    r = await c.post(f"/job/{job_id}/message", json={"message": message})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["job_id"] == job_id and body["message_sent"] is True
    message_id: str = body["message_id"]
    return message_id


def conversation(events: list[Event]) -> list[tuple[str, str]]:
    """The stream's plugin output and user inputs, in the order they came."""
    return [
        (e.data["kind"], e.data["text"])
        for e in events
        if e.event == "message" and e.data["kind"] in ("stdout", "user_input")
    ]


async def test_a_bash_plugin_asks_two_questions_and_gets_its_answers(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config())
    gate = tmp_path / "gate"
    async with api_client(d) as c:
        job_id = await trigger(c, "asker", "ask", payload={"gate": str(gate)})
        async with open_stream(d.base_url, f"/job/{job_id}/stream", d.headers()) as s:
            assert s.status == 200
            seen = await s.read_until(lambda e: e.data.get("text") == QUESTIONS[0])
            waiting = await until(c, job_id, waiting_for_input=True)
            assert waiting["status"] == "running"
            first = await say(c, job_id, "Ada")
            # The plugin holds the answer until the gate opens: it no longer waits.
            held = await job(c, job_id)
            assert (held["status"], held["waiting_for_input"]) == ("running", False)
            await trio.Path(f"{gate}.1").touch()
            seen += await s.read_until(lambda e: e.data.get("text") == QUESTIONS[1])
            await until(c, job_id, waiting_for_input=True)
            second = await say(c, job_id, "blue")
            assert (await job(c, job_id))["waiting_for_input"] is False
            await trio.Path(f"{gate}.2").touch()
            seen += await s.read_until(lambda e: e.data.get("text", "").startswith("Thank you"))
            await until(c, job_id, waiting_for_input=True)
            r = await c.post(f"/job/{job_id}/complete")
            assert r.status_code == 202, r.text
            assert r.json() == {"job_id": job_id, "status": "completing"}
            seen += await s.read_until(lambda e: e.event == "done")
        done = await finished_job(c, job_id)
        assert done["status"] == "succeeded"
        assert done["result"]["result"] == {"answers": ["Ada", "blue"], "resumed": 0}
        assert done["session"] == {"answers": 2}
        assert done["waiting_for_input"] is False
        assert conversation(seen) == [
            ("stdout", QUESTIONS[0]),
            ("user_input", "Ada"),
            ("stdout", "noted: Ada"),
            ("stdout", QUESTIONS[1]),
            ("user_input", "blue"),
            ("stdout", "noted: blue"),
            ("stdout", "Thank you. Complete the session when you are done."),
        ]
        inputs = [e.data for e in seen if e.data.get("kind") == "user_input"]
        assert [i["message_id"] for i in inputs] == [first, second]
        system = [e.data["text"] for e in seen if e.data.get("kind") == "system"]
        assert system.count("waiting for input") == 3
        assert "completing: the user ended the session" in system
        # The stored messages say the same, in the same order.
        r = await c.get(f"/job/{job_id}?include=messages")
        stored = [(m["kind"], m["text"]) for m in r.json()["messages"]]
        assert [m for m in stored if m[0] in ("stdout", "user_input")] == conversation(seen)


async def test_messages_and_completes_are_refused_unless_the_session_runs(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(config())
    async with api_client(d) as c:
        r = await c.post("/job/00000000-0000-4000-8000-000000000000/message", json={"message": "x"})
        assert r.status_code == 404, r.text
        r = await c.post("/job/00000000-0000-4000-8000-000000000000/complete")
        assert r.status_code == 404, r.text

        running = await trigger(c, "asker", "ask")
        await until(c, running, waiting_for_input=True)
        # parallelism 1: the second session waits in the queue.
        queued = await trigger(c, "asker", "ask")
        for path in (f"/job/{queued}/message", f"/job/{queued}/complete"):
            r = await c.post(path, json={"message": "hello"})
            assert r.status_code == 409, r.text
            assert r.json()["status"] == "queued"
        for body in ({}, {"message": ""}, {"message": 7}, {"message": "x", "other": 1}):
            r = await c.post(f"/job/{running}/message", json=body)
            assert r.status_code == 400, (body, r.text)

        plain = await trigger(c, "echo", "poll")
        assert (await finished_job(c, plain))["status"] == "succeeded"
        r = await c.post(f"/job/{plain}/message", json={"message": "hello"})
        assert r.status_code == 409, r.text
        assert "not an interactive command" in r.json()["error"]

        r = await c.post(f"/job/{running}/complete")
        assert r.status_code == 202, r.text
        # Completing again is harmless; a message after it is refused.
        r = await c.post(f"/job/{running}/complete")
        assert r.status_code in (202, 409), r.text
        assert (await finished_job(c, running))["status"] == "succeeded"
        for path in (f"/job/{running}/message", f"/job/{running}/complete"):
            r = await c.post(path, json={"message": "late"})
            assert r.status_code == 409, r.text
            assert r.json()["status"] == "succeeded"
        # The queued one ran once the first was done.
        await until(c, queued, waiting_for_input=True)
        await c.post(f"/job/{queued}/cancel")
        assert (await finished_job(c, queued))["status"] == "cancelled"

        # A read-only token may not talk to a session.
        r = await c.post(
            f"/job/{queued}/message",
            json={"message": "x"},
            headers={"Authorization": "Bearer reader-token"},
        )
        assert r.status_code == 403, r.text


async def test_a_session_killed_with_the_daemon_resumes_from_its_transcript(
    daemon: DaemonFactory,
) -> None:
    cfg = config()
    d = await daemon(cfg)
    async with api_client(d) as c:
        job_id = await trigger(c, "asker", "ask")
        await until(c, job_id, waiting_for_input=True)
        first = await say(c, job_id, "Ada")
        await until(c, job_id, waiting_for_input=True)
    d.kill()
    await d.wait()

    again = await daemon(cfg)
    async with api_client(again) as c:
        # Attempt 1 was counted; attempt 2 replays the transcript and asks question 2.
        resumed = await until(c, job_id, waiting_for_input=True, attempt=2)
        assert resumed["status"] == "running"
        await say(c, job_id, "blue")
        r = await c.get(f"/job/{job_id}?include=messages")
        messages = r.json()["messages"]
        inputs = [m for m in messages if m["kind"] == "user_input"]
        assert [m["text"] for m in inputs] == ["Ada", "blue"]
        assert inputs[0]["message_id"] == first
        stderr = [m["text"] for m in messages if m["kind"] == "stderr"]
        assert "asker: starting with 1 answers from the transcript" in stderr
        r = await c.post(f"/job/{job_id}/complete")
        assert r.status_code == 202, r.text
        done = await finished_job(c, job_id)
        assert done["status"] == "succeeded"
        assert done["attempt"] == 2
        assert done["result"]["result"] == {"answers": ["Ada", "blue"], "resumed": 1}


async def test_a_session_that_stops_talking_is_ended_by_its_idle_timeout(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(
        config(plugins={"asker": {"interactive_timeout": "1s", "retry": {"on_timeout": False}}})
    )
    async with api_client(d) as c:
        job_id = await trigger(c, "asker", "ask", payload={"mode": "quiet"})
        await until(c, job_id, waiting_for_input=True)
        done = await finished_job(c, job_id)
        assert done["status"] == "timed_out"
        assert done["last_error"] == "timed out: no input or output for 1s"
    assert find_job_processes([job_id]) == {}


async def test_a_session_that_answers_nothing_after_complete_fails(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(config(plugins={"asker": {"retry": {"max_attempts": 1}}}))
    async with api_client(d) as c:
        deaf = await trigger(c, "asker", "ask", payload={"mode": "deaf"})
        mute = await trigger(c, "asker", "ask", payload={"mode": "no_response"})
        for job_id in (deaf, mute):
            await until(c, job_id, waiting_for_input=True)
            r = await c.post(f"/job/{job_id}/complete")
            assert r.status_code == 202, r.text
            done = await finished_job(c, job_id)
            assert done["status"] == "dead", done
            assert find_job_processes([job_id]) == {}
        assert (await job(c, deaf))["last_error"].startswith(
            "the session was completed but no response line followed"
        )
        assert (await job(c, mute))["last_error"].startswith(
            "invalid response: no response line (exit code 0)"
        )


async def test_a_follow_up_carries_the_old_job_s_session_and_prompt(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(config())
    async with api_client(d) as c:
        first = await trigger(c, "sessioned", "run", payload={"task": "build"})
        old = await finished_job(c, first)
        assert old["session"] == {"turn": 1}
        assert "follow_up" not in old["result"]["result"]["request"]

        r = await c.post(f"/job/{first}/instruct", json={"prompt": "now test it"})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["follows"] == first and body["status"] == "queued"
        assert r.headers["location"] == f"/job/{body['job_id']}"
        second = body["job_id"]
        new = await finished_job(c, second)
        assert new["status"] == "succeeded"
        request = new["result"]["result"]["request"]
        assert request["follow_up"] == {
            "job_id": first,
            "prompt": "now test it",
            "session": {"turn": 1},
        }
        assert request["payload"] == {"task": "build"}
        assert new["session"] == {"turn": 2}
        assert new["follows"] == first and new["instruction"] == "now test it"
        assert (await job(c, first))["followed_by"] == second

        # A chain never forks: the old job says which one to instruct instead.
        r = await c.post(f"/job/{first}/instruct", json={"prompt": "again"})
        assert r.status_code == 409, r.text
        assert r.json()["followed_by"] == second
        # A payload is checked against the command's input_schema.
        r = await c.post(f"/job/{second}/instruct", json={"prompt": "x", "payload": {"task": 1}})
        assert r.status_code == 400, r.text
        for bad in ({}, {"prompt": ""}, {"prompt": "x", "payload": []}, {"prompt": "x", "n": 1}):
            r = await c.post(f"/job/{second}/instruct", json=bad)
            assert r.status_code == 400, (bad, r.text)
        r = await c.post("/job/00000000-0000-4000-8000-000000000000/instruct", json={"prompt": "x"})
        assert r.status_code == 404, r.text

        third_r = await c.post(
            f"/job/{second}/instruct", json={"prompt": "ship it", "payload": {"task": "ship"}}
        )
        assert third_r.status_code == 202, third_r.text
        third = await finished_job(c, third_r.json()["job_id"])
        assert third["result"]["result"]["request"]["payload"] == {"task": "ship"}
        assert third["session"] == {"turn": 3}

        # A session still running cannot be followed up.
        running = await trigger(c, "asker", "ask")
        await until(c, running, waiting_for_input=True)
        r = await c.post(f"/job/{running}/instruct", json={"prompt": "x"})
        assert r.status_code == 409, r.text
        assert r.json()["status"] == "running"
        await c.post(f"/job/{running}/cancel")
        await finished_job(c, running)


async def test_a_daemon_stopped_mid_session_gives_the_attempt_back(
    daemon: DaemonFactory,
) -> None:
    cfg = config()
    d = await daemon(cfg)
    async with api_client(d) as c:
        job_id = await trigger(c, "asker", "ask")
        await until(c, job_id, waiting_for_input=True)
        await say(c, job_id, "Ada")
        await until(c, job_id, waiting_for_input=True)
    assert await d.stop(signal.SIGTERM) == 0
    again = await daemon(cfg)
    async with api_client(again) as c:
        # The interrupted attempt was given back: still attempt 1, with the transcript.
        resumed = await until(c, job_id, waiting_for_input=True, status="running")
        assert resumed["attempt"] == 1
        await say(c, job_id, "blue")
        await c.post(f"/job/{job_id}/complete")
        done = await finished_job(c, job_id)
        assert done["result"]["result"] == {"answers": ["Ada", "blue"], "resumed": 1}
