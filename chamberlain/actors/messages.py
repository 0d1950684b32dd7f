"""The messages actors exchange: one place that reads as the tree's protocol.

Every message is a frozen record.  A request that needs an answer carries its own
:class:`~chamberlain.actors.mailbox.ReplyTo`; notifications carry none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from chamberlain.actors.mailbox import ReplyTo
from chamberlain.callbacks import Delivery, DeliveryState
from chamberlain.joblog import JobMessage
from chamberlain.model import Job, JobStatus, NewJob
from chamberlain.pipelines.routing import Plan
from chamberlain.plugins.protocol import Outcome, TerminationReason
from chamberlain.retry import RetryPolicy
from chamberlain.schedule.books import (
    BreakerBook,
    BreakerKey,
    ScheduleBook,
    ScheduleKey,
    ScheduleStatus,
    StoredSchedules,
)
from chamberlain.store.sqlite import Claimed, Enqueued, JobFilter

# -- to the JobStore --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Enqueue:
    """Create jobs; answered once they are committed."""

    jobs: tuple[NewJob, ...]
    reply: ReplyTo[tuple[Enqueued, ...]]


@attrs.frozen(kw_only=True)
class ClaimResult:
    """Jobs now marked running, and when the next future job falls due."""

    jobs: tuple[Claimed, ...]
    next_due: float | None


@attrs.frozen(kw_only=True)
class Claim:
    """Mark due jobs running: at most ``limit`` in all and ``capacity[p]`` of plugin p."""

    capacity: Mapping[str, int]
    limit: int
    reply: ReplyTo[ClaimResult]


@attrs.frozen(kw_only=True)
class Settle:
    """Record the outcome of an attempt; answered with the job, or None if stale."""

    job_id: str
    attempt: int
    outcome: Outcome
    policy: RetryPolicy
    reply: ReplyTo[Job | None]


@attrs.frozen(kw_only=True)
class RecoverOrphans:
    """Settle the plugin's jobs marked running with no process behind them."""

    plugin: str
    reply: ReplyTo[tuple[Job, ...]]


@attrs.frozen(kw_only=True)
class GetJob:
    """One job by id (None when unknown)."""

    job_id: str
    reply: ReplyTo[Job | None]


@attrs.frozen(kw_only=True)
class ListJobs:
    """Jobs matching a filter, newest first, with the total count."""

    filter: JobFilter
    reply: ReplyTo[tuple[tuple[Job, ...], int]]


@attrs.frozen(kw_only=True)
class QueueDepth:
    """How many jobs are queued."""

    reply: ReplyTo[int]


@attrs.frozen(kw_only=True)
class RunningJobs:
    """Every job marked running (the Dispatcher rebuilds its books from this)."""

    reply: ReplyTo[tuple[Job, ...]]


@attrs.frozen(kw_only=True)
class WaitJob:
    """Answered with the job once it is terminal (at once if it already is)."""

    job_id: str
    reply: ReplyTo[Job | None]


@attrs.frozen(kw_only=True)
class CancelQueued:
    """Cancel a job that has not started; answered with the job as it now stands.

    ``cancelled`` is False when the job was not queued (unknown, running, or
    already terminal), in which case nothing changed.
    """

    job_id: str
    reason: str
    reply: ReplyTo[tuple[Job | None, bool]]


@attrs.frozen(kw_only=True)
class RouteSettled:
    """Apply ``planner`` to up to ``limit`` succeeded, unrouted jobs.

    Each job's plan (its events, the jobs they start) is stored in the same
    transaction that marks the job routed.  Answered with how many were routed.
    """

    planner: Callable[[Job, float], Plan]
    limit: int
    reply: ReplyTo[int]


@attrs.frozen(kw_only=True)
class EnqueuePlan:
    """Store a plan's events and create its jobs in one transaction."""

    plan: Plan
    reply: ReplyTo[tuple[Enqueued, ...]]


@attrs.frozen(kw_only=True)
class TreePending:
    """For each root id: how many jobs of its tree are unfinished or unrouted."""

    root_ids: tuple[str, ...]
    reply: ReplyTo[dict[str, int]]


@attrs.frozen(kw_only=True)
class Tree:
    """A job tree: its root, every job in creation order, and the core's notes."""

    root_job_id: str
    jobs: tuple[Job, ...]
    notes: tuple[Mapping[str, Any], ...]


@attrs.frozen(kw_only=True)
class GetTree:
    """The whole tree ``job_id`` belongs to (None when the job is unknown)."""

    job_id: str
    reply: ReplyTo[Tree | None]


