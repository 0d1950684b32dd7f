"""The Scheduler actor: schedules in, jobs out, at the right instants.

It never polls.  It computes each schedule's next due instant from the wall clock
(``now``), sleeps until the earliest one with ``trio.sleep_until``-style deadlines
(the same wall-clock-to-trio conversion as the Dispatcher), handles what fell due,
and goes back to sleep.  An idle daemon therefore costs nothing, and a due job is
enqueued within milliseconds.  The one concession: it re-reads the wall clock at
least every :data:`MAX_SLEEP` seconds, because trio's clock (``CLOCK_MONOTONIC``)
stands still while the machine is suspended, and a laptop that wakes up must not
wait out the rest of a pre-suspend sleep.

Everything it decides comes from plain code: instants from
:mod:`chamberlain.schedule.timing`, missed fires and overlap from
:mod:`chamberlain.schedule.policy`, the circuit breaker from
:mod:`chamberlain.schedule.breaker`.  What it learns is kept durable through the
JobStore: jobs and the books that record them are committed together
(:class:`~chamberlain.actors.messages.CommitSchedules`), and the books are loaded
again on start, which is how ``catch_up`` knows what a restart missed.

It hears about finished jobs from the JobStore (:class:`ScheduledJobSettled`,
sent without blocking) for the breaker and for fires waiting on ``if_running``.
The store stays the authority on what is outstanding: before placing fires it asks
(:class:`OutstandingJobs`), so a lost notification delays a queued fire at worst
until the schedule's next instant, and never loses it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence

import attrs
import trio

from chamberlain.actors.mailbox import ActorUnavailable, call
from chamberlain.actors.messages import (
    CancelJob,
    CancelResult,
    CancelsSettled,
    CommitSchedules,
    DispatcherRequest,
    JobStoreRequest,
    ListSchedules,
    LoadSchedules,
    OutstandingJobs,
    PauseScheduling,
    ResetBreaker,
    ScheduledJobSettled,
    SchedulerRequest,
    WaitJob,
)
from chamberlain.model import Job, NewJob, rfc3339
from chamberlain.schedule.books import (
    BreakerBook,
    BreakerKey,
    BreakerStatus,
    ScheduleBook,
    ScheduleKey,
    ScheduleStatus,
    StoredSchedules,
)
from chamberlain.schedule.breaker import Breaker, BreakerPolicy
from chamberlain.schedule.plan import Plan, window_text
from chamberlain.schedule.policy import (
    CATCH_UP_LIMIT,
    Fire,
    IfRunning,
    place,
    sort_backlog,
)
from chamberlain.schedule.timing import Timing, jitter_offset, weekday_name

log = logging.getLogger("chamberlain.scheduler")

#: The longest the Scheduler sleeps without reading the wall clock again.
MAX_SLEEP = 30.0
#: How long it waits for a job it cancelled (``if_running: cancel``) to be gone
#: before it looks at the schedule again.
CANCEL_WAIT = 30.0
#: A fire this close to its due instant is due: the wall clock and trio's clock
#: round differently, and waking again for a microsecond helps nobody.
EARLY = 0.001


@attrs.frozen(kw_only=True)
class SchedulerStatistics:
    """What the Scheduler has done, for health figures and tests."""

    schedules: int
    enqueued: int
    skipped: int
    missed: int
    paused: bool
    #: The earliest next run of any schedule (None when none will run again).
    next_run: float | None


@attrs.define(eq=False)
class _Slot:
    """One schedule at run time: its plan, timing and books."""

    plan: Plan
    timing: Timing
    book: ScheduleBook
    #: When the next run starts (jitter included); None when it never will again.
    #: Minus infinity until the first look, so the first pass handles everything.
    due_at: float | None = -math.inf
    #: Outstanding jobs this schedule is cancelling to make room.
    cancelling: set[str] = attrs.field(factory=set)


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


@attrs.define(eq=False)
class Scheduler:
    """Runs the schedules of :attr:`plans`; see the module docstring."""

    store: trio.MemorySendChannel[JobStoreRequest]
    dispatcher: trio.MemorySendChannel[DispatcherRequest]
    #: Its own mailbox, where the tasks that wait for cancelled jobs report back.
    address: trio.MemorySendChannel[SchedulerRequest]
    plans: tuple[Plan, ...]
    now: Callable[[], float] = time.time
    #: Seeds the jitter, so each run's delay is the same after a restart.
    seed: str = "chamberlain"
    max_sleep: float = MAX_SLEEP
    #: The daemon's start (wall clock); fires due before it were missed.  Set on
    #: the first run and kept across restarts of the actor.
    started_at: float | None = None
    _slots: dict[ScheduleKey, _Slot] = attrs.field(factory=dict, init=False)
    _breakers: dict[BreakerKey, Breaker] = attrs.field(factory=dict, init=False)
    _policies: dict[BreakerKey, BreakerPolicy] = attrs.field(factory=dict, init=False)
    _dirty: set[ScheduleKey] = attrs.field(factory=set, init=False)
    _dirty_breakers: set[BreakerKey] = attrs.field(factory=set, init=False)
    _forget: tuple[ScheduleKey, ...] = attrs.field(default=(), init=False)
    _forget_breakers: tuple[BreakerKey, ...] = attrs.field(default=(), init=False)
    #: Schedules with owed fires to look at again (a job of theirs finished).
    _wanted: set[ScheduleKey] = attrs.field(factory=set, init=False)
    #: Answers to send once the books they depend on are committed.
    _after_commit: list[Callable[[], None]] = attrs.field(factory=list, init=False)
    _paused: bool = attrs.field(default=False, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    enqueued: int = attrs.field(default=0, init=False)
    skipped: int = attrs.field(default=0, init=False)
    missed: int = attrs.field(default=0, init=False)

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
        self._load(stored, self.started_at, self.now())
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
        dues = [s.due_at for s in self._slots.values() if s.due_at is not None]
        finite = [d for d in dues if math.isfinite(d)]
        return SchedulerStatistics(
            schedules=len(self.plans),
            enqueued=self.enqueued,
            skipped=self.skipped,
            missed=self.missed,
            paused=self._paused,
            next_run=min(finite, default=None),
        )

    # -- loading ------------------------------------------------------------------------

    def _load(self, stored: StoredSchedules, started_at: float, now: float) -> None:
        # A restarted actor starts from the store: nothing of the last incarnation's
        # unsaved work survives (its callers time out and ask again).
        for pending in (self._slots, self._breakers, self._policies):
            pending.clear()
        for changed in (self._dirty, self._dirty_breakers, self._wanted):
            changed.clear()
        self._after_commit.clear()
        for plan in self.plans:
            book = stored.books.get(plan.key)
            if book is None or book.spec != plan.fingerprint:
                if book is not None:
                    log.info(
                        "schedule %s/%s: timing changed (%s -> %s); runs of the old timing"
                        " are not caught up",
                        plan.plugin,
                        plan.id,
                        book.spec,
                        plan.fingerprint,
                        extra=self._extra(plan),
                    )
                # A new timing starts its books afresh; the history stays visible.
                book = ScheduleBook(
                    plugin=plan.plugin,
                    id=plan.id,
                    spec=plan.fingerprint,
                    tracked_since=now,
                    last_run_at=None if book is None else book.last_run_at,
                    last_job_id=None if book is None else book.last_job_id,
                    last_status=None if book is None else book.last_status,
                )
                self._dirty.add(plan.key)
            self._slots[plan.key] = _Slot(plan=plan, timing=plan.timing(started_at), book=book)
            key = plan.breaker_key
            stored_breaker = stored.breakers.get(key)
            if key not in self._breakers:
                self._breakers[key] = (
                    stored_breaker.breaker if stored_breaker is not None else Breaker()
                )
                self._policies[key] = plan.breaker
                if stored_breaker is None:
                    self._dirty_breakers.add(key)
        self._forget = tuple(k for k in stored.books if k not in self._slots)
        self._forget_breakers = tuple(k for k in stored.breakers if k not in self._breakers)
        log.info(
            "scheduler started: %d schedules",
            len(self.plans),
            extra={"component": "scheduler", "schedules": len(self.plans)},
        )

    # -- the loop ------------------------------------------------------------------------

    def _wake_deadline(self) -> float:
        now = self.now()
        dues: list[float] = []
        if not self._paused:
            dues.extend(s.due_at for s in self._slots.values() if s.due_at is not None)
        for key, breaker in self._breakers.items():
            probe = breaker.probe_at(self._policies[key])
            if probe is not None:
                dues.append(probe)
        wait = min(max(0.0, min(dues, default=math.inf) - now), self.max_sleep)
        return trio.current_time() + wait

    async def _advance(self) -> None:
        """Handle what fell due, place owed fires, commit, cancel: one pass."""
        now = self.now()
        for key, breaker in self._breakers.items():
            ticked = breaker.tick(now, self._policies[key])
            if ticked is not breaker:
                self._set_breaker(key, ticked)
        work: dict[ScheduleKey, list[Fire]] = {}
        if not self._paused:
            for key, slot in self._slots.items():
                if slot.due_at is not None and slot.due_at <= now + EARLY:
                    fires = self._take_due(slot, now)
                    if fires or slot.book.owed:
                        work[key] = fires
            for key in self._wanted:
                if self._slots[key].book.owed:
                    work.setdefault(key, [])
        self._wanted.clear()
        jobs: list[tuple[NewJob, Fire]] = []
        cancels: list[tuple[_Slot, str]] = []
        if work:
            outstanding: Mapping[ScheduleKey, tuple[str, ...]] = await call(
                self.store, lambda r: OutstandingJobs(keys=tuple(work), reply=r)
            )
            for key, fires in work.items():
                slot = self._slots[key]
                jobs.extend(self._place(slot, fires, outstanding.get(key, ()), now, cancels))
        if jobs or self._dirty or self._dirty_breakers or self._forget or self._forget_breakers:
            await self._commit(jobs, now)
        for answer in self._after_commit:
            answer()
        self._after_commit.clear()
        for slot, job_id in cancels:
            await self._cancel(slot, job_id)

    async def _commit(self, jobs: Sequence[tuple[NewJob, Fire]], now: float) -> None:
        books = tuple(self._slots[k].book for k in self._dirty if k in self._slots)
        breakers = tuple(
            BreakerBook(plugin=k[0], command=k[1], breaker=self._breakers[k])
            for k in self._dirty_breakers
        )
        batch = tuple(job for job, _ in jobs)
        forget, forget_breakers = self._forget, self._forget_breakers
        await call(
            self.store,
            lambda r: CommitSchedules(
                jobs=batch,
                books=books,
                breakers=breakers,
                forget=forget,
                forget_breakers=forget_breakers,
                reply=r,
            ),
        )
        self._dirty.clear()
        self._dirty_breakers.clear()
        self._forget = self._forget_breakers = ()
        self.enqueued += len(batch)
        for job, fire in jobs:
            log.info(
                "scheduled run of %s/%s enqueued: %s for %s, %.0f ms after%s",
                job.plugin,
                job.schedule_id,
                job.command,
                rfc3339(fire.nominal),
                max(0.0, now - fire.nominal) * 1000,
                " (catch-up)" if fire.late else "",
                extra={
                    "component": "scheduler",
                    "plugin": job.plugin,
                    "job_id": job.id,
                    "schedule_id": job.schedule_id,
                },
            )

    # -- decisions ------------------------------------------------------------------------

    def _due_at(self, slot: _Slot, nominal: float) -> float:
        jitter = slot.plan.config.jitter
        if jitter <= 0:
            return nominal
        following = slot.timing.next_after(nominal)
        room = None if following is None else following - nominal
        key = f"{slot.plan.plugin}/{slot.plan.id}"
        return nominal + jitter_offset(key, nominal, jitter, seed=self.seed, room=room)

    def _take_due(self, slot: _Slot, now: float) -> list[Fire]:
        """The fires of ``slot`` that fell due, after ``catch_up``; sets its next run."""
        assert self.started_at is not None
        plan, book = slot.plan, slot.book
        found, more = slot.timing.recent(after=book.watermark, upto=now, limit=CATCH_UP_LIMIT)
        due = [f for f in found if self._due_at(slot, f) <= now + EARLY]
        waiting = [f for f in found if f not in due]
        runs: list[Fire] = []
        if due:
            backlog = sort_backlog(
                due,
                now=now,
                started_at=self.started_at,
                due_at=lambda f: self._due_at(slot, f),
                policy=plan.config.catch_up,
                more=more,
            )
            runs = list(backlog.runs)
            book = attrs.evolve(book, last_fire_at=due[-1])
            if backlog.dropped or backlog.more_missed:
                count = (
                    f"more than {len(found)}" if backlog.more_missed else str(len(backlog.dropped))
                )
                reason = (
                    f"missed {count} run(s) while the daemon was down or asleep"
                    f" (catch_up: {plan.config.catch_up.value})"
                )
                self.missed += len(backlog.dropped)
                book = attrs.evolve(
                    book,
                    last_skip_at=backlog.dropped[-1] if backlog.dropped else due[0],
                    last_skip_reason=reason,
                )
                log.warning(
                    "schedule %s/%s: %s", plan.plugin, plan.id, reason, extra=self._extra(plan)
                )
            slot.book = book
            self._dirty.add(plan.key)
        following = waiting[0] if waiting else slot.timing.next_after(book.watermark)
        slot.due_at = None if following is None else self._due_at(slot, following)
        return runs

    def _place(
        self,
        slot: _Slot,
        fires: Sequence[Fire],
        outstanding: Sequence[str],
        now: float,
        cancels: list[tuple[_Slot, str]],
    ) -> list[tuple[NewJob, Fire]]:
        """Apply ``if_running`` and the breaker to the slot's owed and new fires."""
        plan, config = slot.plan, slot.plan.config
        slot.cancelling &= set(outstanding)
        pending = [*slot.book.owed, *fires]
        placement = place(
            config.if_running,
            pending,
            outstanding=len(outstanding),
            max_outstanding=config.max_outstanding,
            cancelling=len(slot.cancelling),
        )
        key, policy = plan.breaker_key, plan.breaker
        breaker = self._breakers[key]
        jobs: list[tuple[NewJob, Fire]] = []
        for fire in placement.enqueue:
            breaker = breaker.tick(now, policy)
            if not breaker.admits(policy):
                self._skip(
                    slot,
                    fire,
                    f"circuit breaker for {key[0]}/{key[1]} is {breaker.state.value}"
                    + (" (a probe run is underway)" if breaker.probe_job_id else ""),
                )
                continue
            job = plan.job(fire, now=now)
            jobs.append((job, fire))
            breaker = breaker.probing(job.id)
            slot.book = attrs.evolve(
                slot.book, last_run_at=now, last_job_id=job.id, last_status="queued"
            )
        self._set_breaker(key, breaker)
        for fire in placement.skipped:
            if config.if_running is IfRunning.QUEUE:
                why = f"more than {len(placement.owed)} runs already waiting"
            else:
                why = f"{len(outstanding)} job(s) of this schedule still queued or running"
            self._skip(slot, fire, f"if_running: {config.if_running.value}: {why}")
        slot.book = attrs.evolve(slot.book, owed=placement.owed)
        victims = [j for j in outstanding if j not in slot.cancelling][: placement.cancel]
        slot.cancelling.update(victims)
        cancels.extend((slot, victim) for victim in victims)
        self._dirty.add(plan.key)
        return jobs

    def _skip(self, slot: _Slot, fire: Fire, reason: str) -> None:
        self.skipped += 1
        slot.book = attrs.evolve(slot.book, last_skip_at=fire.nominal, last_skip_reason=reason)
        log.info(
            "schedule %s/%s: run for %s skipped: %s",
            slot.plan.plugin,
            slot.plan.id,
            rfc3339(fire.nominal),
            reason,
            extra=self._extra(slot.plan),
        )

    def _set_breaker(self, key: BreakerKey, breaker: Breaker) -> None:
        before = self._breakers[key]
        if breaker == before:
            return
        self._breakers[key] = breaker
        self._dirty_breakers.add(key)
        if breaker.state is not before.state and breaker.transitions:
            step = breaker.transitions[-1]
            log.warning(
                "circuit breaker for %s/%s: %s -> %s: %s",
                key[0],
                key[1],
                step.source.value,
                step.target.value,
                step.reason,
                extra={"component": "scheduler", "plugin": key[0], "command": key[1]},
            )

    async def _cancel(self, slot: _Slot, job_id: str) -> None:
        plan = slot.plan
        try:
            result: CancelResult = await call(
                self.dispatcher, lambda r: CancelJob(job_id=job_id, reply=r), timeout=CANCEL_WAIT
            )
        except ActorUnavailable:
            log.warning(
                "schedule %s/%s: the dispatcher did not answer a cancel of job %s",
                plan.plugin,
                plan.id,
                job_id,
                extra={**self._extra(plan), "job_id": job_id},
            )
        else:
            log.info(
                "schedule %s/%s: if_running: cancel: cancelling job %s (%s)",
                plan.plugin,
                plan.id,
                job_id,
                "running" if result.was_running else "queued",
                extra={**self._extra(plan), "job_id": job_id},
            )
        assert self._nursery is not None
        self._nursery.start_soon(self._await_gone, plan.plugin, plan.id, job_id)

    async def _await_gone(self, plugin: str, schedule_id: str, job_id: str) -> None:
        with trio.move_on_after(CANCEL_WAIT):
            await call(self.store, lambda r: WaitJob(job_id=job_id, reply=r))
        await self.address.send(
            CancelsSettled(plugin=plugin, schedule_id=schedule_id, job_ids=(job_id,))
        )

    # -- messages -------------------------------------------------------------------------

    def _handle(self, message: SchedulerRequest) -> None:
        match message:
            case ListSchedules(reply=reply):
                reply.send(tuple(self._status(slot) for slot in self._slots.values()))
            case ResetBreaker():
                self._reset(message)
            case ScheduledJobSettled(job=job):
                self._settled(job)
            case CancelsSettled(plugin=plugin, schedule_id=schedule_id, job_ids=job_ids):
                cancelled = self._slots.get((plugin, schedule_id))
                if cancelled is not None:
                    cancelled.cancelling.difference_update(job_ids)
                    if cancelled.book.owed:
                        self._wanted.add(cancelled.plan.key)
            case PauseScheduling(reply=reply):
                if not self._paused:
                    log.info(
                        "scheduler paused: the daemon is draining", extra={"component": "scheduler"}
                    )
                self._paused = True
                reply.send(None)
            case _:
                raise TypeError(f"unknown message {message!r}")

    def _reset(self, request: ResetBreaker) -> None:
        slot = self._slots.get((request.plugin, request.schedule_id))
        if slot is None:
            request.reply.send(None)
            return
        key = slot.plan.breaker_key
        self._set_breaker(
            key, self._breakers[key].reset(now=self.now(), reason=f"reset by {request.by}")
        )
        # Written even when already closed: the failure count went back to zero.
        self._dirty_breakers.add(key)
        self._after_commit.append(lambda: request.reply.send(self._status(slot)))

    def _settled(self, job: Job) -> None:
        assert job.schedule_id is not None
        key = (job.plugin, job.command)
        if key in self._breakers:
            self._set_breaker(
                key,
                self._breakers[key].record(
                    job_id=job.id,
                    status=job.status,
                    error=job.last_error,
                    now=self.now(),
                    policy=self._policies[key],
                ),
            )
        slot = self._slots.get((job.plugin, job.schedule_id))
        if slot is None:
            return
        slot.cancelling.discard(job.id)
        if slot.book.last_job_id == job.id:
            slot.book = attrs.evolve(slot.book, last_status=job.status.value)
            self._dirty.add(slot.plan.key)
        if slot.book.owed:
            self._wanted.add(slot.plan.key)

    # -- reporting ------------------------------------------------------------------------

    def _status(self, slot: _Slot) -> ScheduleStatus:
        plan, config = slot.plan, slot.plan.config
        due = slot.due_at
        return ScheduleStatus(
            plugin=plan.plugin,
            id=plan.id,
            command=plan.command,
            kind=config.kind,
            spec=config.spec,
            timezone=plan.zone_name,
            only_between=window_text(config.only_between),
            not_on=tuple(weekday_name(d) for d in sorted(set(config.not_on))),
            jitter=config.jitter,
            catch_up=config.catch_up.value,
            if_running=config.if_running.value,
            max_outstanding=config.max_outstanding,
            next_run=due if due is not None and math.isfinite(due) else None,
            book=slot.book,
            breaker=BreakerStatus(
                command=plan.command,
                breaker=self._breakers[plan.breaker_key],
                policy=plan.breaker,
            ),
            paused=self._paused,
        )

    def _extra(self, plan: Plan) -> dict[str, str]:
        return {"component": "scheduler", "plugin": plan.plugin, "schedule_id": plan.id}
