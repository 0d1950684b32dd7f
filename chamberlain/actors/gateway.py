"""What the web layer may ask of the actor tree, as one small client.

HTTP handlers never touch the database or actor internals: they call these
methods, which send a message and wait for the reply with a deadline.  An actor
that does not answer in time surfaces as :class:`ActorUnavailable` (HTTP 503).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence

import attrs
import trio

from chamberlain.actors.mailbox import call
from chamberlain.actors.messages import (
    CancelJob,
    CancelResult,
    DispatcherRequest,
    DispatcherStatistics,
    Enqueue,
    EnqueuePlan,
    GetJob,
    GetTree,
    JobStoreRequest,
    ListJobs,
    QueueDepth,
    RouterRequest,
    Statistics,
    Tree,
    WaitJob,
    WaitTree,
)
from chamberlain.model import Job, NewJob
from chamberlain.pipelines.routing import Plan, Routing
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.store.sqlite import Enqueued, JobFilter
from chamberlain.supervision import SupervisorStatistics


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

    async def enqueue(self, jobs: Sequence[NewJob]) -> tuple[Enqueued, ...]:
        """Create jobs; returns once they are committed."""
        batch = tuple(jobs)
        return await call(self.store, lambda r: Enqueue(jobs=batch, reply=r), timeout=self.timeout)

    async def get_job(self, job_id: str) -> Job | None:
        """One job, or None when unknown."""
        return await call(
            self.store, lambda r: GetJob(job_id=job_id, reply=r), timeout=self.timeout
        )

    async def list_jobs(self, flt: JobFilter) -> tuple[tuple[Job, ...], int]:
        """Jobs matching ``flt``, newest first, and the total count."""
        return await call(self.store, lambda r: ListJobs(filter=flt, reply=r), timeout=self.timeout)

    async def wait_job(self, job_id: str) -> Job | None:
        """The job once it is terminal (None if unknown).  Bound it with a cancel scope."""
        return await call(self.store, lambda r: WaitJob(job_id=job_id, reply=r))

    async def enqueue_plan(self, plan: Plan) -> tuple[Enqueued, ...]:
        """Store a plan's events and create its jobs; returns once committed."""
        return await call(
            self.store, lambda r: EnqueuePlan(plan=plan, reply=r), timeout=self.timeout
        )

    async def get_tree(self, job_id: str) -> Tree | None:
        """The whole tree ``job_id`` belongs to, None when the job is unknown."""
        return await call(
            self.store, lambda r: GetTree(job_id=job_id, reply=r), timeout=self.timeout
        )

    async def wait_tree(self, root_job_id: str) -> Tree | None:
        """The tree once it has finished.  Bound it with a cancel scope."""
        return await call(self.router, lambda r: WaitTree(root_job_id=root_job_id, reply=r))

    async def cancel_job(self, job_id: str) -> CancelResult:
        """Cancel a queued job, or start terminating a running one.

        A running job becomes ``cancelled`` once its process group is gone; follow
        with :meth:`wait_job` to see it settle.
        """
        return await call(
            self.dispatcher, lambda r: CancelJob(job_id=job_id, reply=r), timeout=self.timeout
        )

    async def health(self) -> Health:
        """Queue, workers and supervisor figures in one snapshot."""
        depth: int = await call(self.store, lambda r: QueueDepth(reply=r), timeout=self.timeout)
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
        )