# -- job messages, queue view, callbacks (migration 0003) --------------------------------


@attrs.frozen(kw_only=True)
class RecordOutput:
    """Store stderr lines of a running job (within its cap); answered with how many were kept.

    ``lines`` are ``(time read, text)``; ``dropped`` counts lines the Runner could
    not buffer.  ``final`` marks the attempt's last flush, which records the
    dropped-lines marker if any were dropped.
    """

    job_id: str
    lines: tuple[tuple[float, str], ...]
    dropped: int = 0
    final: bool = False
    reply: ReplyTo[int]


@attrs.frozen(kw_only=True)
class GetMessages:
    """A job's messages after ``after_seq``, in order, at most ``limit``."""

    job_id: str
    after_seq: int = 0
    limit: int
    reply: ReplyTo[tuple[JobMessage, ...]]


@attrs.frozen(kw_only=True)
class GetStatusChanges:
    """Status changes of all jobs after the global message id ``after_id``, filtered."""

    after_id: int
    plugin: str | None = None
    statuses: tuple[JobStatus, ...] = ()
    limit: int
    reply: ReplyTo[tuple[JobMessage, ...]]


@attrs.frozen(kw_only=True)
class QueueView:
    """Running jobs (oldest start first) and queued ones (in dispatch order)."""

    running: tuple[Job, ...]
    queued: tuple[Job, ...]
    running_total: int
    queued_total: int
    #: The newest message id: a status stream that starts here misses nothing after.
    last_message_id: int


@attrs.frozen(kw_only=True)
class GetQueue:
    """The :class:`QueueView`, at most ``limit`` jobs in each list."""

    limit: int
    reply: ReplyTo[QueueView]


@attrs.frozen(kw_only=True)
class CallbackInfo:
    """A job's callback URL (None: it has none) and its deliveries so far."""

    url: str | None
    deliveries: tuple[Delivery, ...]


@attrs.frozen(kw_only=True)
class GetCallbacks:
    """The :class:`CallbackInfo` of a job."""

    job_id: str
    reply: ReplyTo[CallbackInfo]


@attrs.frozen(kw_only=True)
class DueDeliveries:
    """Pending deliveries due now (not in ``busy``), and when the next one falls due."""

    limit: int
    busy: frozenset[str]
    reply: ReplyTo[tuple[tuple[Delivery, ...], float | None]]


@attrs.frozen(kw_only=True)
class RecordDelivery:
    """Store the outcome of one delivery attempt; answered with the delivery."""

    delivery_id: str
    state: DeliveryState
    next_attempt_at: float | None
    status_code: int | None
    error: str | None
    reply: ReplyTo[Delivery | None]


JournalRequest = (
    RecordOutput
    | GetMessages
    | GetStatusChanges
    | GetQueue
    | GetCallbacks
    | DueDeliveries
    | RecordDelivery
)


@attrs.frozen(kw_only=True)
class EnqueueDelivery:
    """Create an inbound webhook delivery's jobs, unless it is a replay.

    Answered with the first job (new, or the earlier delivery's) and whether this
    delivery was a replay of one seen within ``service.dedupe_ttl``.
    """

    endpoint: str
    delivery_id: str | None
    plan: Plan
    reply: ReplyTo[tuple[Job | None, bool]]


# -- the Scheduler's books (migration 0002) ------------------------------------------------


@attrs.frozen(kw_only=True)
class LoadSchedules:
    """Every schedule's book and every circuit breaker, as stored."""

    reply: ReplyTo[StoredSchedules]


@attrs.frozen(kw_only=True)
class OutstandingJobs:
    """For each schedule, the ids of its queued and running jobs, oldest first."""

    keys: tuple[ScheduleKey, ...]
    reply: ReplyTo[Mapping[ScheduleKey, tuple[str, ...]]]


@attrs.frozen(kw_only=True)
class CommitSchedules:
    """Enqueue scheduled jobs and write the books that record them, in one transaction.

    Together, so a crash can neither lose a fire the books say happened nor run
    one twice.  ``forget`` drops the books of schedules no longer configured.
    """

    jobs: tuple[NewJob, ...] = ()
    books: tuple[ScheduleBook, ...] = ()
    breakers: tuple[BreakerBook, ...] = ()
    forget: tuple[ScheduleKey, ...] = ()
    forget_breakers: tuple[BreakerKey, ...] = ()
    reply: ReplyTo[tuple[Enqueued, ...]]


