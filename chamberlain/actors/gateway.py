"""What the web layer may ask of the actor tree, as one small client.

HTTP handlers never touch the database or actor internals: they call these
methods, which send a message and wait for the reply with a deadline.  An actor
that does not answer in time surfaces as :class:`ActorUnavailable` (HTTP 503); a
request the JobStore's disk refused, as :class:`StorageFull` (HTTP 507).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import attrs
import trio

from chamberlain.actors.hub import Hub
from chamberlain.actors.mail import (
    CallbackInfo,
    CancelJob,
    DispatcherRequest,
    DispatcherStatistics,
    Enqueue,
    EnqueuePlan,
    EnqueueWebhook,
    GetCallbacks,
    GetJob,
    GetMessages,
    GetQueue,
    GetStatusChanges,
    GetTree,
    JobStatuses,
    JobStoreRequest,
    ListJobs,
    ListSchedules,
    QueueDepth,
    ResetBreaker,
    RouterRequest,
    SchedulerRequest,
    Statistics,
    WaitJob,
    WaitTree,
)
from chamberlain.actors.mailbox import ReplyTo, RequestFailed, call
from chamberlain.actors.storage_faults import StorageFull as StorageFull
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.records import (
    CancelResult,
    Enqueued,
    Job,
    JobFilter,
    JobMessage,
    JobStatus,
    NewJob,
    QueueView,
    RoutePlan,
    Tree,
)
from chamberlain.routing.planner import Routing
from chamberlain.schedule.books import ScheduleStatus
from chamberlain.supervision import SupervisorStatistics

T = TypeVar("T")
M = TypeVar("M")


class Phase(enum.Enum):
    """Where the daemon is in its life; only READY accepts new work."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


@attrs.define(eq=False)
class Lifecycle:
    """The daemon's phase.  Written only by the root; read by the web layer."""

    phase: Phase = Phase.STARTING
    started_at: float = attrs.field(factory=time.time)
    started_monotonic: float = attrs.field(factory=time.monotonic)

    @property
    def accepting(self) -> bool:
        """True when new jobs may be submitted."""
        return self.phase is Phase.READY

    def uptime(self) -> float:
        """Seconds since the daemon started."""
        return time.monotonic() - self.started_monotonic


@attrs.frozen(kw_only=True)
class Health:
    """Everything ``/healthz`` reports."""

    phase: Phase
    uptime_seconds: float
    queue_depth: int
    running: int
    max_workers: int
    plugins_loaded: int
    restarts: Mapping[str, int]
    restarts_total: int
    #: Why the JobStore refuses writes (the disk is full or failing); None while
    #: writes commit.
    degraded: str | None = None


