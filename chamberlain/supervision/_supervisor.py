from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter

import attrs
import trio

from ._child_spec import ChildSpec, Restart, Strategy, check_name
from ._decisions import (
    RestartIntensity,
    affected_siblings,
    backoff_delay,
    should_restart,
    split_failure,
)
from ._exceptions import SupervisorGaveUp
from ._statistics import ChildStatistics, SupervisorStatistics, restarts_in_tree

logger = logging.getLogger("chamberlain.supervision")


class _State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    EXITED = "exited"


@attrs.frozen
class _Exit:
    """How an incarnation that had become ready ended; ``error`` is None for a return."""

    error: Exception | None


@attrs.define(eq=False)
class _Child:
    """The supervisor's record of one child.

    Only the supervising task changes it, except that the child's own task marks it
    running when it becomes ready and sets ``exit`` when it ends. ``exit`` is the whole
    of the child-to-supervisor protocol; a slot per child (rather than a queue) means
    reports cannot pile up.
    """

    spec: ChildSpec
    index: int
    state: _State = _State.STOPPED
    scope: trio.CancelScope | None = None
    done: trio.Event | None = None
    exit: _Exit | None = None
    restarts: int = 0
    # Restarts in a row without staying up longer than the period; drives backoff.
    consecutive: int = 0
    last_error: str | None = None
    started_at: float | None = None
    # Set once the first start after start_child() is over, which lets its caller return.
    announce: trio.Event | None = None

    def statistics(self) -> ChildStatistics:
        nested = self.spec.statistics() if self.spec.statistics is not None else None
        return ChildStatistics(
            id=self.spec.id,
            state=self.state.value,
            restarts=self.restarts,
            last_error=self.last_error,
            started_at=self.started_at,
            children=nested,
        )


@attrs.define(eq=False)
class _ReadinessRelay:
    """The ``task_status`` a child sees: forwards ``started()`` and remembers the call.

    What a failure means depends on whether the child was ready: before, it is the
    answer to ``nursery.start()``; after, it is a crash to report. ``on_ready`` runs in
    the child's task, so statistics say "running" as soon as the child is, not only
    once the supervising task has been scheduled again.
    """

    _task_status: trio.TaskStatus[object]
    _on_ready: Callable[[], None]
    ready: bool = False

    def started(self, value: object = None) -> None:
        self._task_status.started(value)
        self.ready = True
        self._on_ready()


@attrs.define(eq=False, kw_only=True)
class _Change:
    """A change to the list of children, waiting for the supervising task.

    Only the supervising task may change the list while it runs, because its restart
    logic holds on to children and their indexes across awaits. ``done`` is set once
    the caller may return, and ``error`` is what it then raises.
    """

    done: trio.Event = attrs.Factory(trio.Event)
    error: Exception | None = None


@attrs.define(eq=False, kw_only=True)
class _StartChild(_Change):
    spec: ChildSpec


@attrs.define(eq=False, kw_only=True)
class _DeleteChild(_Change):
    child_id: str


class _GiveUp(Exception):
    """Unwinds the supervising task back to ``run()`` once the intensity is exceeded."""

    def __init__(self, error: SupervisorGaveUp, cause: Exception | None) -> None:
        super().__init__(error)
        self.error = error
        self.cause = cause


def _check_unique_ids(
    _instance: object,
    _attribute: attrs.Attribute[tuple[ChildSpec, ...]],
    specs: tuple[ChildSpec, ...],
) -> None:
    ids = [spec.id for spec in specs]
    duplicates = sorted({child_id for child_id in ids if ids.count(child_id) > 1})
    if duplicates:
        raise ValueError(f"duplicate child ids: {', '.join(duplicates)}")


def _as_specs(children: Sequence[ChildSpec]) -> tuple[ChildSpec, ...]:
    return tuple(children)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _call_child(
    start: Callable[..., Awaitable[object]], relay: _ReadinessRelay
) -> tuple[Exception | None, BaseException | None]:
    try:
        await start(task_status=relay)
    except BaseException as exc:
        # Returned rather than handled here, so that the caller can re-raise the part
        # that must propagate inside the child's cancel scope and outside this handler
        # (raising from inside it would chain the whole original group as context).
        return split_failure(exc)
    return None, None