@attrs.frozen(kw_only=True)
class JobStatuses:
    """The current status of each of these jobs (those pruned since are left out)."""

    job_ids: tuple[str, ...]
    reply: ReplyTo[Mapping[str, JobStatus]]


JobStoreRequest = (
    JournalRequest
    | EnqueueDelivery
    | RouteSettled
    | EnqueuePlan
    | TreePending
    | GetTree
    | CancelQueued
    | Enqueue
    | Claim
    | Settle
    | RecoverOrphans
    | GetJob
    | ListJobs
    | QueueDepth
    | RunningJobs
    | WaitJob
    | LoadSchedules
    | OutstandingJobs
    | CommitSchedules
    | JobStatuses
)


# -- to the Dispatcher --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Wake:
    """Something may have become runnable; claim again."""


@attrs.frozen(kw_only=True)
class Released:
    """A runner is done with a job (settled, or recovered as an orphan)."""

    job_id: str


@attrs.frozen(kw_only=True)
class Drain:
    """Stop starting jobs; answered once no job is in flight."""

    reply: ReplyTo[None]


@attrs.frozen(kw_only=True)
class DispatcherStatistics:
    """What the Dispatcher is doing, for health endpoints."""

    running: int
    running_by_plugin: Mapping[str, int]
    max_workers: int
    draining: bool
    claims: int


@attrs.frozen(kw_only=True)
class Statistics:
    """Ask for :class:`DispatcherStatistics`."""

    reply: ReplyTo[DispatcherStatistics]


@attrs.frozen(kw_only=True)
class CancelResult:
    """What a cancel request found and did."""

    #: The job as it stood after the request (None when unknown).
    job: Job | None
    #: True when the job was running: its process group is being terminated and it
    #: becomes ``cancelled`` once the process is gone (wait for it with WaitJob).
    was_running: bool
    #: True when this request changed something (a queued job cancelled, or a
    #: running one told to stop); False for unknown or already terminal jobs.
    accepted: bool


@attrs.frozen(kw_only=True)
class CancelJob:
    """Cancel a job: a queued one at once, a running one by terminating its process."""

    job_id: str
    reply: ReplyTo[CancelResult]


DispatcherRequest = Wake | Released | Drain | Statistics | CancelJob


@attrs.frozen(kw_only=True)
class Run:
    """Runner message: run this claimed job."""

    claimed: Claimed


# -- to the callback sender ------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CallbacksDue:
    """A delivery may have become due (one was recorded, or an attempt ended)."""


# -- to a Runner ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Terminate:
    """Stop running jobs for ``reason``: one job, or all of them when ``job_id`` is None."""

    reason: TerminationReason
    job_id: str | None = None


RunnerRequest = Run | Terminate


# -- to the Router ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class WakeRouter:
    """Jobs finished: route what succeeded, and look at the trees being waited on."""


@attrs.frozen(kw_only=True)
class WaitTree:
    """Answered with the tree once none of its jobs is unfinished or unrouted
    (None when the root is unknown)."""

    root_job_id: str
    reply: ReplyTo[Tree | None]


RouterRequest = WakeRouter | WaitTree


# -- to the Scheduler ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ListSchedules:
    """Every schedule, with its next run, last run and breaker."""

    reply: ReplyTo[tuple[ScheduleStatus, ...]]


@attrs.frozen(kw_only=True)
class ResetBreaker:
    """Close the breaker of the schedule's (plugin, command); answered with the schedule,
    or None when there is no such schedule.  ``by`` names who asked, for the record."""

    plugin: str
    schedule_id: str
    by: str
    reply: ReplyTo[ScheduleStatus | None]


@attrs.frozen(kw_only=True)
class ScheduledJobSettled:
    """A job a schedule enqueued reached a terminal status (sent by the JobStore)."""

    job: Job


@attrs.frozen(kw_only=True)
class CancelsSettled:
    """Jobs a schedule cancelled to make room are gone, or the wait for them ran out
    (sent by the Scheduler's own watcher task)."""

    plugin: str
    schedule_id: str
    job_ids: tuple[str, ...]


@attrs.frozen(kw_only=True)
class PauseScheduling:
    """Enqueue nothing more (the daemon is draining); answered once no fire is underway."""

    reply: ReplyTo[None]


SchedulerRequest = (
    ListSchedules | ResetBreaker | ScheduledJobSettled | CancelsSettled | PauseScheduling
)
