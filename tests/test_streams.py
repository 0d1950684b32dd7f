"""The hub, the SSE wire format, resume without gaps or repeats, and the explorer.

Streams run against a fake feed (the gateway's reading methods, answering from a
list) and a real hub, on trio's autojump clock, so the resume rules are checked
with history and live messages overlapping exactly where it matters.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

import attrs
import pytest
import trio
from quart_trio import QuartTrio
from test_web_api import FakeGateway, api_config

from chamberlain.actors.gateway import Gateway
from chamberlain.actors.hub import Hub
from chamberlain.records import Job, JobMessage, JobStatus, MessageKind, QueueView
from chamberlain.web.app import create_app
from chamberlain.web.docs import ASSETS, CONTENT_SECURITY_POLICY
from chamberlain.web.routes import ROUTES
from chamberlain.web.sse import KEEPALIVE, frame, job_stream, parse_event_id, status_stream

# -- wire format -------------------------------------------------------------------------


def test_frames_carry_id_event_and_one_data_line_per_line() -> None:
    assert frame("status", {"a": 1}, event_id=7) == b'id: 7\nevent: status\ndata: {"a":1}\n\n'
    assert frame("connected", "x\ny", retry=2000) == (
        b'event: connected\nretry: 2000\ndata: "x\\ny"\n\n'
    )
    assert KEEPALIVE == b": keepalive\n\n"


@pytest.mark.parametrize("text", ["-1", "1.5", "abc", "\uff11\uff12", str(2**63)])
def test_bad_event_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        parse_event_id(text)


def test_event_ids() -> None:
    assert parse_event_id(None) is None
    assert parse_event_id("  ") is None
    assert parse_event_id(" 42 ") == 42
    assert parse_event_id("0") == 0


# -- the hub ------------------------------------------------------------------------------


def message(seq: int, *, job_id: str = "j", status: JobStatus | None = None) -> JobMessage:
    return JobMessage(
        id=100 + seq,
        job_id=job_id,
        seq=seq,
        ts=1_700_000_000.0 + seq,
        kind=MessageKind.SYSTEM if status else MessageKind.STDERR,
        text=f"m{seq}",
        status=status,
        attempt=1 if status else None,
        plugin="p",
        command="poll",
    )


def drain(channel: trio.MemoryReceiveChannel[JobMessage]) -> list[int]:
    seqs = []
    while True:
        try:
            seqs.append(channel.receive_nowait().seq)
        except (trio.WouldBlock, trio.EndOfChannel):
            return seqs


def test_the_hub_routes_by_job_and_sends_status_changes_to_everyone() -> None:
    hub = Hub()
    with (
        hub.subscribe(job_id="j") as mine,
        hub.subscribe(job_id="k") as other,
        hub.subscribe() as statuses,
    ):
        hub.publish(message(1))
        hub.publish(message(2, status=JobStatus.RUNNING))
        hub.publish(message(3, job_id="k"))
        assert drain(mine.messages) == [1, 2]
        assert drain(other.messages) == [3]
        assert drain(statuses.messages) == [2]
        assert hub.statistics().subscribers == 3
    assert hub.statistics().subscribers == 0


def test_a_full_subscriber_is_dropped_and_never_slows_the_publisher() -> None:
    hub = Hub()
    with hub.subscribe(job_id="j", buffer=2) as slow, hub.subscribe(job_id="j") as fast:
        for seq in range(1, 6):
            hub.publish(message(seq))
        assert slow.dropped
        assert not fast.dropped
        # What was buffered is still read, then the stream ends.
        assert drain(slow.messages) == [1, 2]
        with pytest.raises(trio.EndOfChannel):
            slow.messages.receive_nowait()
        assert drain(fast.messages) == [1, 2, 3, 4, 5]
    stats = hub.statistics()
    assert stats.dropped == 1
    assert stats.published == 5


# -- resume rules --------------------------------------------------------------------------


@attrs.define
class FakeFeed:
    """The gateway's reading methods over a list; ``on_read`` runs before each history read."""

    hub: Hub
    job: Job
    history: list[JobMessage] = attrs.field(factory=list)
    on_read: list[Any] = attrs.field(factory=list)

    async def get_job(self, job_id: str) -> Job | None:
        return self.job

    async def job_messages(
        self, job_id: str, *, after_seq: int = 0, limit: int = 10_000
    ) -> tuple[JobMessage, ...]:
        while self.on_read:
            self.on_read.pop(0)()
        return tuple(m for m in self.history if m.seq > after_seq)[:limit]

    async def status_changes(
        self,
        *,
        after_id: int,
        plugin: str | None = None,
        statuses: tuple[JobStatus, ...] = (),
        limit: int = 500,
    ) -> tuple[JobMessage, ...]:
        found = [
            m
            for m in self.history
            if m.status is not None
            and m.id > after_id
            and (plugin is None or m.plugin == plugin)
            and (not statuses or m.status in statuses)
        ]
        return tuple(found[:limit])

    async def queue(self, limit: int) -> QueueView:
        last = max((m.id for m in self.history), default=0)
        return QueueView(
            running=(), queued=(), running_total=1, queued_total=2, last_message_id=last
        )


