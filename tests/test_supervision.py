from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from chamberlain.supervision import (
    ChildSpec,
    Restart,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
)
from chamberlain.supervision._decisions import (
    RestartIntensity,
    affected_siblings,
    backoff_delay,
    should_restart,
    split_failure,
)

# Virtual seconds: on the autojump clock a test that waits for something that never
# happens fails with TooSlowError at once instead of hanging.
TIMEOUT = 600

# What an actor does in one incarnation: "wait" until told (the default once the
# script runs out), "crash" or "return" right after becoming ready, "fail-early"
# (raise before calling started()), or a float: crash after that many seconds up.
Step = str | float


@attrs.define(eq=False)
class World:
    """A journal of what the actors did, and a way to wait for the journal to change."""

    journal: list[str] = attrs.Factory(list)
    _changed: trio.Event = attrs.Factory(trio.Event)

    def note(self, entry: str) -> None:
        self.journal.append(entry)
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def actor(self, name: str, *script: Step, startup: float = 0.0, cleanup: float = 0.0) -> Actor:
        return Actor(world=self, name=name, script=list(script), startup=startup, cleanup=cleanup)


@attrs.define(eq=False, kw_only=True)
class Actor:
    """A child whose fate the test decides, and which keeps a record of its lives."""

    world: World
    name: str
    script: list[Step]
    # Seconds between being started and calling started().
    startup: float = 0.0
    # Seconds of shielded cleanup after being cancelled.
    cleanup: float = 0.0
    starts: list[float] = attrs.Factory(list)
    ready_at: list[float] = attrs.Factory(list)
    cancelled_at: list[float] = attrs.Factory(list)
    alive: int = 0
    _command: trio.Event = attrs.Factory(trio.Event)
    _fate: str = "return"

    @property
    def incarnations(self) -> int:
        return len(self.starts)

    def crash(self) -> None:
        self._fate = "crash"
        self._command.set()

    async def __call__(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.starts.append(trio.current_time())
        self.world.note(f"start {self.name}")
        step = self.script.pop(0) if self.script else "wait"
        if self.startup:
            await trio.sleep(self.startup)
        if step == "fail-early":
            raise ValueError(f"{self.name} cannot start")
        command = self._command = trio.Event()
        self.alive += 1
        self.ready_at.append(trio.current_time())
        task_status.started(self.incarnations)
        self.world.note(f"ready {self.name}")
        try:
            if isinstance(step, float):
                await trio.sleep(step)
                raise ValueError(f"{self.name} boom")
            if step == "crash":
                raise ValueError(f"{self.name} boom")
            if step == "return":
                return
            await command.wait()
            if self._fate == "crash":
                raise ValueError(f"{self.name} boom")
        except trio.Cancelled:
            self.cancelled_at.append(trio.current_time())
            self.world.note(f"cancelled {self.name}")
            with trio.CancelScope(shield=True):
                await trio.sleep(self.cleanup)
            raise
        finally:
            self.alive -= 1
            self.world.note(f"end {self.name}")


def spec(actor: Actor, **kwargs: Any) -> ChildSpec:
    return ChildSpec(id=actor.name, start=actor, **kwargs)


def nested(supervisor: Supervisor, **kwargs: Any) -> ChildSpec:
    return ChildSpec(
        id=supervisor.name, start=supervisor.run, statistics=supervisor.statistics, **kwargs
    )


@asynccontextmanager
async def supervising(supervisor: Supervisor) -> AsyncIterator[None]:
    """Run ``supervisor`` while the body runs, then stop it."""
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            assert await nursery.start(supervisor.run) is supervisor
            yield
            await supervisor.stop()


@pytest.fixture
def world() -> World:
    return World()


# --- decisions, without any async -------------------------------------------------


@pytest.mark.parametrize(
    ("consecutive", "expected"),
    [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.4), (6, 3.2), (7, 5.0), (10**6, 5.0)],
)
def test_backoff_doubles_from_initial_up_to_maximum(consecutive: int, expected: float) -> None:
    assert backoff_delay(consecutive, initial=0.1, maximum=5.0) == pytest.approx(expected)


def test_intensity_gives_up_on_the_restart_beyond_the_limit_within_the_period() -> None:
    window = RestartIntensity(intensity=3, period=5.0)
    assert [window.record(t, "a") for t in (0.0, 1.0, 2.0)] == [False, False, False]
    assert window.record(3.0, "a") is True
    assert window.restarts == 4
    assert window.only_child() == "a"