@attrs.define(eq=False)
class Gateway:
    """The web layer's handle on the daemon."""

    store: trio.MemorySendChannel[JobStoreRequest]
    dispatcher: trio.MemorySendChannel[DispatcherRequest]
    plugins: Mapping[str, BoundPlugin]
    lifecycle: Lifecycle
    supervisor_statistics: Callable[[], SupervisorStatistics]
    router: trio.MemorySendChannel[RouterRequest]
    routing: Routing
    #: How long a request waits for an actor before it is answered 503.
    timeout: float = 5.0
    #: Synchronous calls (waiting for a whole pipeline) allowed at once.
    max_concurrent_sync: int = 16
    #: Committed job messages, for the event streams.
    hub: Hub = attrs.field(factory=Hub)
    #: The Scheduler; None for a daemon that runs no schedules.
    scheduler: trio.MemorySendChannel[SchedulerRequest] | None = None
    #: Why the JobStore refuses writes now (its statistics' ``degraded``), None
    #: while they commit; read without a message, so it answers even when the
    #: store is busy.
    storage_problem: Callable[[], str | None] = lambda: None
    sync_limiter: trio.CapacityLimiter = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.sync_limiter = trio.CapacityLimiter(self.max_concurrent_sync)

    async def _ask_store(
        self,
        build: Callable[[ReplyTo[T]], JobStoreRequest],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (see mailbox.call)
    ) -> T:
        """``call`` the JobStore; a request its disk refused raises :class:`StorageFull`."""
        return await self._ask(self.store, build, timeout=timeout)

    async def _ask(
        self,
        mailbox: trio.MemorySendChannel[M],
        build: Callable[[ReplyTo[T]], M],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (see mailbox.call)
    ) -> T:
        """``call`` an actor; a request the store's disk refused raises :class:`StorageFull`."""
        try:
            answer: T = await call(mailbox, build, timeout=timeout)
        except RequestFailed as failed:
            if isinstance(failed.__cause__, StorageFull):
                raise StorageFull(str(failed.__cause__)) from failed
            raise
        return answer

    async def enqueue(self, jobs: Sequence[NewJob]) -> tuple[Enqueued, ...]:
        """Create jobs; returns once they are committed."""
        batch = tuple(jobs)
        return await self._ask_store(lambda r: Enqueue(jobs=batch, reply=r), timeout=self.timeout)

    async def get_job(self, job_id: str) -> Job | None:
        """One job, or None when unknown."""
        return await self._ask_store(lambda r: GetJob(job_id=job_id, reply=r), timeout=self.timeout)

    async def list_jobs(self, flt: JobFilter) -> tuple[tuple[Job, ...], int]:
        """Jobs matching ``flt``, newest first, and the total count."""
        return await self._ask_store(lambda r: ListJobs(filter=flt, reply=r), timeout=self.timeout)

    async def wait_job(self, job_id: str) -> Job | None:
        """The job once it is terminal (None if unknown).  Bound it with a cancel scope."""
        return await self._ask_store(lambda r: WaitJob(job_id=job_id, reply=r))

    async def enqueue_plan(self, plan: RoutePlan) -> tuple[Enqueued, ...]:
        """Store a plan's events and create its jobs; returns once committed."""
        return await self._ask_store(
            lambda r: EnqueuePlan(plan=plan, reply=r), timeout=self.timeout
        )

    async def enqueue_webhook(
        self, endpoint: str, delivery_id: str | None, plan: RoutePlan
    ) -> tuple[Job | None, bool]:
        """Create a webhook delivery's jobs unless it is a replay; see EnqueueWebhook."""
        return await self._ask_store(
            lambda r: EnqueueWebhook(
                endpoint=endpoint, delivery_id=delivery_id, plan=plan, reply=r
            ),
            timeout=self.timeout,
        )

    async def get_tree(self, job_id: str) -> Tree | None:
        """The whole tree ``job_id`` belongs to, None when the job is unknown."""
        return await self._ask_store(
            lambda r: GetTree(job_id=job_id, reply=r), timeout=self.timeout
        )

    async def wait_tree(self, root_job_id: str) -> Tree | None:
        """The tree once it has finished.  Bound it with a cancel scope."""
        return await call(self.router, lambda r: WaitTree(root_job_id=root_job_id, reply=r))

    async def cancel_job(self, job_id: str) -> CancelResult:
        """Cancel a queued job, or start terminating a running one.

        A running job becomes ``cancelled`` once its process group is gone; follow
        with :meth:`wait_job` to see it settle.
        """
        return await self._ask(
            self.dispatcher, lambda r: CancelJob(job_id=job_id, reply=r), timeout=self.timeout
        )

    # -- job messages, the queue, callbacks ------------------------------------------------

    async def job_messages(
        self, job_id: str, *, after_seq: int = 0, limit: int = 10_000
    ) -> tuple[JobMessage, ...]:
        """A job's messages after ``after_seq``, in order."""
        return await self._ask_store(
            lambda r: GetMessages(job_id=job_id, after_seq=after_seq, limit=limit, reply=r),
            timeout=self.timeout,
        )

    async def status_changes(
        self,
        *,
        after_id: int,
        plugin: str | None = None,
        statuses: tuple[JobStatus, ...] = (),
        limit: int = 500,
    ) -> tuple[JobMessage, ...]:
        """Status changes of all jobs after the message id ``after_id``, filtered."""
        return await self._ask_store(
            lambda r: GetStatusChanges(
                after_id=after_id, plugin=plugin, statuses=statuses, limit=limit, reply=r
            ),
            timeout=self.timeout,
        )

    async def queue(self, limit: int) -> QueueView:
        """Running and queued jobs, at most ``limit`` of each."""
        return await self._ask_store(lambda r: GetQueue(limit=limit, reply=r), timeout=self.timeout)

    async def callbacks(self, job_id: str) -> CallbackInfo:
        """A job's callback URL and its deliveries."""
        return await self._ask_store(
            lambda r: GetCallbacks(job_id=job_id, reply=r), timeout=self.timeout
        )

    # -- schedules ---------------------------------------------------------------------

    async def list_schedules(self) -> tuple[ScheduleStatus, ...]:
        """Every schedule; the last job's status is read live when it is not final."""
        if self.scheduler is None:
            return ()
        found: tuple[ScheduleStatus, ...] = await call(
            self.scheduler, lambda r: ListSchedules(reply=r), timeout=self.timeout
        )
        # The Scheduler hears about finished jobs only; "running" is the store's to say.
        ids = tuple(
            s.book.last_job_id
            for s in found
            if s.book.last_job_id is not None
            and s.book.last_status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
        )
        if not ids:
            return found
        live: Mapping[str, JobStatus] = await self._ask_store(
            lambda r: JobStatuses(job_ids=ids, reply=r), timeout=self.timeout
        )
        return tuple(_with_live_status(s, live) for s in found)

    async def reset_breaker(
        self, plugin: str, schedule_id: str, *, by: str
    ) -> ScheduleStatus | None:
        """Close the circuit breaker a schedule answers to; None for an unknown schedule."""
        if self.scheduler is None:
            return None
        return await call(
            self.scheduler,
            lambda r: ResetBreaker(plugin=plugin, schedule_id=schedule_id, by=by, reply=r),
            timeout=self.timeout,
        )

    async def health(self) -> Health:
        """Queue, workers and supervisor figures in one snapshot."""
        depth: int = await self._ask_store(lambda r: QueueDepth(reply=r), timeout=self.timeout)
        stats: DispatcherStatistics = await call(
            self.dispatcher, lambda r: Statistics(reply=r), timeout=self.timeout
        )
        sup = self.supervisor_statistics()
        return Health(
            phase=self.lifecycle.phase,
            uptime_seconds=self.lifecycle.uptime(),
            queue_depth=depth,
            running=stats.running,
            max_workers=stats.max_workers,
            plugins_loaded=len(self.plugins),
            restarts=sup.restart_counts(),
            restarts_total=sup.restarts_total,
            degraded=self.storage_problem(),
        )


def _with_live_status(status: ScheduleStatus, live: Mapping[str, JobStatus]) -> ScheduleStatus:
    job_id = status.book.last_job_id
    if job_id is None or job_id not in live:
        return status
    return attrs.evolve(status, book=attrs.evolve(status.book, last_status=live[job_id].value))
