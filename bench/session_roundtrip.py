"""Interactive sessions: how long a user's message takes to be stored, and answered.

An interactive job's ``POST /job/{id}/message`` is answered once the message is
committed (one fsync) and on its way to the plugin; the plugin's answer comes back
as a ``stdout`` message over the job's SSE stream.  The ``parrot`` benchmark plugin
(bench/plugins/parrot: shell builtins only) says every message back at once, so
what is measured is the gateway's own path:

- **message POST**: the client's wait for the 200, against the wait for a
  ``POST /trigger/echo/poll`` 202 on the same daemon (also one commit before the
  answer): the ratio says what a session's message costs over a plain enqueue;
- **round trip**: from sending the POST to the plugin's answer arriving over SSE
  (the answer is stored when the plugin says it waits again, so it does not sit
  out the output forwarder's 0.2 s batching);
- **concurrent sessions**: messages per second with ``--sessions`` sessions each
  sending its messages one after another.

    python bench/session_roundtrip.py [--messages 200] [--sessions 4]
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import report
import servers

PLUGINS = (servers.REPO / "plugins", Path(__file__).resolve().parent / "plugins")


@contextmanager
def stream(
    d: servers.Daemon, job_id: str
) -> Iterator[queue.Queue[tuple[float, dict[str, object]]]]:
    """The job's SSE messages as (arrival time, data), read by a thread of their own."""
    arrived: queue.Queue[tuple[float, dict[str, object]]] = queue.Queue()
    ready = threading.Event()
    client = httpx.Client(base_url=d.url, headers=d.headers(), timeout=None)

    def read() -> None:
        try:
            with client.stream("GET", f"/job/{job_id}/stream") as answer:
                ready.set()
                for line in answer.iter_lines():
                    if line.startswith("data:"):
                        arrived.put((time.perf_counter(), json.loads(line[5:])))
        except httpx.HTTPError:
            return  # closed at the end of the block

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(30)
    try:
        yield arrived
    finally:
        client.close()
        reader.join(5)


def answer_of(arrived: queue.Queue[tuple[float, dict[str, object]]], text: str) -> float:
    """When the ``stdout`` message saying ``text`` arrived."""
    while True:
        at, data = arrived.get(timeout=30)
        if data.get("kind") == "stdout" and data.get("text") == text:
            return at


def open_session(c: httpx.Client) -> str:
    """A parrot session, once it waits for input."""
    r = c.post("/trigger/parrot/talk", json={})
    if r.status_code != 202:
        raise RuntimeError(f"trigger answered {r.status_code}: {r.text}")
    job_id: str = r.json()["job_id"]
    deadline = time.monotonic() + 30
    while not c.get(f"/job/{job_id}").json()["waiting_for_input"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the session never waited for input")
        time.sleep(0.01)
    return job_id


def converse(d: servers.Daemon, job_id: str, count: int) -> tuple[list[float], list[float]]:
    """``count`` messages one after another: each POST's latency and each round trip."""
    posts, trips = [], []
    with httpx.Client(base_url=d.url, headers=d.headers(), timeout=30) as c:
        with stream(d, job_id) as arrived:
            for _ in range(count):
                sent = time.perf_counter()
                r = c.post(f"/job/{job_id}/message", json={"message": "hello"})
                answered = time.perf_counter()
                if r.status_code != 200:
                    raise RuntimeError(f"message answered {r.status_code}: {r.text}")
                message_id = r.json()["message_id"]
                trips.append(answer_of(arrived, message_id) - sent)
                posts.append(answered - sent)
        r = c.post(f"/job/{job_id}/complete")
        if r.status_code != 202:
            raise RuntimeError(f"complete answered {r.status_code}: {r.text}")
        done = c.get(f"/job/{job_id}?wait=30s").json()
    if done["status"] != "succeeded" or done["result"]["result"]["messages"] != count:
        raise RuntimeError(f"the session ended badly: {done['status']} {done['last_error']}")
    return posts, trips


def trigger_latency(d: servers.Daemon, count: int) -> list[float]:
    """Sequential ``POST /trigger/echo/poll`` waits: one commit before each answer."""
    samples = []
    with httpx.Client(base_url=d.url, headers=d.headers(), timeout=30) as c:
        for _ in range(count):
            started = time.perf_counter()
            r = c.post("/trigger/echo/poll", json={})
            samples.append(time.perf_counter() - started)
            if r.status_code != 202:
                raise RuntimeError(f"trigger answered {r.status_code}: {r.text}")
    return samples


def measure(messages: int, sessions: int) -> list[report.Figure]:
    """The figures of one run (see the module docstring)."""
    extra = {"plugins": {"parrot": {"parallelism": sessions}, "echo": {"parallelism": 1}}}
    with servers.daemon(plugin_roots=PLUGINS, max_workers=sessions + 1, extra=extra) as d:
        with httpx.Client(base_url=d.url, headers=d.headers(), timeout=30) as c:
            converse(d, open_session(c), min(20, messages))  # warm-up: every path once
            posts, trips = converse(d, open_session(c), messages)
            enqueue = trigger_latency(d, messages)
            together = [open_session(c) for _ in range(sessions)]
        results: list[tuple[list[float], list[float]]] = []
        threads = [
            threading.Thread(target=lambda j=job_id: results.append(converse(d, j, messages)))
            for job_id in together
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    if len(results) != len(threads):
        raise RuntimeError("a concurrent session failed")
    post_p50 = report.percentile(posts, 50) * 1000
    enqueue_p50 = report.percentile(enqueue, 50) * 1000
    concurrent = len(threads) * messages / elapsed
    return [
        report.Figure(
            name="session: message POST p50",
            value=post_p50,
            unit="ms",
            limit_name="trigger POST p50",
            limit=enqueue_p50,
            note=f"p99 {report.percentile(posts, 99) * 1000:.1f} ms, {messages} messages",
        ),
        report.Figure(
            name="session: round trip p50",
            value=report.percentile(trips, 50) * 1000,
            unit="ms",
            note=f"p99 {report.percentile(trips, 99) * 1000:.1f} ms: POST to the answer over SSE",
        ),
        report.Figure(
            name=f"session: messages with {len(threads)} sessions at once",
            value=concurrent,
            unit="msg/s",
            note="each session one message after another",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure interactive sessions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 messages, 2 sessions")
    parser.add_argument("--messages", type=int, default=200, help="messages per session")
    parser.add_argument("--sessions", type=int, default=4, help="sessions at once")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    messages, sessions = (20, 2) if args.quick else (args.messages, args.sessions)
    report.header(f"interactive sessions ({messages} messages, {sessions} sessions)")
    figures = measure(messages, sessions)
    report.show(figures)
    report.save(args.json, "interactive sessions", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
