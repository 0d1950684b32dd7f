"""The Scheduler actor: schedules in, jobs out, at the right instants.

It never polls.  It asks its :class:`~chamberlain.schedule.engine.ScheduleEngine`
for the next instant anything is due, sleeps until then with trio deadlines (the
same wall-clock-to-trio conversion as the Dispatcher), lets the engine handle what
fell due, carries out its answer, and goes back to sleep.  An idle daemon
therefore costs nothing, and a due job is enqueued within milliseconds.  The one
concession: it re-reads the wall clock at least every :data:`MAX_SLEEP` seconds,
because trio's clock (``CLOCK_MONOTONIC``) stands still while the machine is
suspended, and a laptop that wakes up must not wait out the rest of a pre-suspend
sleep.

Every decision (instants, ``catch_up``, ``if_running``, the circuit breaker, what
the books record) is the engine's; this actor only reads the clock, delivers mail
to the engine and performs its actions against the JobStore and the Dispatcher.
What it learns is kept durable through the JobStore: jobs and the books that
record them are committed together
(:class:`~chamberlain.actors.mail.CommitSchedules`), and the books are loaded
again on start, which is how ``catch_up`` knows what a restart missed.

It hears about finished jobs from the JobStore (:class:`ScheduledJobSettled`,
sent without blocking) for the breaker and for fires waiting on ``if_running``.
The store stays the authority on what is outstanding: before placing fires it asks
(:class:`OutstandingJobs`), so a lost notification delays a queued fire at worst
until the schedule's next instant, and never loses it.

A configuration reload hands it new plans (:class:`ReplacePlans`); the engine keeps
the books of the schedules that stay, and the pass that follows saves the books of
new and changed ones and sleeps for whatever is due first now.  With no schedules
at all it still wakes every :data:`MAX_SLEEP` seconds and answers its mail, so a
daemon started without any can be given some later.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping

import attrs
import trio

from chamberlain.actors.mail import (
    CancelJob,
    CancelsSettled,
    CommitSchedules,
    DispatcherRequest,
    JobStoreRequest,
    ListSchedules,
    LoadSchedules,
    OutstandingJobs,
    PauseScheduling,
    ReplacePlans,
    ResetBreaker,
    ScheduledJobSettled,
    SchedulerRequest,
    WaitJob,
)
from chamberlain.actors.mailbox import ActorUnavailable, RequestFailed, call
from chamberlain.records import CancelResult, Job
from chamberlain.schedule.books import ScheduleKey, StoredSchedules
from chamberlain.schedule.engine import (
    Cancellation,
    ScheduleEngine,
    SchedulerStatistics,
    schedule_fields,
)
from chamberlain.schedule.plan import SchedulePlan

__all__ = [
    "CANCEL_WAIT",
    "MAX_SLEEP",
    "Scheduler",
    "SchedulerStatistics",
    "settled_notifier",
]

log = logging.getLogger("chamberlain.scheduler")

#: The longest the Scheduler sleeps without reading the wall clock again.
MAX_SLEEP = 30.0
#: How long it waits for a job it cancelled (``if_running: cancel``) to be gone
#: before it looks at the schedule again.
CANCEL_WAIT = 30.0


def settled_notifier(
    address: trio.MemorySendChannel[SchedulerRequest],
) -> Callable[[Job], None]:
    """What the JobStore calls for every finished job: tells the Scheduler about
    the scheduled ones, without ever blocking the JobStore."""

    def notify(job: Job) -> None:
        if job.schedule_id is None:
            return
        try:
            address.send_nowait(ScheduledJobSettled(job=job))
        except trio.WouldBlock:
            # The Scheduler asks the store before placing fires, so only the
            # breaker misses this outcome.
            log.warning(
                "scheduler mailbox full: outcome of a scheduled job not counted",
                extra={"component": "scheduler", "job_id": job.id, "plugin": job.plugin},
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    return notify


def _engine(scheduler: Scheduler) -> ScheduleEngine:
    return ScheduleEngine(plans=scheduler.plans, seed=scheduler.seed)


@attrs.define(eq=False)
class Scheduler:
    """Runs the schedules of :attr:`plans`; see the module docstring."""

    store: trio.MemorySendChannel[JobStoreRequest]
    dispatcher: trio.MemorySendChannel[DispatcherRequest]
    #: Its own mailbox, where the tasks that wait for cancelled jobs report back.
    address: trio.MemorySendChannel[SchedulerRequest]
    plans: tuple[SchedulePlan, ...]
    now: Callable[[], float] = time.time
    #: Seeds the jitter, so each run's delay is the same after a restart.
    seed: str = "chamberlain"
    max_sleep: float = MAX_SLEEP
    #: The daemon's start (wall clock); fires due before it were missed.  Set on
    #: the first run and kept across restarts of the actor.
    started_at: float | None = None
    #: The decisions; kept across restarts of the actor, like the counters it holds.
    engine: ScheduleEngine = attrs.field(
        default=attrs.Factory(_engine, takes_self=True), init=False
    )
    #: Answers to send once the books they depend on are committed.
    _after_commit: list[Callable[[], None]] = attrs.field(factory=list, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    async def run(
        self,
        mailbox: trio.MemoryReceiveChannel[SchedulerRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Load the books, then fire schedules until cancelled."""
        if self.started_at is None:
            self.started_at = self.now()
        stored: StoredSchedules = await call(self.store, lambda r: LoadSchedules(reply=r))
        # Answers of the last incarnation died with it (their callers time out).
        self._after_commit.clear()
        self.engine.load(stored, started_at=self.started_at, now=self.now())
        self._log_notes()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await self._advance()
                message: SchedulerRequest | None = None
                with trio.move_on_at(self._wake_deadline()):
                    message = await mailbox.receive()
                if message is None:
                    continue
                self._handle(message)
                while True:
                    try:
                        self._handle(mailbox.receive_nowait())
                    except trio.WouldBlock:
                        break

    def statistics(self) -> SchedulerStatistics:
        """A snapshot of the counters."""
        return self.engine.statistics()

    # -- the loop ------------------------------------------------------------------------

    def _wake_deadline(self) -> float:
        wakeup = self.engine.next_wakeup()
        wait = math.inf if wakeup is None else max(0.0, wakeup - self.now())
        return trio.current_time() + min(wait, self.max_sleep)

    async def _advance(self) -> None:
        """Handle what fell due, place owed fires, commit, cancel: one pass."""
        engine = self.engine
        due = engine.advance(self.now())
        self._log_notes()
        outstanding: Mapping[ScheduleKey, tuple[str, ...]] = {}
        if due.keys:
            keys = due.keys
            outstanding = await call(self.store, lambda r: OutstandingJobs(keys=keys, reply=r))
        step = engine.place(due, outstanding)
        self._log_notes()
        if step.commit is not None:
            commit = step.commit
            await call(
                self.store,
                lambda r: CommitSchedules(
                    jobs=commit.jobs,
                    books=commit.books,
                    breakers=commit.breakers,
                    forget=commit.forget,
                    forget_breakers=commit.forget_breakers,
                    reply=r,
                ),
            )
            engine.committed(commit)
            self._log_notes()
        for answer in self._after_commit:
            answer()
        self._after_commit.clear()
        for cancel in step.cancels:
            await self._cancel(cancel)

    async def _cancel(self, cancel: Cancellation) -> None:
        fields = {**schedule_fields(cancel.plugin, cancel.schedule_id), "job_id": cancel.job_id}
        try:
            result: CancelResult = await call(
                self.dispatcher,
                lambda r: CancelJob(job_id=cancel.job_id, reply=r),
                timeout=CANCEL_WAIT,
            )
        except ActorUnavailable:
            log.warning(
                "schedule %s/%s: the dispatcher did not answer a cancel of job %s",
                cancel.plugin,
                cancel.schedule_id,
                cancel.job_id,
                extra=fields,
            )
        except RequestFailed as failed:
            # The store refused the cancel (a full disk); the next pass tries again.
            log.warning(
                "schedule %s/%s: the cancel of job %s failed: %s",
                cancel.plugin,
                cancel.schedule_id,
                cancel.job_id,
                failed.__cause__ or failed,
                extra=fields,
            )
        else:
            log.info(
                "schedule %s/%s: if_running: cancel: cancelling job %s (%s)",
                cancel.plugin,
                cancel.schedule_id,
                cancel.job_id,
                "running" if result.was_running else "queued",
                extra=fields,
            )
        assert self._nursery is not None
        self._nursery.start_soon(self._await_gone, cancel)

    async def _await_gone(self, cancel: Cancellation) -> None:
        with trio.move_on_after(CANCEL_WAIT):
            await call(self.store, lambda r: WaitJob(job_id=cancel.job_id, reply=r))
        await self.address.send(
            CancelsSettled(
                plugin=cancel.plugin, schedule_id=cancel.schedule_id, job_ids=(cancel.job_id,)
            )
        )

    def _log_notes(self) -> None:
        for note in self.engine.take_notes():
            log.log(note.level, note.template, *note.args, extra=dict(note.fields))

    # -- messages -------------------------------------------------------------------------

    def _handle(self, message: SchedulerRequest) -> None:
        engine = self.engine
        match message:
            case ListSchedules(reply=reply):
                reply.send(engine.statuses())
            case ResetBreaker():
                self._reset(message)
            case ScheduledJobSettled(job=job):
                engine.settled(job, now=self.now())
            case CancelsSettled(plugin=plugin, schedule_id=schedule_id, job_ids=job_ids):
                engine.cancels_settled((plugin, schedule_id), job_ids)
            case PauseScheduling(reply=reply):
                engine.pause()
                reply.send(None)
            case ReplacePlans():
                self._replace(message)
            case _:
                raise TypeError(f"unknown message {message!r}")
        self._log_notes()

    def _replace(self, request: ReplacePlans) -> None:
        # The engine (kept across restarts of the actor) loads engine.plans again
        # on a restart; self.plans follows too, so both say what now runs.
        self.plans = request.plans
        self.engine.replace(request.plans, now=self.now())
        # The loop's next pass saves the new books and sleeps until the new next
        # wake-up; answered after it, so the caller's reload is in effect and durable.
        self._after_commit.append(lambda: request.reply.send(None))

    def _reset(self, request: ResetBreaker) -> None:
        key = (request.plugin, request.schedule_id)
        if not self.engine.reset_breaker(key, by=request.by, now=self.now()):
            request.reply.send(None)
            return
        self._after_commit.append(lambda: request.reply.send(self.engine.status(key)))