def job(status: JobStatus) -> Job:
    return Job(
        id="j",
        plugin="p",
        command="poll",
        payload={},
        event=None,
        context={},
        status=status,
        attempt=1,
        max_attempts=1,
        submitted_by="api",
        timeout=None,
        dedupe_key=None,
        created_at=1_700_000_000.0,
        started_at=None,
        completed_at=None,
        run_at=1_700_000_000.0,
        last_error=None,
        result=None,
        parent_job_id=None,
        source_event_id=None,
    )


def parse(chunks: list[bytes]) -> list[tuple[str, int | None]]:
    out = []
    for chunk in chunks:
        if chunk == KEEPALIVE:
            out.append(("keepalive", None))
            continue
        fields = dict(line.split(": ", 1) for line in chunk.decode().strip().split("\n"))
        out.append((fields["event"], int(fields["id"]) if "id" in fields else None))
    return out


async def collect(stream: Any) -> list[bytes]:
    return [chunk async for chunk in stream]


async def test_job_stream_replays_then_goes_live_without_gaps_or_repeats(
    autojump_clock: trio.abc.Clock,
) -> None:
    hub = Hub()
    history = [message(seq) for seq in range(1, 6)]
    feed = FakeFeed(hub=hub, job=job(JobStatus.RUNNING), history=history)
    # Between subscribing and reading history, 4 and 5 commit (so they are in both),
    # and after the read, 6..8 arrive live only.
    feed.on_read.append(lambda: [hub.publish(m) for m in history[3:]])
    done = message(8, status=JobStatus.SUCCEEDED)

    async def later() -> None:
        await trio.sleep(1)
        for m in (message(6), message(7), done):
            hub.publish(m)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        chunks = await collect(job_stream(feed, "j", after=2, keepalive=60))
    events = parse(chunks)
    assert events[0] == ("connected", 2)
    assert [e for e in events[1:-1]] == [
        ("message", 3),
        ("message", 4),
        ("message", 5),
        ("message", 6),
        ("message", 7),
        ("status", 8),
    ]
    assert events[-1] == ("done", 8)
    assert hub.statistics().subscribers == 0


async def test_job_stream_of_a_finished_job_ends_at_once(autojump_clock: trio.abc.Clock) -> None:
    history = [message(1), message(2, status=JobStatus.SUCCEEDED)]
    feed = FakeFeed(hub=Hub(), job=job(JobStatus.SUCCEEDED), history=history)
    assert parse(await collect(job_stream(feed, "j", after=0, keepalive=60))) == [
        ("connected", 0),
        ("message", 1),
        ("status", 2),
        ("done", 2),
    ]
    # Resuming after the end: the state, then done.
    assert parse(await collect(job_stream(feed, "j", after=2, keepalive=60))) == [
        ("connected", 2),
        ("done", 2),
    ]


async def test_an_idle_stream_sends_keepalives(autojump_clock: trio.abc.Clock) -> None:
    hub = Hub()
    feed = FakeFeed(hub=hub, job=job(JobStatus.RUNNING))

    async def finish_later() -> None:
        await trio.sleep(35)
        hub.publish(message(1, status=JobStatus.SUCCEEDED))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(finish_later)
        started = trio.current_time()
        chunks = await collect(job_stream(feed, "j", after=0, keepalive=15))
        took = trio.current_time() - started
    assert [e for e, _ in parse(chunks)] == [
        "connected",
        "keepalive",
        "keepalive",
        "status",
        "done",
    ]
    assert 35 <= took < 36


async def test_a_dropped_job_stream_ends(autojump_clock: trio.abc.Clock) -> None:
    hub = Hub()
    feed = FakeFeed(hub=hub, job=job(JobStatus.RUNNING))
    # Three messages arrive while the stream replays: more than its buffer holds.
    feed.on_read.append(lambda: [hub.publish(message(seq)) for seq in (1, 2, 3)])
    events = parse(await collect(job_stream(feed, "j", after=0, keepalive=60, buffer=2)))
    # It passes on what it had and ends; no done: the client reconnects to resume.
    assert events == [("connected", 0), ("message", 1), ("message", 2)]


async def test_status_stream_filters_and_dedupes(autojump_clock: trio.abc.Clock) -> None:
    hub = Hub()
    old = [
        message(1, job_id="a", status=JobStatus.QUEUED),
        message(2, job_id="a", status=JobStatus.RUNNING),
        message(3, job_id="a", status=JobStatus.FAILED),
    ]
    feed = FakeFeed(hub=hub, job=job(JobStatus.RUNNING), history=old)
    live = [old[2], message(4, job_id="b", status=JobStatus.RUNNING)]
    live.append(message(5, job_id="b", status=JobStatus.FAILED))

    async def later() -> None:
        await trio.sleep(1)
        for m in live:
            hub.publish(m)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()

    chunks: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        stream = status_stream(
            feed, after=101, plugin="p", statuses=(JobStatus.FAILED,), keepalive=60
        )
        async for chunk in stream:
            chunks.append(chunk)
    assert parse(chunks) == [("connected", 101), ("status", 103), ("status", 105)]
    connected = json.loads(chunks[0].decode().split("data: ")[1])
    assert connected == {"queued": 2, "running": 1, "last_event_id": 101}