def test_intensity_forgets_restarts_once_they_are_a_period_old() -> None:
    window = RestartIntensity(intensity=2, period=5.0)
    assert [window.record(t, "a") for t in (0.0, 1.0)] == [False, False]
    # At 5.0 the restart at 0.0 has left the window; at 5.5 only 1.0 is still in it.
    assert window.record(5.0, "b") is False
    assert window.record(6.0, "a") is False
    assert window.restarts == 2
    assert window.record(6.5, "a") is True
    assert window.only_child() is None


def test_intensity_zero_gives_up_on_the_first_restart() -> None:
    assert RestartIntensity(intensity=0, period=5.0).record(0.0, "a") is True


@pytest.mark.parametrize(
    ("restart", "crashed", "expected"),
    [
        (Restart.PERMANENT, False, True),
        (Restart.PERMANENT, True, True),
        (Restart.TRANSIENT, False, False),
        (Restart.TRANSIENT, True, True),
        (Restart.TEMPORARY, False, False),
        (Restart.TEMPORARY, True, False),
    ],
)
def test_restart_type_table(restart: Restart, crashed: bool, expected: bool) -> None:
    assert should_restart(restart, crashed=crashed) is expected


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (Strategy.ONE_FOR_ONE, []),
        (Strategy.ONE_FOR_ALL, [0, 2, 3]),
        (Strategy.REST_FOR_ONE, [2, 3]),
    ],
)
def test_strategy_picks_the_siblings_that_go_down(strategy: Strategy, expected: list[int]) -> None:
    assert affected_siblings(strategy, 1, 4) == expected


def test_split_failure_keeps_base_exceptions_out_of_crashes() -> None:
    plain = ValueError("boom")
    assert split_failure(plain) == (plain, None)
    interrupt = KeyboardInterrupt()
    assert split_failure(interrupt) == (None, interrupt)
    only_errors = ExceptionGroup("errors", [ValueError("a"), KeyError("b")])
    assert split_failure(only_errors) == (only_errors, None)

    crash, escaping = split_failure(BaseExceptionGroup("mixed", [ValueError("a"), interrupt]))
    assert isinstance(crash, ExceptionGroup)
    assert isinstance(escaping, BaseExceptionGroup)
    assert [type(e) for e in crash.exceptions] == [ValueError]
    assert escaping.exceptions == (interrupt,)


def test_specs_and_supervisors_reject_bad_configuration() -> None:
    async def child(*, task_status: trio.TaskStatus[None]) -> None:
        raise AssertionError("never started: the specs are refused first")

    with pytest.raises(ValueError, match="'/'"):
        ChildSpec(id="a/b", start=child)
    with pytest.raises(ValueError, match="duplicate child ids: a"):
        Supervisor(name="root", children=[ChildSpec(id="a", start=child)] * 2)
    with pytest.raises(ValueError, match="backoff_max"):
        Supervisor(name="root", children=[], backoff_initial=2.0, backoff_max=1.0)


# --- starting and stopping ---------------------------------------------------------


