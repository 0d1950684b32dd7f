"""The JobStore's journal: what each transaction wrote about jobs, and who hears of it.

Status changes become messages through the triggers of migration 0003, whichever
request made them.  At the end of every transaction the JobStore asks the journal
to :meth:`~Journal.collect` the messages the transaction added (and to record a
callback delivery for every job that ended and asked for one, in the same
transaction); once the transaction has committed, :meth:`~Journal.publish` hands
the messages to the hub and the metrics and wakes the callback sender.  Nothing is
announced that could still be rolled back, and nothing committed goes unannounced.

The journal also answers the store requests of this feature
(:data:`~chamberlain.actors.mail.JournalRequest`), so the JobStore only
delegates them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from chamberlain.actors.hub import Hub
from chamberlain.actors.mail import (
    CallbackInfo,
    DueCallbacks,
    GetCallbacks,
    GetIterations,
    GetMessages,
    GetQueue,
    GetStatusChanges,
    GetTranscript,
    JournalRequest,
    MarkSession,
    RecordCallbackAttempt,
    RecordInput,
    RecordOutput,
    SaveIteration,
    StopLoop,
)
from chamberlain.instruments import Metrics
from chamberlain.joblog import OutputLimits
from chamberlain.records import Job, JobMessage, QueueView
from chamberlain.store import callback_queue, job_messages, loop_rows, session_rows
from chamberlain.store.sqlite import SqliteStore


@attrs.frozen(kw_only=True)
class News:
    """What one transaction added: its messages, the jobs it ended, new deliveries."""

    messages: tuple[JobMessage, ...]
    ended: dict[str, Job]
    deliveries: int


@attrs.define(eq=False)
class Journal:
    """See the module docstring.  Outlives JobStore restarts (the root owns it)."""

    hub: Hub = attrs.field(factory=Hub)
    metrics: Metrics | None = None
    limits: OutputLimits = attrs.field(factory=OutputLimits)
    #: Rung (without blocking) after a commit that recorded deliveries.
    wake_callbacks: Callable[[], None] = lambda: None

    def mark(self, store: SqliteStore) -> int:
        """Where this transaction's messages will start: call right after BEGIN."""
        return job_messages.last_message_id(store.conn)

    def collect(self, store: SqliteStore, mark: int, now: float) -> News:
        """The messages added since ``mark``; records deliveries for ended jobs.

        Runs inside the transaction, before its commit.
        """
        added = tuple(job_messages.messages_after(store.conn, mark))
        ended: dict[str, Job] = {}
        for message in added:
            if message.ends_job:
                job = store.get_job(message.job_id)
                if job is not None:
                    ended[job.id] = job
        created = callback_queue.create_deliveries(store.conn, list(ended.values()), now=now)
        return News(messages=added, ended=ended, deliveries=created)

    def publish(self, news: News) -> None:
        """Announce a committed transaction's news (trio thread, never blocks)."""
        for message in news.messages:
            self.hub.publish(message)
            if self.metrics is not None and message.is_status:
                self.metrics.observe(message, news.ended.get(message.job_id))
        if news.deliveries:
            self.wake_callbacks()

    def record_logs(
        self, store: SqliteStore, job_id: str, entries: Sequence[Mapping[str, Any]], now: float
    ) -> int:
        """Keep a response's ``logs`` as the job's messages (inside the settle)."""
        return job_messages.append_logs(store.conn, job_id, entries, limits=self.limits, now=now)

    def apply(self, store: SqliteStore, request: JournalRequest, now: float) -> Any:
        """Answer one of this feature's store requests (inside the transaction)."""
        conn = store.conn
        match request:
            case RecordOutput(job_id=job_id, lines=lines, dropped=dropped, final=final):
                return job_messages.append_output(
                    conn, job_id, lines, dropped=dropped, final=final, limits=self.limits, now=now
                )
            case RecordInput(
                job_id=job_id, attempt=attempt, message_id=message_id, message=message
            ):
                return session_rows.record_input(
                    conn, job_id, attempt, message_id=message_id, message=message, now=now
                )
            case MarkSession(job_id=job_id, attempt=attempt, waiting=waiting):
                return session_rows.mark_session(conn, job_id, attempt, waiting=waiting, now=now)
            case GetTranscript(job_id=job_id):
                return tuple(session_rows.transcript(conn, job_id))
            case SaveIteration(job_id=job_id, attempt=attempt, iteration=iteration, note=note):
                return loop_rows.save_iteration(
                    conn, job_id, attempt, iteration, note=note, now=now
                )
            case GetIterations(job_id=job_id):
                return tuple(loop_rows.iterations(conn, job_id))
            case StopLoop(job_id=job_id):
                return loop_rows.request_stop(store, job_id)
            case GetMessages(job_id=job_id, after_seq=after_seq, limit=limit):
                return tuple(
                    job_messages.job_messages(conn, job_id, after_seq=after_seq, limit=limit)
                )
            case GetStatusChanges(after_id=after_id, plugin=plugin, statuses=statuses, limit=limit):
                return tuple(
                    job_messages.status_changes(
                        conn, after_id=after_id, plugin=plugin, statuses=statuses, limit=limit
                    )
                )
            case GetQueue(limit=limit):
                running, queued, running_total, queued_total = store.queue_view(limit)
                return QueueView(
                    running=tuple(running),
                    queued=tuple(queued),
                    running_total=running_total,
                    queued_total=queued_total,
                    last_message_id=job_messages.last_message_id(conn),
                )
            case GetCallbacks(job_id=job_id):
                return CallbackInfo(
                    url=callback_queue.callback_url(conn, job_id),
                    deliveries=tuple(callback_queue.job_deliveries(conn, job_id)),
                )
            case DueCallbacks(limit=limit, busy=busy):
                due, next_due = callback_queue.due_deliveries(conn, now=now, limit=limit, busy=busy)
                return tuple(due), next_due
            case RecordCallbackAttempt(
                delivery_id=delivery_id,
                state=state,
                next_attempt_at=next_attempt_at,
                status_code=status_code,
                error=error,
            ):
                return callback_queue.record_attempt(
                    conn,
                    delivery_id,
                    state=state,
                    next_attempt_at=next_attempt_at,
                    status_code=status_code,
                    error=error,
                    now=now,
                )
        raise TypeError(f"unknown request {request!r}")