async def test_status_stream_without_an_id_starts_now(autojump_clock: trio.abc.Clock) -> None:
    hub = Hub()
    old = [message(1, status=JobStatus.QUEUED)]
    feed = FakeFeed(hub=hub, job=job(JobStatus.RUNNING), history=old)

    async def later() -> None:
        await trio.sleep(1)
        hub.publish(message(2, status=JobStatus.RUNNING))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()

    chunks: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        stream = status_stream(feed, after=None, plugin=None, statuses=(), keepalive=60)
        async for chunk in stream:
            chunks.append(chunk)
    assert parse(chunks) == [("connected", 101), ("status", 102)]


# -- the explorer and the route table --------------------------------------------------------


@pytest.fixture
def app() -> QuartTrio:
    return create_app(cast(Gateway, FakeGateway()), api_config())


_REFERENCE = re.compile(r'(?:src|href)="([^"]+)"')
_EXTERNAL = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", re.IGNORECASE)


async def test_the_explorer_and_its_assets_are_served_and_stay_local(app: QuartTrio) -> None:
    client = app.test_client()
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    html = await page.get_data(as_text=True)
    assert not _EXTERNAL.search(html)
    references = _REFERENCE.findall(html)
    assert sorted(f"/{r}" for r in references) == sorted(a.path for a in ASSETS)
    for asset in ASSETS:
        response = await client.get(asset.path)
        assert response.status_code == 200, asset.path
        assert response.content_type == asset.media_type
        body = await response.get_data()
        assert len(body) > 100
        text = body.decode()
        if asset.media_type.startswith("text/css"):
            # A stylesheet loads through url() and @import: only inline data here
            # (the SVG namespace inside a data: URI is a name, not an address).
            assert "@import" not in text
            urls = [u.strip("'\"") for u in re.findall(r"url\(([^)]*)\)", text)]
            assert all(u.startswith("data:") for u in urls), asset.path
        elif asset.media_type == "image/svg+xml":
            # The SVG namespace is a name, not an address: the icon names no other.
            assert not _EXTERNAL.search(text.replace("http://www.w3.org/2000/svg", "")), asset.path
        elif asset.path != "/docs/swagger-ui-bundle.js":
            # Our own script names no outside address at all.
            assert not _EXTERNAL.search(text), asset.path
        else:
            # The bundle holds documentation links as text; what matters is that
            # it loads nothing from a CDN and that its validator is off.
            assert b"unpkg.com" not in body and b"cdn.jsdelivr" not in body
    explorer = (await (await client.get("/docs/explorer.js")).get_data()).decode()
    assert "validatorUrl: null" in explorer
    assert 'url: "openapi.json"' in explorer


def test_the_license_ships_next_to_the_assets() -> None:
    from importlib import resources

    folder = resources.files("chamberlain.web") / "static" / "swagger-ui"
    assert "Apache License" in (folder / "LICENSE").read_text()
    assert (folder / "NOTICE").is_file()


async def test_openapi_describes_streams_and_text_answers(app: QuartTrio) -> None:
    doc = await (await app.test_client().get("/openapi.json")).get_json()
    stream = doc["paths"]["/job/{job_id}/stream"]["get"]
    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]
    assert stream["x-required-scope"] == "jobs:ro"
    events = doc["paths"]["/events/stream"]["get"]
    assert events["x-required-scope"] == "events:ro"
    assert {p["name"] for p in events["parameters"]} == {"plugin", "status", "last_event_id"}
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert doc["paths"]["/job/{job_id}/cancel"]["post"]["x-required-scope"] == "jobs:rw"
    assert doc["paths"]["/job/{job_id}/retry"]["post"]["x-required-scope"] == "jobs:rw"
    assert doc["paths"]["/queue"]["get"]["x-required-scope"] == "jobs:ro"
    trigger = doc["components"]["schemas"]["TriggerRequest"]["properties"]
    assert "callback_url" in trigger
    assert {r.path for r in ROUTES} >= {"/docs", "/metrics", "/queue", "/events/stream"}


async def test_a_callback_url_is_refused_when_callbacks_are_off(app: QuartTrio) -> None:
    response = await app.test_client().post(
        "/trigger/echo/poll",
        json={"callback_url": "http://127.0.0.1/hook"},
        headers={"Authorization": "Bearer test-key"},
    )
    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"].startswith("callback_url: callbacks are not enabled")