async def test_each_child_starts_only_after_the_previous_one_is_ready(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = world.actor("a", startup=1.0), world.actor("b", startup=2.0)
    c = world.actor("c")
    supervisor = Supervisor(name="root", children=[spec(a), spec(b), spec(c)])
    async with supervising(supervisor):
        assert world.journal == ["start a", "ready a", "start b", "ready b", "start c", "ready c"]
        assert b.starts[0] - a.starts[0] == pytest.approx(1.0)
        assert c.starts[0] - b.starts[0] == pytest.approx(2.0)
        assert [child.state for child in supervisor.statistics().children] == ["running"] * 3


async def test_stop_stops_children_one_at_a_time_in_reverse_start_order(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = world.actor("a", cleanup=1.0), world.actor("b", cleanup=3.0)
    c = world.actor("c", cleanup=2.0)
    supervisor = Supervisor(name="root", children=[spec(a), spec(b), spec(c)])
    async with supervising(supervisor):
        mark = len(world.journal)
    assert world.journal[mark:] == [
        "cancelled c",
        "end c",
        "cancelled b",
        "end b",
        "cancelled a",
        "end a",
    ]
    # Each child is asked only once the one after it has finished its cleanup.
    assert b.cancelled_at[0] - c.cancelled_at[0] == pytest.approx(2.0)
    assert a.cancelled_at[0] - b.cancelled_at[0] == pytest.approx(3.0)
    assert [child.state for child in supervisor.statistics().children] == ["stopped"] * 3


async def test_stop_moves_on_after_the_shutdown_timeout_but_run_still_waits(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = world.actor("a"), world.actor("b", cleanup=10.0)
    supervisor = Supervisor(name="root", children=[spec(a), spec(b, shutdown_timeout=2.0)])
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await supervisor.stop()
            # stop() returns only once run() has, and run() outlives no child.
            assert (a.alive, b.alive) == (0, 0)
    assert a.cancelled_at[0] - b.cancelled_at[0] == pytest.approx(2.0)
    assert world.journal[-3:] == ["cancelled a", "end a", "end b"]


async def test_stop_is_idempotent_and_works_from_any_task(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a = world.actor("a")
    supervisor = Supervisor(name="root", children=[spec(a)])
    await supervisor.stop()  # not running yet: nothing to do
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            nursery.start_soon(supervisor.stop)
            await supervisor.stop()
            await supervisor.stop()
    assert world.journal.count("cancelled a") == 1
    assert a.alive == 0


async def test_stop_while_children_are_still_starting_ends_the_run_normally(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    slow, never = world.actor("slow", startup=100.0), world.actor("never")
    supervisor = Supervisor(name="root", children=[spec(slow), spec(never)])

    async def stop_once_starting() -> None:
        await world.until(lambda: slow.incarnations == 1)
        await supervisor.stop()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_once_starting)
            assert await nursery.start(supervisor.run) is supervisor
    assert trio.current_time() < 100.0
    assert (slow.ready_at, never.incarnations) == ([], 0)


async def test_run_refuses_to_run_twice_at_once(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    supervisor = Supervisor(name="root", children=[spec(world.actor("a"))])
    async with supervising(supervisor):
        with pytest.raises(RuntimeError, match="already running"):
            await supervisor.run()


# --- strategies --------------------------------------------------------------------


async def test_one_for_one_restarts_only_the_crashed_child(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, c = world.actor("a"), world.actor("b"), world.actor("c")
    supervisor = Supervisor(name="root", children=[spec(a), spec(b), spec(c)])
    async with supervising(supervisor):
        b.crash()
        await world.until(lambda: b.incarnations == 2 and b.alive == 1)
        assert (a.incarnations, c.incarnations) == (1, 1)
        assert (a.alive, c.alive) == (1, 1)
        assert "cancelled a" not in world.journal
        assert "cancelled c" not in world.journal
        assert supervisor.statistics().restart_counts() == {"root/a": 0, "root/b": 1, "root/c": 0}


async def test_one_for_all_stops_the_others_in_reverse_then_restarts_all_in_order(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, c = world.actor("a"), world.actor("b"), world.actor("c")
    supervisor = Supervisor(
        name="root", strategy=Strategy.ONE_FOR_ALL, children=[spec(a), spec(b), spec(c)]
    )
    async with supervising(supervisor):
        mark = len(world.journal)
        b.crash()
        await world.until(lambda: all(x.incarnations == 2 and x.alive for x in (a, b, c)))
        assert world.journal[mark:] == [
            "end b",
            "cancelled c",
            "end c",
            "cancelled a",
            "end a",
            "start a",
            "ready a",
            "start b",
            "ready b",
            "start c",
            "ready c",
        ]
        assert supervisor.statistics().restart_counts() == {"root/a": 1, "root/b": 1, "root/c": 1}


async def test_rest_for_one_restarts_the_crashed_child_and_those_after_it(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, c, d = (world.actor(name) for name in "abcd")
    supervisor = Supervisor(
        name="root",
        strategy=Strategy.REST_FOR_ONE,
        children=[spec(a), spec(b), spec(c), spec(d)],
    )
    async with supervising(supervisor):
        mark = len(world.journal)
        b.crash()
        await world.until(lambda: all(x.incarnations == 2 and x.alive for x in (b, c, d)))
        assert world.journal[mark:] == [
            "end b",
            "cancelled d",
            "end d",
            "cancelled c",
            "end c",
            "start b",
            "ready b",
            "start c",
            "ready c",
            "start d",
            "ready d",
        ]
        assert (a.incarnations, a.alive) == (1, 1)


async def test_a_group_restart_leaves_temporary_and_finished_siblings_down(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    temporary, a = world.actor("t"), world.actor("a")
    finished, last = world.actor("f", "return"), world.actor("z")
    supervisor = Supervisor(
        name="root",
        strategy=Strategy.ONE_FOR_ALL,
        children=[
            spec(temporary, restart=Restart.TEMPORARY),
            spec(a),
            spec(finished, restart=Restart.TRANSIENT),
            spec(last),
        ],
    )
    async with supervising(supervisor):
        a.crash()
        # "z" is restarted last, so the whole group restart is over once it is up.
        await world.until(lambda: last.incarnations == 2 and last.alive == 1)
        states = {child.id: child.state for child in supervisor.statistics().children}
        assert states == {"t": "stopped", "a": "running", "f": "exited", "z": "running"}
        assert (temporary.incarnations, a.incarnations, finished.incarnations) == (1, 2, 1)
        assert "cancelled t" in world.journal


# --- restart types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "step", "restarted"),
    [
        (Restart.PERMANENT, "return", True),
        (Restart.PERMANENT, "crash", True),
        (Restart.TRANSIENT, "return", False),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TEMPORARY, "return", False),
        (Restart.TEMPORARY, "crash", False),
    ],
)
async def test_restart_type_decides_what_an_exit_leads_to(
    world: World,
    autojump_clock: trio.testing.MockClock,
    restart: Restart,
    step: str,
    restarted: bool,
) -> None:
    a = world.actor("a", step)
    supervisor = Supervisor(name="root", children=[spec(a, restart=restart)])
    async with supervising(supervisor):
        # Deliberately past every backoff: a restart that is coming has happened by now.
        await trio.sleep(60)
        (child,) = supervisor.statistics().children
        assert a.incarnations == (2 if restarted else 1)
        assert child.state == ("running" if restarted else "exited")
        assert child.restarts == (1 if restarted else 0)
        assert child.last_error == ("ValueError: a boom" if step == "crash" else None)


# --- intensity and backoff ---------------------------------------------------------


async def test_exceeding_the_intensity_gives_up_after_stopping_every_child(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, c = world.actor("a"), world.actor("b", *["crash"] * 10), world.actor("c")
    supervisor = Supervisor(
        name="root", children=[spec(a), spec(b), spec(c)], intensity=2, period=5.0
    )
    with trio.fail_after(TIMEOUT), pytest.raises(SupervisorGaveUp) as caught:
        await supervisor.run()
    error = caught.value
    assert (error.supervisor, error.child_id, error.restarts, error.period) == ("root", "b", 3, 5.0)
    assert str(error) == "supervisor 'root' gave up: child 'b' crashed 3 times within 5s"
    assert isinstance(error.__cause__, ValueError)
    assert str(error.__cause__) == "b boom"
    assert b.incarnations == 3
    assert world.journal[-4:] == ["cancelled c", "end c", "cancelled a", "end a"]
    assert (a.alive, b.alive, c.alive) == (0, 0, 0)
    assert [child.state for child in supervisor.statistics().children] == ["stopped"] * 3


async def test_restarts_spread_wider_than_the_period_never_give_up(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a = world.actor("a", *[6.0] * 5)
    supervisor = Supervisor(name="root", children=[spec(a)], intensity=1, period=5.0)
    async with supervising(supervisor):
        await world.until(lambda: a.incarnations == 6 and a.alive == 1)
        assert supervisor.statistics().children[0].restarts == 5


async def test_the_same_restarts_closer_together_give_up(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a = world.actor("a", *[1.0] * 5)
    supervisor = Supervisor(name="root", children=[spec(a)], intensity=1, period=5.0)
    with trio.fail_after(TIMEOUT), pytest.raises(SupervisorGaveUp):
        await supervisor.run()
    assert a.incarnations == 2


async def test_backoff_doubles_and_resets_once_the_child_stayed_up_past_the_period(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a = world.actor("a", *["crash"] * 5, 6.0, "crash")
    supervisor = Supervisor(
        name="root",
        children=[spec(a)],
        intensity=100,
        period=5.0,
        backoff_initial=0.1,
        backoff_max=1.0,
    )
    async with supervising(supervisor):
        await world.until(lambda: a.incarnations == 8 and a.alive == 1)
    gaps = [later - earlier for earlier, later in itertools.pairwise(a.starts)]
    # 0.1 doubling to the 1.0 cap; then 6s up (> period) and a restart after 0.1 again.
    assert gaps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 6.0 + 0.1, 0.2])


async def test_failing_before_started_is_a_crash_and_later_children_wait(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = world.actor("a"), world.actor("b", "fail-early", "fail-early")
    c = world.actor("c")
    supervisor = Supervisor(name="root", children=[spec(a), spec(b), spec(c)])
    async with supervising(supervisor):
        assert (a.incarnations, b.incarnations, c.incarnations) == (1, 3, 1)
        assert c.starts[0] >= b.ready_at[0]
        child = supervisor.statistics().children[1]
        assert (child.state, child.restarts) == ("running", 2)
        assert child.last_error == "ValueError: b cannot start"


async def test_a_child_that_can_never_start_makes_the_supervisor_give_up(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a = world.actor("a", *["fail-early"] * 10)
    supervisor = Supervisor(name="root", children=[spec(a)], intensity=3)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            # Raised out of nursery.start(): the supervisor never became ready.
            with pytest.raises(SupervisorGaveUp, match="child 'a' crashed 4 times"):
                await nursery.start(supervisor.run)
    assert a.incarnations == 4


# --- what is not a crash -----------------------------------------------------------


async def test_cancelled_inside_a_childs_exception_group_is_not_swallowed(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    calls = 0

    async def failing_cleanup() -> None:
        try:
            world.note("armed")
            await trio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    async def grouped(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal calls
        calls += 1
        task_status.started()
        # Cancelling this nursery yields a group of Cancelled and ValueError.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(failing_cleanup)

    supervisor = Supervisor(name="root", children=[ChildSpec(id="grouped", start=grouped)])
    with trio.fail_after(TIMEOUT):
        with trio.CancelScope() as outer:
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.run)
                await world.until(lambda: "armed" in world.journal)
                outer.cancel()
    # Only cancellation came out (no ValueError group), and nothing was restarted.
    assert outer.cancelled_caught
    assert calls == 1
    assert supervisor.statistics().children[0].restarts == 0


class Fatal(BaseException):
    pass


async def test_base_exceptions_inside_a_group_propagate_instead_of_restarting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def fatal(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal calls
        calls += 1
        task_status.started()
        raise BaseExceptionGroup("both", [ValueError("ordinary"), Fatal()])

    supervisor = Supervisor(name="root", children=[ChildSpec(id="fatal", start=fatal)])
    with trio.fail_after(TIMEOUT), pytest.RaisesGroup(Fatal, flatten_subgroups=True):
        await supervisor.run()
    assert calls == 1


# --- statistics and logging --------------------------------------------------------


async def test_statistics_count_restarts_per_child_and_nest(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    x, y, a = world.actor("x"), world.actor("y"), world.actor("a")
    runners = Supervisor(name="runners", children=[spec(x), spec(y)])
    root = Supervisor(name="root", children=[spec(a), nested(runners)])
    async with supervising(root):
        x.crash()
        await world.until(lambda: x.incarnations == 2 and x.alive == 1)
        x.crash()
        await world.until(lambda: x.incarnations == 3 and x.alive == 1)
        a.crash()
        await world.until(lambda: a.incarnations == 2 and a.alive == 1)
        stats = root.statistics()

    assert stats.name == "root"
    assert stats.restarts_total == 3
    assert stats.restart_counts() == {
        "root/a": 1,
        "root/runners": 0,
        "root/runners/x": 2,
        "root/runners/y": 0,
    }
    a_stats, runners_stats = stats.children
    assert (a_stats.state, a_stats.restarts) == ("running", 1)
    assert a_stats.last_error == "ValueError: a boom"
    assert a_stats.started_at == a.ready_at[-1]
    assert runners_stats.children is not None
    assert runners_stats.children.restarts_total == 2
    x_stats, y_stats = runners_stats.children.children
    assert (x_stats.restarts, x_stats.last_error) == (2, "ValueError: x boom")
    assert (y_stats.restarts, y_stats.last_error) == (0, None)
    assert [child.state for child in root.statistics().children] == ["stopped"] * 2


async def test_a_nested_supervisor_that_gives_up_is_restarted_by_its_parent(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    x = world.actor("x", "crash")
    runners = Supervisor(name="runners", children=[spec(x)], intensity=0)
    root = Supervisor(name="root", children=[nested(runners)])
    async with supervising(root):
        await world.until(lambda: x.incarnations == 2 and x.alive == 1)
        stats = root.statistics()
    (runners_stats,) = stats.children
    assert runners_stats.restarts == 1
    assert runners_stats.last_error == (
        "SupervisorGaveUp: supervisor 'runners' gave up: child 'x' crashed 1 time within 5s"
    )
    assert stats.restart_counts() == {"root/runners": 1, "root/runners/x": 0}


async def test_crashes_restarts_and_giving_up_are_logged_with_context(
    world: World, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chamberlain.supervision")
    a = world.actor("a", "crash", "crash")
    supervisor = Supervisor(name="root", children=[spec(a)], intensity=1)
    with trio.fail_after(TIMEOUT), pytest.raises(SupervisorGaveUp):
        await supervisor.run()

    records = [r for r in caplog.records if r.name == "chamberlain.supervision"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("ERROR", "child 'a' of supervisor 'root' crashed"),
        ("WARNING", "supervisor 'root' restarting 'a' in 0.1s (restart 1 in a row of 'a')"),
        ("ERROR", "child 'a' of supervisor 'root' crashed"),
        ("ERROR", "supervisor 'root' gave up: child 'a' crashed 2 times within 5s"),
    ]
    for record in records:
        assert record.__dict__["component"] == "supervisor"
        assert record.__dict__["supervisor"] == "root"
        assert record.__dict__["child"] == "a"
    crash = records[0].exc_info
    assert crash is not None
    assert isinstance(crash[1], ValueError)


async def test_a_crash_during_a_dependent_start_interrupts_it_instead_of_wedging(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rest_for_one: b's start waits for an answer from a, and a dies before answering.

    Without the interruption the supervisor would wait for b forever, because it
    handles a's exit only once b is up, and b is up only once a answers.
    """
    lives = {"a": 0, "b": 0}
    mailbox_tx, mailbox_rx = trio.open_memory_channel[trio.MemorySendChannel[str]](10)

    async def a(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        lives["a"] += 1
        task_status.started()
        async for reply in mailbox_rx:
            if lives["a"] == 1:
                raise RuntimeError("a dies before answering")
            reply.send_nowait("ok")

    async def b(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        lives["b"] += 1
        reply_tx, reply_rx = trio.open_memory_channel[str](1)
        await mailbox_tx.send(reply_tx)
        assert await reply_rx.receive() == "ok"
        task_status.started()
        await trio.sleep_forever()

    supervisor = Supervisor(
        name="root",
        children=[ChildSpec(id="a", start=a), ChildSpec(id="b", start=b)],
        strategy=Strategy.REST_FOR_ONE,
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(TIMEOUT):
            await nursery.start(supervisor.run)
        counts = supervisor.statistics().restart_counts()
        states = [child.state for child in supervisor.statistics().children]
        await supervisor.stop()
    assert lives == {"a": 2, "b": 2}
    assert counts == {"root/a": 1, "root/b": 0}  # b never became ready the first time
    assert states == ["running", "running"]


# --- dynamic children --------------------------------------------------------------


def ids(supervisor: Supervisor) -> list[str]:
    return [child.id for child in supervisor.statistics().children]


async def test_start_child_on_a_running_supervisor_returns_once_it_is_ready(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = world.actor("a"), world.actor("b", startup=3.0)
    supervisor = Supervisor(name="root", children=[spec(a)])
    async with supervising(supervisor):
        before = trio.current_time()
        await supervisor.start_child(spec(b))
        assert trio.current_time() - before == pytest.approx(3.0)
        assert (b.alive, len(b.ready_at)) == (1, 1)
        assert ids(supervisor) == ["a", "b"]
        assert [child.id for child in supervisor.children] == ["a", "b"]
        assert supervisor.statistics().children[1].state == "running"

        b.crash()
        await world.until(lambda: b.incarnations == 2 and b.alive == 1)
        assert (a.incarnations, a.alive) == (1, 1)
        assert supervisor.statistics().restart_counts() == {"root/a": 0, "root/b": 1}
    # Stopped like a static child, and before the children started earlier.
    assert world.journal[-4:] == ["cancelled b", "end b", "cancelled a", "end a"]


async def test_start_child_refuses_an_id_that_is_taken(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = world.actor("a", "return"), world.actor("b")
    supervisor = Supervisor(name="root", children=[spec(a, restart=Restart.TRANSIENT)])
    with pytest.raises(ValueError, match="already has a child 'a'"):
        await supervisor.start_child(spec(world.actor("a")))
    async with supervising(supervisor):
        await supervisor.start_child(spec(b))
        # Taken whatever the state: "a" has exited for good, "b" runs.
        assert [child.state for child in supervisor.statistics().children] == [
            "exited",
            "running",
        ]
        for name in ("a", "b"):
            with pytest.raises(ValueError, match=f"already has a child '{name}'"):
                await supervisor.start_child(spec(world.actor(name)))
        assert ids(supervisor) == ["a", "b"]
        assert b.incarnations == 1


async def test_start_child_before_run_is_started_after_the_static_children(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, c = world.actor("a"), world.actor("b"), world.actor("c")
    supervisor = Supervisor(name="root", children=[spec(a), spec(b)])
    await supervisor.start_child(spec(c))
    assert c.incarnations == 0
    assert supervisor.statistics().children[2].state == "stopped"
    async with supervising(supervisor):
        assert world.journal == ["start a", "ready a", "start b", "ready b", "start c", "ready c"]
        assert ids(supervisor) == ["a", "b", "c"]


async def test_a_started_child_failing_before_ready_is_restarted_with_backoff(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = world.actor("a"), world.actor("b", "fail-early", "fail-early")
    supervisor = Supervisor(name="root", children=[spec(a)])
    async with supervising(supervisor):
        # Returns after the first failed start, without raising it.
        await supervisor.start_child(spec(b))
        assert (b.incarnations, b.ready_at) == (1, [])
        assert supervisor.statistics().children[1].state == "restarting"

        await world.until(lambda: b.alive == 1)
        gaps = [later - earlier for earlier, later in itertools.pairwise(b.starts)]
        assert gaps == pytest.approx([0.1, 0.2])
        child = supervisor.statistics().children[1]
        assert (child.state, child.restarts) == ("running", 2)
        assert child.last_error == "ValueError: b cannot start"
        assert a.incarnations == 1


async def test_a_started_child_that_never_starts_makes_the_supervisor_give_up(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = world.actor("a"), world.actor("b", *["fail-early"] * 10)
    supervisor = Supervisor(name="root", children=[spec(a)], intensity=2)
    with trio.fail_after(TIMEOUT), pytest.RaisesGroup(SupervisorGaveUp) as caught:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await supervisor.start_child(spec(b))
            await trio.sleep_forever()
    (error,) = caught.value.exceptions
    assert isinstance(error, SupervisorGaveUp)
    assert str(error) == "supervisor 'root' gave up: child 'b' crashed 3 times within 5s"
    assert b.incarnations == 3
    assert (a.alive, a.cancelled_at != []) == (0, True)
    # It stays a child, for a parent that runs the supervisor again.
    assert ids(supervisor) == ["a", "b"]


async def test_delete_child_stops_a_running_child_and_frees_its_id(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, c = world.actor("a"), world.actor("b", cleanup=2.0), world.actor("c")
    supervisor = Supervisor(name="root", children=[spec(a), spec(b), spec(c)])
    async with supervising(supervisor):
        before = trio.current_time()
        await supervisor.delete_child("b")
        # Returns once the child's cleanup is over, as stop() would wait for it.
        assert trio.current_time() - before == pytest.approx(2.0)
        assert world.journal[-2:] == ["cancelled b", "end b"]
        assert b.alive == 0
        assert ids(supervisor) == ["a", "c"]
        assert [child.id for child in supervisor.children] == ["a", "c"]
        with pytest.raises(KeyError, match="no child 'b'"):
            await supervisor.delete_child("b")

        again = world.actor("b")
        await supervisor.start_child(spec(again))
        assert (again.alive, b.incarnations) == (1, 1)
        assert ids(supervisor) == ["a", "c", "b"]
        # A new child: restarts counted afresh, not those of the deleted one.
        assert supervisor.statistics().restart_counts()["root/b"] == 0
    assert (a.incarnations, c.incarnations) == (1, 1)


async def test_delete_child_forgets_a_transient_child_that_returned(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, retired = world.actor("a"), world.actor("retired", "return")
    supervisor = Supervisor(name="root", children=[spec(a)])
    async with supervising(supervisor):
        await supervisor.start_child(spec(retired, restart=Restart.TRANSIENT))
        await world.until(lambda: supervisor.statistics().children[1].state == "exited")
        await supervisor.delete_child("retired")
        assert ids(supervisor) == ["a"]
        assert (a.alive, retired.incarnations) == (1, 1)
        assert "cancelled retired" not in world.journal


async def test_delete_child_of_an_unknown_id_raises_key_error(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    supervisor = Supervisor(name="root", children=[spec(world.actor("a"))])
    with pytest.raises(KeyError, match="no child 'nope'"):
        await supervisor.delete_child("nope")
    async with supervising(supervisor):
        with pytest.raises(KeyError, match="no child 'nope'"):
            await supervisor.delete_child("nope")
        assert ids(supervisor) == ["a"]


async def test_delete_child_before_run_keeps_the_child_from_starting(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = world.actor("a"), world.actor("b")
    supervisor = Supervisor(name="root", children=[spec(a), spec(b)])
    await supervisor.delete_child("a")
    async with supervising(supervisor):
        assert world.journal == ["start b", "ready b"]
        assert ids(supervisor) == ["b"]


async def test_a_parent_restarting_the_supervisor_restarts_dynamic_children_not_deleted_ones(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, x = world.actor("a"), world.actor("x")
    y, z = world.actor("y"), world.actor("z")
    runners = Supervisor(name="runners", children=[spec(x)])
    root = Supervisor(
        name="root", strategy=Strategy.REST_FOR_ONE, children=[spec(a), nested(runners)]
    )
    async with supervising(root):
        await runners.start_child(spec(y))
        await runners.start_child(spec(z))
        await runners.delete_child("z")
        mark = len(world.journal)
        a.crash()
        await world.until(lambda: y.incarnations == 2 and y.alive == 1)
        # A parent cancels its child supervisor as a whole, so x and y go down at once.
        assert sorted(world.journal[mark : mark + 5]) == [
            "cancelled x",
            "cancelled y",
            "end a",
            "end x",
            "end y",
        ]
        assert world.journal[mark + 5 :] == [
            "start a",
            "ready a",
            "start x",
            "ready x",
            "start y",
            "ready y",
        ]
        assert z.incarnations == 1
        assert ids(runners) == ["x", "y"]
        assert root.statistics().restart_counts() == {
            "root/a": 1,
            "root/runners": 1,
            "root/runners/x": 0,
            "root/runners/y": 0,
        }


async def test_rest_for_one_restarts_a_child_started_later_when_a_static_one_crashes(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, c = world.actor("a"), world.actor("b"), world.actor("c")
    supervisor = Supervisor(
        name="root", strategy=Strategy.REST_FOR_ONE, children=[spec(a), spec(b)]
    )
    async with supervising(supervisor):
        await supervisor.start_child(spec(c))
        mark = len(world.journal)
        b.crash()
        await world.until(lambda: c.incarnations == 2 and c.alive == 1)
        assert world.journal[mark:] == [
            "end b",
            "cancelled c",
            "end c",
            "start b",
            "ready b",
            "start c",
            "ready c",
        ]
        assert (a.incarnations, a.alive) == (1, 1)


async def test_after_a_delete_the_strategy_sees_the_children_in_their_new_positions(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, c, d = (world.actor(name) for name in "abcd")
    supervisor = Supervisor(
        name="root",
        strategy=Strategy.REST_FOR_ONE,
        children=[spec(a), spec(b), spec(c), spec(d)],
    )
    async with supervising(supervisor):
        await supervisor.delete_child("a")
        b.crash()
        await world.until(lambda: all(x.incarnations == 2 and x.alive for x in (b, c, d)))
        assert supervisor.statistics().restart_counts() == {"root/b": 1, "root/c": 1, "root/d": 1}


async def test_start_child_does_not_hang_when_the_supervisor_is_stopped_meanwhile(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, slow = world.actor("a"), world.actor("slow", startup=100.0)
    supervisor = Supervisor(name="root", children=[spec(a)])

    async def stop_once_starting() -> None:
        await world.until(lambda: slow.incarnations == 1)
        await supervisor.stop()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            nursery.start_soon(stop_once_starting)
            await supervisor.start_child(spec(slow))
    assert trio.current_time() < 100.0
    assert slow.ready_at == []
    # Kept, and started by the next run.
    assert ids(supervisor) == ["a", "slow"]
    slow.startup = 0.0
    async with supervising(supervisor):
        assert (slow.alive, a.incarnations) == (1, 2)


async def test_start_child_does_not_hang_when_the_supervisor_gives_up_meanwhile(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, slow = world.actor("a", 5.0), world.actor("slow", startup=100.0)
    supervisor = Supervisor(
        name="root", strategy=Strategy.ONE_FOR_ALL, children=[spec(a)], intensity=0
    )
    gave_up: list[SupervisorGaveUp] = []
    returned: list[float] = []

    async def run(*, task_status: trio.TaskStatus[Supervisor]) -> None:
        try:
            await supervisor.run(task_status=task_status)
        except SupervisorGaveUp as exc:
            gave_up.append(exc)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(run)
            # a crashes while "slow" starts; under one_for_all that interrupts the start.
            await supervisor.start_child(spec(slow))
            returned.append(trio.current_time())
    assert returned == [pytest.approx(5.0)]
    assert [error.child_id for error in gave_up] == ["a"]
    assert ids(supervisor) == ["a", "slow"]


async def test_delete_child_does_not_hang_when_the_supervisor_is_stopped_meanwhile(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, stubborn = world.actor("a"), world.actor("stubborn", cleanup=100.0)
    supervisor = Supervisor(name="root", children=[spec(a), spec(stubborn, shutdown_timeout=200)])

    async def stop_once_cancelled() -> None:
        await world.until(lambda: "cancelled stubborn" in world.journal)
        await supervisor.stop()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            nursery.start_soon(stop_once_cancelled)
            await supervisor.delete_child("stubborn")
            deleted_at = trio.current_time()
    # stop() cut the wait short, and the child is gone all the same.
    assert deleted_at < 100.0
    assert ids(supervisor) == ["a"]
    assert stubborn.alive == 0


async def test_changes_asked_for_while_stopping_are_kept_for_the_next_run(
    world: World, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, late = world.actor("a", cleanup=10.0), world.actor("b"), world.actor("late")
    supervisor = Supervisor(name="root", children=[spec(a), spec(b)])
    asked: list[float] = []

    async def change_while_stopping() -> None:
        await world.until(lambda: "cancelled a" in world.journal)
        await supervisor.start_child(spec(late))
        await supervisor.delete_child("b")
        asked.append(trio.current_time())

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            nursery.start_soon(change_while_stopping)
            await supervisor.stop()
            stopped_at = trio.current_time()
    # The first call waited for the run to end rather than starting anything.
    assert asked == [pytest.approx(stopped_at)]
    assert late.incarnations == 0
    assert ids(supervisor) == ["a", "late"]
    async with supervising(supervisor):
        assert (a.alive, late.alive, b.incarnations) == (1, 1, 1)
