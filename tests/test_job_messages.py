"""Job messages: the output cap, the status-change triggers, the journal, the actors.

Store tests run on an in-memory SqliteStore; actor tests run the whole tree on
trio's autojump clock with fake plugins (see tests/fakes.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from fakes import FakePlugins, finish, make_daemon, submit

from chamberlain.actors.hub import Hub
from chamberlain.actors.journal import Journal
from chamberlain.joblog import (
    OutputBuffer,
    OutputLimits,
    OutputTotals,
    admit_output,
    dropped_logs_marker,
    dropped_marker,
    log_message,
)
from chamberlain.plugins.protocol import Outcome, OutcomeKind
from chamberlain.records import JobMessage, JobStatus, MessageKind, NewJob
from chamberlain.retry import RetryPolicy, settle
from chamberlain.store import callback_queue, job_messages
from chamberlain.store.sqlite import SqliteStore

NOW = 1_700_000_000.0

# -- the cap (pure) ----------------------------------------------------------------------


def test_admit_output_keeps_a_prefix_within_both_limits() -> None:
    limits = OutputLimits(max_lines=3, max_bytes=10)
    assert admit_output(OutputTotals(), ["ab", "cd"], limits) == (["ab", "cd"], 0)
    assert admit_output(OutputTotals(lines=2), ["ab", "cd"], limits) == (["ab"], 1)
    # A long line stops the run: nothing after it is kept, even if it would fit.
    assert admit_output(OutputTotals(), ["abcdefgh", "abc", "a"], limits) == (["abcdefgh"], 2)
    # Bytes are UTF-8 bytes, not characters.
    assert admit_output(OutputTotals(bytes=7), ["é", "é"], limits) == (["é"], 1)
    assert admit_output(OutputTotals(lines=3), ["x"], limits) == ([], 1)


def test_output_buffer_holds_one_cap_and_counts_the_rest() -> None:
    buffer = OutputBuffer(OutputLimits(max_lines=2, max_bytes=100))
    assert not buffer
    for n in range(5):
        buffer.append(f"line {n}", float(n))
    assert buffer
    stderr = MessageKind.STDERR
    assert buffer.take() == (((0.0, "line 0", stderr), (1.0, "line 1", stderr)), 3)
    assert not buffer
    assert buffer.take() == ((), 0)


def test_dropped_marker_says_how_many() -> None:
    assert dropped_marker(1) == "\u2026 1 more stderr line dropped (over the job's output cap)"
    assert dropped_marker(7).startswith("\u2026 7 more stderr lines dropped")


# -- the store ---------------------------------------------------------------------------


@pytest.fixture
def store() -> SqliteStore:
    return SqliteStore(":memory:")


def failing(error: str) -> Outcome:
    return Outcome(
        kind=OutcomeKind.FAILED,
        retryable=True,
        error=error,
        response=None,
        raw_output=None,
        exit_code=1,
        signal=None,
        stderr_tail="",
    )


def texts(store: SqliteStore, job_id: str) -> list[tuple[int, str, str | None]]:
    return [
        (m.seq, m.text, None if m.status is None else m.status.value)
        for m in job_messages.job_messages(store.conn, job_id)
    ]


def test_every_status_change_becomes_a_system_message(store: SqliteStore) -> None:
    job = store.enqueue(
        NewJob(plugin="p", command="poll", submitted_by="token:ci", max_attempts=2),
        now=NOW,
        dedupe_ttl=0,
    ).job
    policy = RetryPolicy(backoff_base=10, jitter=0)
    for attempt in (1, 2):
        (claimed,), _ = store.claim({"p": 1}, 1, now=NOW + attempt * 100)
        settlement = settle(
            claimed.job, failing("boom"), now=NOW + attempt * 100 + 1, policy=policy, state={}
        )
        store.settle(job.id, attempt, settlement, now=NOW + attempt * 100 + 1)
    assert texts(store, job.id) == [
        (1, "queued (submitted by token:ci)", "queued"),
        (2, "attempt 1/2 started", "running"),
        (3, "attempt 1 ended (boom); attempt 2/2 due at 2023-11-14T22:15:11.000Z", "queued"),
        (4, "attempt 2/2 started", "running"),
        (5, "finished: dead (boom (gave up after 2 attempts))", "dead"),
    ]
    ts = [m.ts for m in job_messages.job_messages(store.conn, job.id)]
    assert ts[0] == NOW and ts[1] == NOW + 100 and ts[4] == NOW + 201


def test_cancelling_a_queued_job_is_recorded_once(store: SqliteStore) -> None:
    job = store.enqueue(NewJob(plugin="p", command="poll"), now=NOW, dedupe_ttl=0).job
    store.cancel_queued(job.id, now=NOW + 1, reason="cancelled")
    store.cancel_queued(job.id, now=NOW + 2, reason="cancelled")
    assert texts(store, job.id)[1:] == [(2, "finished: cancelled", "cancelled")]


def test_output_is_capped_per_job_with_one_marker_per_attempt(store: SqliteStore) -> None:
    job = store.enqueue(NewJob(plugin="p", command="poll"), now=NOW, dedupe_ttl=0).job
    limits = OutputLimits(max_lines=3, max_bytes=1000)
    lines = [(NOW + n, f"line {n}", MessageKind.STDERR) for n in range(5)]
    kept = job_messages.append_output(
        store.conn, job.id, lines, dropped=0, final=False, limits=limits, now=NOW
    )
    assert kept == 3
    job_messages.append_output(
        store.conn, job.id, [], dropped=1, final=True, limits=limits, now=NOW
    )
    # A later attempt finds the job's cap used up.
    job_messages.append_output(
        store.conn, job.id, lines[:2], dropped=0, final=True, limits=limits, now=NOW
    )
    stored = [(m.kind, m.text) for m in job_messages.job_messages(store.conn, job.id)]
    assert stored[1:] == [
        (MessageKind.STDERR, "line 0"),
        (MessageKind.STDERR, "line 1"),
        (MessageKind.STDERR, "line 2"),
        (MessageKind.SYSTEM, dropped_marker(3)),
        (MessageKind.SYSTEM, dropped_marker(2)),
    ]
    assert job_messages.job_messages(store.conn, job.id)[1].ts == NOW


def test_message_ids_only_grow_even_after_every_job_is_pruned(store: SqliteStore) -> None:
    first = store.enqueue(NewJob(plugin="p", command="poll"), now=NOW, dedupe_ttl=0).job
    top = job_messages.last_message_id(store.conn)
    store.cancel_queued(first.id, now=NOW, reason="cancelled")
    assert store.prune(older_than=NOW + 1) == 1
    assert job_messages.job_messages(store.conn, first.id) == []  # deleted with the job
    second = store.enqueue(NewJob(plugin="p", command="poll"), now=NOW, dedupe_ttl=0).job
    (message,) = job_messages.job_messages(store.conn, second.id)
    assert message.id > top + 1


def test_status_changes_filter_by_plugin_and_status(store: SqliteStore) -> None:
    a = store.enqueue(NewJob(plugin="a", command="poll"), now=NOW, dedupe_ttl=0).job
    b = store.enqueue(NewJob(plugin="b", command="poll"), now=NOW, dedupe_ttl=0).job
    store.cancel_queued(a.id, now=NOW, reason="cancelled")
    found = job_messages.status_changes(store.conn, after_id=0, plugin="a")
    assert [(m.job_id, m.status) for m in found] == [
        (a.id, JobStatus.QUEUED),
        (a.id, JobStatus.CANCELLED),
    ]
    cancelled = job_messages.status_changes(store.conn, after_id=0, statuses=[JobStatus.CANCELLED])
    assert [m.job_id for m in cancelled] == [a.id]
    later = job_messages.status_changes(store.conn, after_id=found[0].id)
    assert [m.job_id for m in later] == [b.id, a.id]


def test_the_journal_records_a_delivery_when_a_job_with_a_callback_ends(
    store: SqliteStore,
) -> None:
    hub = Hub()
    journal = Journal(hub=hub)
    rung = []
    journal.wake_callbacks = lambda: rung.append(True)
    new = NewJob(plugin="p", command="poll", callback_url="http://127.0.0.1/hook")
    with hub.subscribe() as watching:
        store.begin()
        mark = journal.mark(store)
        store.enqueue(new, now=NOW, dedupe_ttl=0)
        callback_queue.register_callbacks(store.conn, [(new, False)])
        store.cancel_queued(new.id, now=NOW + 1, reason="cancelled")
        news = journal.collect(store, mark, NOW + 1)
        store.commit()
        journal.publish(news)
        seen = [watching.messages.receive_nowait() for _ in range(2)]
    assert [m.status for m in seen] == [JobStatus.QUEUED, JobStatus.CANCELLED]
    assert news.deliveries == 1
    assert rung == [True]
    (delivery,) = callback_queue.job_deliveries(store.conn, new.id)
    assert delivery.event == "job.cancelled"
    assert delivery.url == "http://127.0.0.1/hook"
    assert b'"status":"cancelled"' in delivery.body


# -- the actors ----------------------------------------------------------------------------


async def test_stderr_lines_are_stored_between_start_and_finish(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        with daemon.gateway.hub.subscribe(job_id=None) as statuses:
            (jid,) = await submit(
                daemon, NewJob(plugin="a", command="poll", payload={"stderr": ["one", "two"]})
            )
            await finish(daemon, [jid])
            stored = await daemon.gateway.job_messages(jid)
            live = []
            while True:
                try:
                    live.append(statuses.messages.receive_nowait())
                except trio.WouldBlock:
                    break
        await daemon.shutdown()
    assert [(m.kind, m.text) for m in stored] == [
        (MessageKind.SYSTEM, "queued (submitted by api)"),
        (MessageKind.SYSTEM, "attempt 1/4 started"),
        (MessageKind.STDERR, "one"),
        (MessageKind.STDERR, "two"),
        (MessageKind.SYSTEM, "finished: succeeded"),
    ]
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5]
    # The status subscriber saw the status changes only, as they committed.
    assert [m.status for m in live] == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED]
    assert all(isinstance(m, JobMessage) for m in live)


async def test_a_responses_logs_become_messages_before_the_end_of_the_run(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    logs = [
        {"level": "info", "message": "fetched 3 items"},
        {"level": "WARN", "message": "item 2 is stale", "item": 2},
        {"message": "no level given"},
    ]
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        ok, failed = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"stderr": ["said"], "logs": logs}),
            NewJob(plugin="a", command="poll", payload={"fatal": True, "logs": logs[:1]}),
        )
        await finish(daemon, [ok, failed])
        stored = await daemon.gateway.job_messages(ok)
        stored_failed = await daemon.gateway.job_messages(failed)
        await daemon.shutdown()
    assert [(m.kind, m.level, m.text) for m in stored[2:]] == [
        (MessageKind.STDERR, None, "said"),
        (MessageKind.LOG, "info", "fetched 3 items"),
        (MessageKind.LOG, "warn", 'item 2 is stale {"item":2}'),
        (MessageKind.LOG, "info", "no level given"),
        (MessageKind.SYSTEM, None, "finished: succeeded"),
    ]
    assert stored[3].to_json()["level"] == "info"
    assert "level" not in stored[2].to_json()
    # A plugin that reports an error still has its say.
    assert [(m.kind, m.text) for m in stored_failed][-2] == (MessageKind.LOG, "fetched 3 items")


def test_log_entries_share_the_output_cap_with_stderr(store: SqliteStore) -> None:
    job = store.enqueue(NewJob(plugin="p", command="poll"), now=NOW, dedupe_ttl=0).job
    limits = OutputLimits(max_lines=3, max_bytes=1000)
    job_messages.append_output(
        store.conn,
        job.id,
        [(NOW, "err", MessageKind.STDERR)],
        dropped=0,
        final=True,
        limits=limits,
        now=NOW,
    )
    entries = [{"level": "info", "message": f"log {n}"} for n in range(4)]
    kept = job_messages.append_logs(store.conn, job.id, entries, limits=limits, now=NOW + 1)
    assert kept == 2
    assert [text for _, text, _ in texts(store, job.id)][1:] == [
        "err",
        "log 0",
        "log 1",
        dropped_logs_marker(2),
    ]


def test_log_message_keeps_everything_a_plugin_said() -> None:
    assert log_message({"level": "error", "message": "boom"}) == ("error", "boom")
    assert log_message({"message": "plain"}) == ("info", "plain")
    assert log_message({"level": 3, "message": {"n": 1}}) == ("info", '{"n":1}')
    assert log_message({"level": " Debug ", "detail": [1]}) == ("debug", '{"detail":[1]}')
    assert log_message({"level": "x" * 100, "message": "m"})[0] == "x" * 32


async def test_a_flood_of_stderr_is_capped_with_a_marker(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    flood = [f"line {n}" for n in range(1250)]
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (jid,) = await submit(daemon, NewJob(plugin="a", command="poll", payload={"stderr": flood}))
        await finish(daemon, [jid])
        stored = await daemon.gateway.job_messages(jid)
        await daemon.shutdown()
    stderr = [m.text for m in stored if m.kind is MessageKind.STDERR]
    assert stderr == flood[:1000]
    assert [m.text for m in stored][-2:] == [dropped_marker(250), "finished: succeeded"]


async def test_metrics_count_outcomes_retries_and_durations(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    # The timeout is not retried, so exactly one job ends timed_out.
    retry = {"backoff_base": "1s", "on_timeout": False}
    daemon = make_daemon(tmp_path, fake, config={"plugins": {"a": {"retry": retry}}})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        ids = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"sleep": 3}),
            NewJob(plugin="a", command="poll", payload={"fail_until": 2}),
            NewJob(plugin="a", command="poll", payload={"sleep": 50}, timeout=5),
        )
        await finish(daemon, ids)
        await daemon.shutdown()
    metrics = daemon.metrics
    value = metrics.registry.get_sample_value
    labels = {"plugin": "a", "command": "poll"}
    assert value("chamberlain_jobs_finished_total", {**labels, "status": "succeeded"}) == 2
    assert value("chamberlain_jobs_finished_total", {**labels, "status": "timed_out"}) == 1
    assert value("chamberlain_job_retries_total", labels) == 1
    assert value("chamberlain_job_timeouts_total", labels) == 1
    assert value("chamberlain_job_duration_seconds_count", labels) == 3
    # The 3 s job and the 5 s timeout: both land in the 5 s bucket.
    assert value("chamberlain_job_duration_seconds_bucket", {**labels, "le": "5.0"}) == 3
    assert value("chamberlain_job_duration_seconds_bucket", {**labels, "le": "2.5"}) == 1