@attrs.define(eq=False, kw_only=True)
class Supervisor:
    """An OTP-style supervisor for a list of trio tasks.

    ``run()`` starts the children in order, each through ``nursery.start()``, so a
    child can rely on every child before it being ready. Afterwards, when a child exits,
    its :class:`Restart` type decides whether it comes back and the :class:`Strategy`
    decides which siblings are stopped (in reverse start order) and started again with
    it (in start order). Before restarting, the supervisor waits
    ``min(backoff_max, backoff_initial * 2**(n-1))`` seconds, where ``n`` counts the
    failed child's restarts in a row; ``n`` starts over once the child has stayed up
    longer than ``period``. Siblings that had already exited for good stay down.

    Only :class:`Exception` is a crash. ``trio.Cancelled``, ``KeyboardInterrupt`` and
    other base exceptions, also when they arrive inside an exception group, propagate
    out of ``run()`` like from any nursery. A child failing before ``started()`` is a
    crash like any other, so a child that can never start makes the supervisor give up
    instead of retrying forever.

    More than ``intensity`` restarts within ``period`` seconds, counted over all
    children, make the supervisor stop every child and raise :class:`SupervisorGaveUp`
    out of ``run()``.

    A supervisor can be the child of another one (``ChildSpec(start=sup.run,
    statistics=sup.statistics)``); its parent restarts it by calling ``run()`` again.
    Each run starts with a fresh restart window and backoff, while the restart counts
    in :meth:`statistics` keep accumulating.

    Children can be added and removed at any time, as with OTP's ``start_child`` and
    ``delete_child`` (a configuration reload adds and retires Runners this way):

    * :meth:`start_child` adds a child last in start order, so under ``REST_FOR_ONE``
      it depends on every earlier child and a crash of any of them restarts it too.
    * :meth:`delete_child` stops a child if it runs and forgets it entirely.

    While the supervisor runs, both are applied by the supervising task, one at a time
    and in the order they were asked for, between handling exits; the caller waits
    until its change is done. Otherwise (before the first run, or between runs while
    a parent restarts it) the list is changed at once and the next ``run()`` starts
    what it then holds. Either way, every later run starts the current list and never
    a deleted child, and ``children`` and :meth:`statistics` list the current
    children. A child must not call :meth:`start_child` on its own supervisor before
    it called ``task_status.started()``: the supervising task is waiting for that.

    Time is read with ``trio.current_time()`` only, so everything runs on a
    ``trio.testing.MockClock``.
    """

    name: str = attrs.field(validator=check_name)
    children: tuple[ChildSpec, ...] = attrs.field(converter=_as_specs, validator=_check_unique_ids)
    strategy: Strategy = attrs.field(
        default=Strategy.ONE_FOR_ONE, validator=attrs.validators.instance_of(Strategy)
    )
    intensity: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    period: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    backoff_initial: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    backoff_max: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))

    _slots: list[_Child] = attrs.field(init=False, repr=False)
    _running: bool = attrs.field(default=False, init=False, repr=False)
    # Whether this run has called task_status.started() yet.
    _announced: bool = attrs.field(default=False, init=False, repr=False)
    # Encloses everything the supervising task does before the orderly stop, so that
    # stop() can interrupt a backoff or a child that is slow to start.
    _work_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, init=False, repr=False)
    _finished: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)
    # Set by a child's task after it records its exit, to wake the supervising task.
    _wakeup: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)
    # The child being started and the scope its start runs in; a running child whose
    # exit affects it cancels that scope (see _start_in_order).
    _starting: tuple[_Child, trio.CancelScope] | None = attrs.field(
        default=None, init=False, repr=False
    )
    _intensity: RestartIntensity = attrs.field(init=False, repr=False)
    # start_child()/delete_child() calls made while running, oldest first.
    _changes: deque[_Change] = attrs.field(factory=deque, init=False, repr=False)

    @_slots.default
    def _make_slots(self) -> list[_Child]:
        return [_Child(spec, index) for index, spec in enumerate(self.children)]

    @_intensity.default
    def _make_intensity(self) -> RestartIntensity:
        return RestartIntensity(self.intensity, self.period)

    def __attrs_post_init__(self) -> None:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max ({self.backoff_max}) is below backoff_initial "
                f"({self.backoff_initial})"
            )

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children in order, report ready with ``self``, then supervise.

        Returns normally after :meth:`stop`. Raises :class:`SupervisorGaveUp` (bare,
        not in a group) if the restart intensity is exceeded, before reporting ready if
        that happens while the children are first being started. If the caller cancels
        it, every child is cancelled at once and ``Cancelled`` propagates.
        Not reentrant: a supervisor runs at most once at a time.
        """
        if self._running:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._begin_run()
        gave_up: _GiveUp | None = None
        try:
            async with trio.open_nursery() as nursery:
                with self._work_scope:
                    try:
                        await self._supervise(nursery, task_status)
                    except _GiveUp as exc:
                        gave_up = exc
                await self._stop_all()
        finally:
            self._running = False
            self._release_callers()
            self._finished.set()
        if gave_up is not None:
            raise gave_up.error from gave_up.cause
        if not self._announced:
            # stop() came while the children were still starting. The run did end
            # normally, and whoever waits in nursery.start() is still owed started().
            task_status.started(self)

    async def stop(self) -> None:
        """Stop the children one by one in reverse start order; make ``run()`` return.

        Each child's own cancel scope is cancelled and its ``shutdown_timeout`` waited
        before the next child is asked, so a child is stopped only after the children
        started after it (which may depend on it) are gone. Returns once ``run()`` has
        finished, however it finished. Safe to call from any task, concurrently and
        more than once; does nothing if the supervisor is not running.
        """
        if not self._running:
            await trio.lowlevel.checkpoint()
            return
        finished = self._finished
        self._work_scope.cancel()
        await finished.wait()

    async def start_child(self, spec: ChildSpec) -> None:
        """Add ``spec`` as the last child, and start it if the supervisor is running.

        Raises ``ValueError`` if a child with the same id exists, in whatever state.
        While running, returns once the child called ``task_status.started()`` or
        its first start failed: a reload that adds a Runner can then route jobs to
        it. A failure is not raised here but handled like any crash (restart type,
        backoff, intensity), because the child is part of the tree from now on. If
        the supervisor stops or gives up first, returns anyway with the child kept,
        for the next run to start. Cancelling the caller does not undo the change.
        """
        if not self._running:
            self._add_slot(spec)
            await trio.lowlevel.checkpoint()
            return
        await self._submit(_StartChild(spec=spec))

    async def delete_child(self, child_id: str) -> None:
        """Stop the child ``child_id`` if it runs, then forget it.

        The child is cancelled and waited for up to its ``shutdown_timeout``, as in
        :meth:`stop`. Afterwards no run starts it, :meth:`statistics` does not list
        it and its id is free for :meth:`start_child`. Deleting a child that exited
        for good (a retired Runner that returned) only forgets it. Raises
        ``KeyError`` for an unknown id. Like :meth:`start_child`, returns if the
        supervisor stops or gives up first, with the child deleted all the same.
        """
        if not self._running:
            self._remove_slot(self._slot(child_id))
            await trio.lowlevel.checkpoint()
            return
        await self._submit(_DeleteChild(child_id=child_id))

    def has_child(self, child_id: str) -> bool:
        """Whether a child ``child_id`` is part of the tree, in whatever state."""
        return any(child.spec.id == child_id for child in self._slots)

    def statistics(self) -> SupervisorStatistics:
        """A snapshot of this supervisor and of the supervisors nested below it."""
        children = tuple(child.statistics() for child in self._slots)
        return SupervisorStatistics(
            name=self.name,
            strategy=self.strategy,
            restarts_total=restarts_in_tree(children),
            children=children,
            intensity=self.intensity,
            period=self.period,
        )

    async def _submit(self, change: _Change) -> None:
        self._changes.append(change)
        self._wakeup.set()
        await change.done.wait()
        if change.error is not None:
            raise change.error

    def _release_callers(self) -> None:
        """Let every caller waiting on this run return, now that it is over.

        Changes the supervising task did not get to are applied as if the supervisor
        had not been running, which it no longer is: the next run sees them.
        """
        for child in self._slots:
            self._announce(child)
        while self._changes:
            change = self._changes.popleft()
            try:
                if isinstance(change, _StartChild):
                    self._add_slot(change.spec)
                elif isinstance(change, _DeleteChild):
                    self._remove_slot(self._slot(change.child_id))
            except (KeyError, ValueError) as exc:
                change.error = exc
            change.done.set()

    async def _apply(self, nursery: trio.Nursery, change: _Change) -> None:
        """Apply one start_child()/delete_child() in the supervising task."""
        if isinstance(change, _StartChild):
            try:
                child = self._add_slot(change.spec)
            except ValueError as exc:
                change.error = exc
                change.done.set()
                return
            child.announce = change.done
            await self._start_in_order(nursery, [child])
        elif isinstance(change, _DeleteChild):
            try:
                child = self._slot(change.child_id)
            except KeyError as exc:
                change.error = exc
                change.done.set()
                return
            try:
                await self._stop_child(child)
            finally:
                # Also when stop() interrupts the wait: the child has been cancelled,
                # and the caller was promised that it is gone.
                self._remove_slot(child)
                change.done.set()

    def _announce(self, child: _Child) -> None:
        if child.announce is not None:
            child.announce.set()
            child.announce = None

    def _slot(self, child_id: str) -> _Child:
        for child in self._slots:
            if child.spec.id == child_id:
                return child
        raise KeyError(f"supervisor {self.name!r} has no child {child_id!r}")

    def _add_slot(self, spec: ChildSpec) -> _Child:
        if any(child.spec.id == spec.id for child in self._slots):
            raise ValueError(f"supervisor {self.name!r} already has a child {spec.id!r}")
        child = _Child(spec, len(self._slots))
        self._slots.append(child)
        self.children = (*self.children, spec)
        return child

    def _remove_slot(self, child: _Child) -> None:
        self._slots.remove(child)
        # The strategy works on positions in start order, so they must stay dense.
        for index, slot in enumerate(self._slots):
            slot.index = index
        self.children = tuple(slot.spec for slot in self._slots)

    def _begin_run(self) -> None:
        self._running = True
        self._announced = False
        self._work_scope = trio.CancelScope()
        self._finished = trio.Event()
        self._wakeup = trio.Event()
        self._intensity = RestartIntensity(self.intensity, self.period)
        for child in self._slots:
            child.state = _State.STARTING
            child.scope = None
            child.done = None
            child.exit = None
            child.consecutive = 0

    async def _supervise(
        self, nursery: trio.Nursery, task_status: trio.TaskStatus[Supervisor]
    ) -> None:
        await self._start_in_order(nursery, list(self._slots))
        task_status.started(self)
        self._announced = True
        while True:
            exited = next((child for child in self._slots if child.exit is not None), None)
            if exited is not None:
                await self._handle_exit(nursery, exited)
            elif self._changes:
                await self._apply(nursery, self._changes.popleft())
            else:
                # Replaced before waiting: a child exiting or a change asked for from
                # now on sets the new one, and nothing can run between the scans above
                # and the wait below.
                wakeup = self._wakeup = trio.Event()
                await wakeup.wait()

    async def _handle_exit(self, nursery: trio.Nursery, child: _Child) -> None:
        await self._start_in_order(nursery, await self._take_exit(child, []))

    async def _take_exit(self, child: _Child, pending: list[_Child]) -> list[_Child]:
        """Handle the exit ``child`` recorded; returns what to start next."""
        assert child.exit is not None
        error = child.exit.error
        child.exit = None
        self._note_exit(child, error)
        uptime = trio.current_time() - child.started_at if child.started_at is not None else 0.0
        return await self._after_exit(child, error, uptime, pending)

    async def _start_in_order(self, nursery: trio.Nursery, pending: list[_Child]) -> None:
        """Start ``pending`` one at a time, each once the one before it is ready.

        A child that fails to become ready goes through the same restart rules as one
        that crashes later, and may change what is still to be started.  A running
        child whose exit the strategy says affects the child being started (an
        earlier one under rest_for_one, any under one_for_all) interrupts that start:
        the start may be waiting on the very child that died (a Runner asking the
        JobStore for its orphans), and would otherwise wait forever.  The exit is
        handled first, then the interrupted child is started again in its turn.
        """
        while pending:
            exited = next((c for c in self._slots if self._affects(c, pending[0])), None)
            if exited is not None:
                pending = await self._take_exit(exited, pending)
                continue
            child, rest = pending[0], pending[1:]
            try:
                started = await self._start_child(nursery, child)
            except Exception as exc:
                self._announce(child)
                self._note_exit(child, exc, before_ready=True)
                pending = await self._after_exit(child, exc, 0.0, rest)
                continue
            if started:
                self._announce(child)
                pending = rest

    def _affects(self, exited: _Child, other: _Child) -> bool:
        """True when ``exited`` has an exit to handle that restarts ``other`` too."""
        if exited.exit is None or exited is other:
            return False
        return other.index in affected_siblings(self.strategy, exited.index, len(self._slots))

    async def _start_child(self, nursery: trio.Nursery, child: _Child) -> bool:
        """Start one incarnation; False when a sibling's exit interrupted the start."""
        child.exit = None
        child.scope = trio.CancelScope()
        child.done = trio.Event()
        child.state = _State.STARTING
        with trio.CancelScope() as starting:
            self._starting = (child, starting)
            try:
                await nursery.start(
                    self._run_child,
                    child,
                    child.scope,
                    child.done,
                    name=f"{self.name}/{child.spec.id}",
                )
            finally:
                self._starting = None
        return not starting.cancelled_caught

    async def _run_child(
        self,
        child: _Child,
        scope: trio.CancelScope,
        done: trio.Event,
        *,
        task_status: trio.TaskStatus[object],
    ) -> None:
        """One incarnation of a child, in a cancel scope of its own.

        Failures before readiness are raised, for ``nursery.start()`` to hand to the
        supervising task. Crashes after readiness are recorded in ``child.exit`` and
        never reach the nursery, which would cancel every sibling.
        """

        def mark_running() -> None:
            child.state = _State.RUNNING
            child.started_at = trio.current_time()

        relay = _ReadinessRelay(task_status, mark_running)
        crash: Exception | None = None
        try:
            with scope:
                crash, escaping = await _call_child(child.spec.start, relay)
                if escaping is not None:
                    if crash is not None:
                        logger.warning(
                            "child %r of supervisor %r raised errors alongside %s; "
                            "dropping them so that it propagates",
                            child.spec.id,
                            self.name,
                            _describe(escaping),
                            exc_info=crash,
                            extra=self._log_extra(child),
                        )
                    # Inside the scope: if it is this child's own cancellation, the
                    # scope is where it stops.
                    raise escaping
                if crash is not None and not relay.ready:
                    raise crash
        finally:
            done.set()
        if not relay.ready:
            # Returned without calling started(); nursery.start() reports that.
            return
        if scope.cancel_called:
            # The supervisor stopped it on purpose. It is not waiting for a report, and
            # may already have started a new incarnation that this one's report would
            # be taken for; an incarnation is only ever replaced after it ended by
            # itself (and reported) or was cancelled, so this check is enough.
            if crash is not None:
                logger.info(
                    "child %r of supervisor %r raised while being stopped",
                    child.spec.id,
                    self.name,
                    exc_info=crash,
                    extra=self._log_extra(child),
                )
            return
        child.exit = _Exit(crash)
        self._wakeup.set()
        if self._starting is not None and self._affects(child, self._starting[0]):
            self._starting[1].cancel()

    async def _after_exit(
        self, child: _Child, error: Exception | None, uptime: float, pending: list[_Child]
    ) -> list[_Child]:
        """Apply restart type, intensity, strategy and backoff to an exit.

        Returns the children to start next, in start order: ``pending`` plus whatever
        this exit restarts.
        """
        if not should_restart(child.spec.restart, crashed=error is not None):
            child.state = _State.EXITED
            return pending
        if uptime > self.period:
            child.consecutive = 0
        child.consecutive += 1
        if self._intensity.record(trio.current_time(), child.spec.id):
            raise _GiveUp(self._give_up(child, error), error)

        group = [child]
        stopping: list[_Child] = []
        for index in affected_siblings(self.strategy, child.index, len(self._slots)):
            sibling = self._slots[index]
            if sibling.state is not _State.RUNNING:
                continue
            if sibling.exit is not None:
                # It exited at the same moment. It goes down with the group anyway, so
                # its exit is only recorded, not handled a second time (as in OTP).
                self._note_exit(sibling, sibling.exit.error)
                sibling.exit = None
            stopping.append(sibling)
            if sibling.spec.restart is not Restart.TEMPORARY:
                group.append(sibling)
        for member in group:
            member.state = _State.RESTARTING
        for sibling in reversed(stopping):
            await self._stop_child(sibling)
            if sibling.spec.restart is Restart.TEMPORARY:
                sibling.state = _State.STOPPED

        delay = backoff_delay(
            child.consecutive, initial=self.backoff_initial, maximum=self.backoff_max
        )
        logger.warning(
            "supervisor %r restarting %s in %.3gs (restart %d in a row of %r)",
            self.name,
            ", ".join(repr(member.spec.id) for member in sorted(group, key=attrgetter("index"))),
            delay,
            child.consecutive,
            child.spec.id,
            extra=self._log_extra(child),
        )
        await trio.sleep(delay)
        for member in group:
            member.restarts += 1
        return sorted({*group, *pending}, key=attrgetter("index"))

    async def _stop_child(self, child: _Child) -> None:
        """Cancel one child and wait up to its ``shutdown_timeout`` for it to end."""
        scope, done = child.scope, child.done
        if scope is None or done is None or done.is_set():
            return
        scope.cancel()
        with trio.move_on_after(child.spec.shutdown_timeout):
            await done.wait()
        if not done.is_set():
            logger.warning(
                "child %r of supervisor %r still running %gs after being cancelled; "
                "moving on without it",
                child.spec.id,
                self.name,
                child.spec.shutdown_timeout,
                extra=self._log_extra(child),
            )

    async def _stop_all(self) -> None:
        for child in reversed(self._slots):
            if child.exit is not None:
                self._note_exit(child, child.exit.error)
                child.exit = None
            await self._stop_child(child)
            if child.state is not _State.EXITED:
                child.state = _State.STOPPED

    def _note_exit(
        self, child: _Child, error: Exception | None, *, before_ready: bool = False
    ) -> None:
        if error is None:
            logger.info(
                "child %r of supervisor %r returned",
                child.spec.id,
                self.name,
                extra=self._log_extra(child),
            )
            return
        child.last_error = _describe(error)
        logger.error(
            "child %r of supervisor %r crashed%s",
            child.spec.id,
            self.name,
            " before becoming ready" if before_ready else "",
            exc_info=error,
            extra=self._log_extra(child),
        )

    def _give_up(self, child: _Child, error: Exception | None) -> SupervisorGaveUp:
        restarts = self._intensity.restarts
        what = "crashed" if error is not None else "exited"
        within = f"within {self.period:g}s"
        if self._intensity.only_child() == child.spec.id:
            times = "time" if restarts == 1 else "times"
            reason = f"child {child.spec.id!r} {what} {restarts} {times} {within}"
        else:
            reason = f"{restarts} restarts {within}, the last after child {child.spec.id!r} {what}"
        message = f"supervisor {self.name!r} gave up: {reason}"
        logger.error("%s", message, extra=self._log_extra(child))
        return SupervisorGaveUp(
            message,
            supervisor=self.name,
            child_id=child.spec.id,
            restarts=restarts,
            period=self.period,
        )

    def _log_extra(self, child: _Child) -> dict[str, str]:
        return {"component": "supervisor", "supervisor": self.name, "child": child.spec.id}
