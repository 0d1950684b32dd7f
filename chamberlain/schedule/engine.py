"""The Scheduler's decisions, without I/O: time and events in, actions out.

:class:`ScheduleEngine` holds the running schedules: their plans and books, the
circuit breakers, the fires owed and the jobs being cancelled.  It never reads a
clock, sleeps or sends a message.  Its owner (the
:class:`~chamberlain.actors.scheduler.Scheduler` actor) tells it the wall-clock
time and what happened, carries out the actions it answers with, and sleeps until
:meth:`~ScheduleEngine.next_wakeup`.

One pass over the schedules takes three calls, because placing fires needs a fact
only the store has (which jobs are still outstanding):

1. :meth:`~ScheduleEngine.advance` ticks the breakers and takes the fires that fell
   due; the :class:`Due` it returns names the schedules whose outstanding jobs
   step 2 needs.
2. :meth:`~ScheduleEngine.place` applies ``if_running`` and the breakers and answers
   with a :class:`Step`: a :class:`Commit` (new jobs together with the books and
   breakers that record them, to be saved in one transaction) and the
   :class:`Cancellation` of jobs that must make room.
3. :meth:`~ScheduleEngine.committed` once the store has saved the commit.

Between passes it hears of settled jobs (:meth:`~ScheduleEngine.settled`), finished
cancellations, breaker resets, the drain's pause and new plans from a configuration
reload (:meth:`~ScheduleEngine.replace`).  What it would log it leaves as
:class:`Note` records, collected with :meth:`~ScheduleEngine.take_notes`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs

from chamberlain.records import Job, NewJob, rfc3339
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
from chamberlain.schedule.plan import SchedulePlan, window_text
from chamberlain.schedule.policy import (
    CATCH_UP_LIMIT,
    Fire,
    IfRunning,
    place,
    sort_backlog,
)
from chamberlain.schedule.timing import Timing, jitter_offset, weekday_name

#: A fire this close to its due instant is due: the wall clock and the clock its
#: owner sleeps on round differently, and waking again for a microsecond helps nobody.
EARLY: Final = 0.001
#: The ``component`` of every note.
COMPONENT: Final = "scheduler"


def schedule_fields(plugin: str, schedule_id: str) -> dict[str, str]:
    """The structured log fields that name one schedule."""
    return {"component": COMPONENT, "plugin": plugin, "schedule_id": schedule_id}


@attrs.frozen(kw_only=True)
class Note:
    """A line for the log, in :mod:`logging` terms (formatted only if emitted)."""

    level: int
    template: str
    args: tuple[object, ...] = ()
    #: The structured fields (``extra``).
    fields: Mapping[str, object]

    @property
    def text(self) -> str:
        """The message as it reads in the log."""
        return self.template % self.args


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


@attrs.frozen(kw_only=True)
class Due:
    """The fires one pass took; hand it back to :meth:`ScheduleEngine.place`."""

    #: The wall-clock time of the pass.
    at: float
    #: The schedules to place fires for, each with the fires that just fell due
    #: (their owed fires are in their books).
    fires: Mapping[ScheduleKey, tuple[Fire, ...]] = attrs.field(factory=dict)

    @property
    def keys(self) -> tuple[ScheduleKey, ...]:
        """The schedules whose outstanding jobs :meth:`ScheduleEngine.place` needs."""
        return tuple(self.fires)


@attrs.frozen(kw_only=True)
class ScheduledRun:
    """A job to enqueue, and the fire it runs."""

    job: NewJob
    fire: Fire


@attrs.frozen(kw_only=True)
class Commit:
    """What the store saves in one transaction: new jobs and the records of them."""

    at: float
    runs: tuple[ScheduledRun, ...] = ()
    books: tuple[ScheduleBook, ...] = ()
    breakers: tuple[BreakerBook, ...] = ()
    #: Books and breakers of schedules no longer configured.
    forget: tuple[ScheduleKey, ...] = ()
    forget_breakers: tuple[BreakerKey, ...] = ()

    @property
    def jobs(self) -> tuple[NewJob, ...]:
        """The jobs to enqueue, in order."""
        return tuple(run.job for run in self.runs)


@attrs.frozen(kw_only=True)
class Cancellation:
    """An outstanding job to cancel so that a newer fire of its schedule can run
    (``if_running: cancel``).  Report it gone with :meth:`ScheduleEngine.cancels_settled`."""

    plugin: str
    schedule_id: str
    job_id: str


@attrs.frozen(kw_only=True)
class Step:
    """The actions of one pass, to be carried out in order."""

    #: None when nothing changed.
    commit: Commit | None = None
    #: To be sent once the commit is saved.
    cancels: tuple[Cancellation, ...] = ()


@attrs.define(eq=False)
class _Slot:
    """One schedule at run time: its plan, timing and books."""

    plan: SchedulePlan
    timing: Timing
    book: ScheduleBook
    #: When the next run starts (jitter included); None when it never will again.
    #: Minus infinity until the first look, so the first pass handles everything.
    due_at: float | None = -math.inf
    #: Outstanding jobs this schedule is cancelling to make room.
    cancelling: set[str] = attrs.field(factory=set)


@attrs.define(eq=False)
class ScheduleEngine:
    """The state and decisions of the schedules in :attr:`plans`; see the module docstring.

    The counters and the pause outlive :meth:`load`, which a restarted owner calls
    again; everything else starts over from the books it is given.  :meth:`replace`
    swaps :attr:`plans` while it runs.
    """

    plans: tuple[SchedulePlan, ...]
    #: Seeds the jitter, so each run's delay is the same after a restart.
    seed: str = "chamberlain"
    enqueued: int = attrs.field(default=0, init=False)
    skipped: int = attrs.field(default=0, init=False)
    missed: int = attrs.field(default=0, init=False)
    _started_at: float | None = attrs.field(default=None, init=False)
    _slots: dict[ScheduleKey, _Slot] = attrs.field(factory=dict, init=False)
    _breakers: dict[BreakerKey, Breaker] = attrs.field(factory=dict, init=False)
    _policies: dict[BreakerKey, BreakerPolicy] = attrs.field(factory=dict, init=False)
    _dirty: set[ScheduleKey] = attrs.field(factory=set, init=False)
    _dirty_breakers: set[BreakerKey] = attrs.field(factory=set, init=False)
    _forget: tuple[ScheduleKey, ...] = attrs.field(default=(), init=False)
    _forget_breakers: tuple[BreakerKey, ...] = attrs.field(default=(), init=False)
    #: Schedules with owed fires to look at again (a job of theirs finished).
    _wanted: set[ScheduleKey] = attrs.field(factory=set, init=False)
    _paused: bool = attrs.field(default=False, init=False)
    _notes: list[Note] = attrs.field(factory=list, init=False)
    #: What ``after`` counts from, for schedules added or retimed by :meth:`replace`
    #: (the others count from the start); kept across :meth:`load` like the counters.
    _origins: dict[ScheduleKey, float] = attrs.field(factory=dict, init=False)

    # -- loading ------------------------------------------------------------------------

    def load(self, stored: StoredSchedules, *, started_at: float, now: float) -> None:
        """Start from the stored books; fires due before ``started_at`` were missed."""
        # A restarted owner starts from the store: nothing of the last incarnation's
        # unsaved work survives (its callers time out and ask again).
        for pending in (self._slots, self._breakers, self._policies):
            pending.clear()
        for changed in (self._dirty, self._dirty_breakers, self._wanted):
            changed.clear()
        self._started_at = started_at
        for plan in self.plans:
            book = stored.books.get(plan.key)
            if book is None or book.spec != plan.fingerprint:
                if book is not None:
                    self._note(
                        logging.INFO,
                        "schedule %s/%s: timing changed (%s -> %s); runs of the old timing"
                        " are not caught up",
                        (plan.plugin, plan.id, book.spec, plan.fingerprint),
                        _fields(plan),
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
            origin = self._origins.get(plan.key, started_at)
            self._slots[plan.key] = _Slot(plan=plan, timing=plan.timing(origin), book=book)
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
        self._note(
            logging.INFO,
            "scheduler started: %d schedules",
            (len(self.plans),),
            {"component": COMPONENT, "schedules": len(self.plans)},
        )

    def replace(self, plans: tuple[SchedulePlan, ...], *, now: float) -> None:
        """Run ``plans`` from ``now`` on (a configuration reload), without losing
        what the schedules that stay have done.

        A schedule stays when its (plugin, id) does.  It keeps its books (what it
        fired last, the fires it holds for ``if_running`` or ``catch_up``), the jobs it
        is cancelling and its breaker, so a reload neither runs an instant twice nor
        forgets one it owes.  An unchanged plan keeps everything, its next run
        included.  A changed timing is handled as :meth:`load` handles it: its books
        start afresh from ``now`` (nothing of the old timing is caught up); a changed
        ``jitter`` only moves its next run.  Any other change (payload, policies,
        breaker settings) applies from its next fire.

        A new schedule starts as one without books does at :meth:`load`, from ``now``
        (an ``after`` counts from ``now``).  A removed one never fires again and is
        no longer reported; its books and unused breakers are dropped from the store
        with the next commit, as :meth:`load` drops those of unconfigured schedules.
        Its jobs still outstanding are left to finish.  The pause stays as it is.
        """
        if self._started_at is None:
            # Not loaded yet: load() builds the slots from the new plans.
            self.plans = plans
            return
        old = self._slots
        slots: dict[ScheduleKey, _Slot] = {}
        changes = {"added": 0, "changed": 0, "removed": 0}
        for plan in plans:
            slot = old.get(plan.key)
            if slot is None:
                slots[plan.key] = self._added(plan, now)
                changes["added"] += 1
                self._note(logging.INFO, "schedule %s/%s added", plan.key, _fields(plan))
            elif _same(slot.plan, plan):
                slot.plan = plan
                slots[plan.key] = slot
            else:
                self._retime(slot, plan, now)
                slots[plan.key] = slot
                changes["changed"] += 1
        removed = [key for key in old if key not in slots]
        for key in removed:
            self._origins.pop(key, None)
            self._note(logging.INFO, "schedule %s/%s removed", key, _fields(old[key].plan))
        changes["removed"] = len(removed)
        self.plans = plans
        self._slots = slots
        self._dirty.intersection_update(slots)
        self._wanted.intersection_update(slots)
        # Disjoint from the books to write: the store writes before it forgets.
        self._forget = (*(k for k in self._forget if k not in slots), *removed)
        self._replace_breakers(plans)
        self._note(
            logging.INFO,
            "scheduler reloaded: %d schedules (%d added, %d changed, %d removed)",
            (len(plans), changes["added"], changes["changed"], changes["removed"]),
            {"component": COMPONENT, "schedules": len(plans), **changes},
        )

    def _added(self, plan: SchedulePlan, now: float) -> _Slot:
        """The slot of a schedule a reload added: no books yet, tracked from ``now``."""
        self._origins[plan.key] = now
        book = ScheduleBook(
            plugin=plan.plugin, id=plan.id, spec=plan.fingerprint, tracked_since=now
        )
        self._dirty.add(plan.key)
        slot = _Slot(plan=plan, timing=plan.timing(now), book=book)
        slot.due_at = self._next_due(slot)
        return slot

    def _retime(self, slot: _Slot, plan: SchedulePlan, now: float) -> None:
        """Give a staying schedule its new plan, keeping its books unless the timing
        changed (then they start afresh, as :meth:`load` starts them)."""
        before = slot.plan
        slot.plan = plan
        if before.fingerprint != plan.fingerprint:
            self._note(
                logging.INFO,
                "schedule %s/%s: timing changed (%s -> %s); runs of the old timing"
                " are not caught up",
                (plan.plugin, plan.id, before.fingerprint, plan.fingerprint),
                _fields(plan),
            )
            book = slot.book
            slot.book = ScheduleBook(
                plugin=plan.plugin,
                id=plan.id,
                spec=plan.fingerprint,
                tracked_since=now,
                last_run_at=book.last_run_at,
                last_job_id=book.last_job_id,
                last_status=book.last_status,
            )
            self._dirty.add(plan.key)
            # A new ``after`` counts from the reload, not from a start long past.
            self._origins[plan.key] = now
            slot.timing = plan.timing(now)
            slot.due_at = self._next_due(slot)
            return
        self._note(logging.INFO, "schedule %s/%s changed", plan.key, _fields(plan))
        # Minus infinity: no pass has looked yet, and the first will, with the new jitter.
        if before.config.jitter != plan.config.jitter and slot.due_at != -math.inf:
            slot.due_at = self._next_due(slot)

    def _replace_breakers(self, plans: Sequence[SchedulePlan]) -> None:
        """The breakers of ``plans``: those already known keep their state and take
        the new policy; the unused are dropped."""
        breakers: dict[BreakerKey, Breaker] = {}
        policies: dict[BreakerKey, BreakerPolicy] = {}
        for plan in plans:
            key = plan.breaker_key
            if key in breakers:
                continue
            known = self._breakers.get(key)
            if known is None:
                known = Breaker()
                self._dirty_breakers.add(key)
            breakers[key] = known
            policies[key] = plan.breaker
        unused = [key for key in self._breakers if key not in breakers]
        self._breakers, self._policies = breakers, policies
        self._dirty_breakers.intersection_update(breakers)
        self._forget_breakers = (
            *(k for k in self._forget_breakers if k not in breakers),
            *unused,
        )

    # -- a pass ---------------------------------------------------------------------------

    def next_wakeup(self) -> float | None:
        """When :meth:`advance` has work next (wall clock; None: nothing ever will).

        Minus infinity right after :meth:`load`: the first pass is due at once.
        """
        dues: list[float] = []
        if not self._paused:
            dues.extend(s.due_at for s in self._slots.values() if s.due_at is not None)
        for key, breaker in self._breakers.items():
            probe = breaker.probe_at(self._policies[key])
            if probe is not None:
                dues.append(probe)
        return min(dues, default=None)

    def advance(self, now: float) -> Due:
        """Tick the breakers and take the fires due at ``now`` (after ``catch_up``)."""
        for key, breaker in self._breakers.items():
            ticked = breaker.tick(now, self._policies[key])
            if ticked is not breaker:
                self._set_breaker(key, ticked)
        work: dict[ScheduleKey, tuple[Fire, ...]] = {}
        if not self._paused:
            for key, slot in self._slots.items():
                if slot.due_at is not None and slot.due_at <= now + EARLY:
                    fires = self._take_due(slot, now)
                    if fires or slot.book.owed:
                        work[key] = fires
            for key in self._wanted:
                if self._slots[key].book.owed:
                    work.setdefault(key, ())
        self._wanted.clear()
        return Due(at=now, fires=work)

    def place(self, due: Due, outstanding: Mapping[ScheduleKey, Sequence[str]]) -> Step:
        """Decide what becomes of ``due``'s fires, given each of its schedules'
        outstanding (queued or running) job ids, oldest first."""
        runs: list[ScheduledRun] = []
        cancels: list[Cancellation] = []
        for key, fires in due.fires.items():
            slot = self._slots.get(key)
            if slot is None:
                continue  # removed by replace() since advance(): its fires go with it
            runs.extend(self._place(slot, fires, outstanding.get(key, ()), due.at, cancels))
        commit: Commit | None = None
        if runs or self._dirty or self._dirty_breakers or self._forget or self._forget_breakers:
            commit = Commit(
                at=due.at,
                runs=tuple(runs),
                books=tuple(self._slots[k].book for k in self._dirty if k in self._slots),
                breakers=tuple(
                    BreakerBook(plugin=k[0], command=k[1], breaker=self._breakers[k])
                    for k in self._dirty_breakers
                ),
                forget=self._forget,
                forget_breakers=self._forget_breakers,
            )
            # Whatever happens to the commit, the owner either reports it saved or
            # starts over with load().
            self._dirty.clear()
            self._dirty_breakers.clear()
            self._forget = self._forget_breakers = ()
        return Step(commit=commit, cancels=tuple(cancels))

    def committed(self, commit: Commit) -> None:
        """The store saved ``commit``: its jobs are enqueued."""
        self.enqueued += len(commit.runs)
        for run in commit.runs:
            job, fire = run.job, run.fire
            self._note(
                logging.INFO,
                "scheduled run of %s/%s enqueued: %s for %s, %.0f ms after%s",
                (
                    job.plugin,
                    job.schedule_id,
                    job.command,
                    rfc3339(fire.nominal),
                    max(0.0, commit.at - fire.nominal) * 1000,
                    " (catch-up)" if fire.late else "",
                ),
                {
                    "component": COMPONENT,
                    "plugin": job.plugin,
                    "job_id": job.id,
                    "schedule_id": job.schedule_id,
                },
            )

    # -- events ---------------------------------------------------------------------------

    def settled(self, job: Job, *, now: float) -> None:
        """A scheduled job reached a terminal status: feed its breaker, free its place."""
        assert job.schedule_id is not None
        key = (job.plugin, job.command)
        if key in self._breakers:
            self._set_breaker(
                key,
                self._breakers[key].record(
                    job_id=job.id,
                    status=job.status,
                    error=job.last_error,
                    now=now,
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

    def cancels_settled(self, key: ScheduleKey, job_ids: Iterable[str]) -> None:
        """Jobs :meth:`place` asked to cancel are gone (or given up on)."""
        slot = self._slots.get(key)
        if slot is None:
            return
        slot.cancelling.difference_update(job_ids)
        if slot.book.owed:
            self._wanted.add(slot.plan.key)

    def reset_breaker(self, key: ScheduleKey, *, by: str, now: float) -> bool:
        """Close the breaker of schedule ``key``; False when there is no such schedule.

        The reset is durable once the next commit is saved.
        """
        slot = self._slots.get(key)
        if slot is None:
            return False
        breaker_key = slot.plan.breaker_key
        self._set_breaker(
            breaker_key, self._breakers[breaker_key].reset(now=now, reason=f"reset by {by}")
        )
        # Written even when already closed: the failure count went back to zero.
        self._dirty_breakers.add(breaker_key)
        return True

    def pause(self) -> None:
        """Enqueue nothing any more (the daemon drains); breakers still tick."""
        if not self._paused:
            self._note(
                logging.INFO,
                "scheduler paused: the daemon is draining",
                (),
                {"component": COMPONENT},
            )
        self._paused = True

    # -- reporting ------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True once :meth:`pause` was called."""
        return self._paused

    def take_notes(self) -> tuple[Note, ...]:
        """What happened since the last call, for the log, oldest first."""
        notes = tuple(self._notes)
        self._notes.clear()
        return notes

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

    def statuses(self) -> tuple[ScheduleStatus, ...]:
        """Every schedule as ``GET /schedules`` shows it, in plan order."""
        return tuple(self._status(slot) for slot in self._slots.values())

    def status(self, key: ScheduleKey) -> ScheduleStatus | None:
        """Schedule ``key`` as ``GET /schedules`` shows it (None when unknown)."""
        slot = self._slots.get(key)
        return None if slot is None else self._status(slot)

    # -- decisions ------------------------------------------------------------------------

    def _due_at(self, slot: _Slot, nominal: float) -> float:
        jitter = slot.plan.config.jitter
        if jitter <= 0:
            return nominal
        following = slot.timing.next_after(nominal)
        room = None if following is None else following - nominal
        key = f"{slot.plan.plugin}/{slot.plan.id}"
        return nominal + jitter_offset(key, nominal, jitter, seed=self.seed, room=room)

    def _take_due(self, slot: _Slot, now: float) -> tuple[Fire, ...]:
        """The fires of ``slot`` that fell due, after ``catch_up``; sets its next run."""
        assert self._started_at is not None
        plan, book = slot.plan, slot.book
        found, more = slot.timing.recent(after=book.watermark, upto=now, limit=CATCH_UP_LIMIT)
        due = [f for f in found if self._due_at(slot, f) <= now + EARLY]
        waiting = [f for f in found if f not in due]
        runs: tuple[Fire, ...] = ()
        if due:
            backlog = sort_backlog(
                due,
                now=now,
                started_at=self._started_at,
                due_at=lambda f: self._due_at(slot, f),
                policy=plan.config.catch_up,
                more=more,
            )
            runs = backlog.runs
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
                self._note(
                    logging.WARNING,
                    "schedule %s/%s: %s",
                    (plan.plugin, plan.id, reason),
                    _fields(plan),
                )
            slot.book = book
            self._dirty.add(plan.key)
        if waiting:
            slot.due_at = self._due_at(slot, waiting[0])
        else:
            slot.due_at = self._next_due(slot)
        return runs

    def _next_due(self, slot: _Slot) -> float | None:
        """When the slot's first instant not handled yet starts (None: never)."""
        following = slot.timing.next_after(slot.book.watermark)
        return None if following is None else self._due_at(slot, following)

    def _place(
        self,
        slot: _Slot,
        fires: Sequence[Fire],
        outstanding: Sequence[str],
        now: float,
        cancels: list[Cancellation],
    ) -> list[ScheduledRun]:
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
        runs: list[ScheduledRun] = []
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
            runs.append(ScheduledRun(job=job, fire=fire))
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
        cancels.extend(
            Cancellation(plugin=plan.plugin, schedule_id=plan.id, job_id=victim)
            for victim in victims
        )
        self._dirty.add(plan.key)
        return runs

    def _skip(self, slot: _Slot, fire: Fire, reason: str) -> None:
        self.skipped += 1
        slot.book = attrs.evolve(slot.book, last_skip_at=fire.nominal, last_skip_reason=reason)
        self._note(
            logging.INFO,
            "schedule %s/%s: run for %s skipped: %s",
            (slot.plan.plugin, slot.plan.id, rfc3339(fire.nominal), reason),
            _fields(slot.plan),
        )

    def _set_breaker(self, key: BreakerKey, breaker: Breaker) -> None:
        before = self._breakers[key]
        if breaker == before:
            return
        self._breakers[key] = breaker
        self._dirty_breakers.add(key)
        if breaker.state is not before.state and breaker.transitions:
            step = breaker.transitions[-1]
            self._note(
                logging.WARNING,
                "circuit breaker for %s/%s: %s -> %s: %s",
                (key[0], key[1], step.source.value, step.target.value, step.reason),
                {"component": COMPONENT, "plugin": key[0], "command": key[1]},
            )

    def _note(
        self, level: int, template: str, args: tuple[object, ...], fields: Mapping[str, object]
    ) -> None:
        self._notes.append(Note(level=level, template=template, args=args, fields=fields))

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


def _fields(plan: SchedulePlan) -> dict[str, str]:
    return schedule_fields(plan.plugin, plan.id)


def _same(before: SchedulePlan, after: SchedulePlan) -> bool:
    """True when a reload left the schedule exactly as it was (plans compare by
    identity, and a reload builds new ones)."""
    return (
        before.plugin == after.plugin
        and before.config == after.config
        and before.zone_name == after.zone_name
        and before.max_attempts == after.max_attempts
        and before.breaker == after.breaker
    )
