"""The circuit breaker that stops a failing schedule from hammering a broken plugin.

One breaker per (plugin, command), fed by the outcomes of *scheduled* jobs only and
gating only scheduled runs: a job triggered through the API is never blocked and
never counted, so an operator can always try by hand.

::

    closed ──threshold consecutive failures──▶ open ──reset_after──▶ half_open
      ▲                                          ▲                      │
      └──────── the probe succeeds ──────────────┼── the probe fails ───┘
                                                 │
    any state ──POST /schedules/{plugin}/{id}/reset──▶ closed

In ``half_open`` one scheduled run goes ahead as the probe; others are held back
until its outcome is known.  Any scheduled job that finishes while half open
decides (a success is good news whichever job brings it).  Cancelled jobs say
nothing about the plugin's health and are not counted.  Every transition is
recorded with its reason and time; the last :data:`TRANSITIONS_KEPT` are kept.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from chamberlain.config.units import format_duration
from chamberlain.records import JobStatus

TRANSITIONS_KEPT: Final = 20

_FAILURES: Final = frozenset({JobStatus.FAILED, JobStatus.DEAD, JobStatus.TIMED_OUT})


class BreakerState(enum.Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@attrs.frozen(kw_only=True)
class BreakerPolicy:
    """``plugins.<name>.circuit_breaker``."""

    enabled: bool = True
    #: Consecutive failures of scheduled jobs that open the breaker.
    threshold: int = 3
    #: How long it stays open before one probe run is let through.
    reset_after: float = 1800.0


@attrs.frozen(kw_only=True)
class Transition:
    """One change of state, and why."""

    source: BreakerState
    target: BreakerState
    reason: str
    at: float


@attrs.frozen(kw_only=True)
class Breaker:
    """A breaker's state.  Every method returns a new breaker; none does I/O."""

    state: BreakerState = BreakerState.CLOSED
    #: Consecutive failures counted so far.
    failures: int = 0
    opened_at: float | None = None
    #: The job let through as the probe while half open.
    probe_job_id: str | None = None
    transitions: tuple[Transition, ...] = ()

    def probe_at(self, policy: BreakerPolicy) -> float | None:
        """When an open breaker turns half open (None unless open)."""
        if self.state is not BreakerState.OPEN or self.opened_at is None:
            return None
        return self.opened_at + policy.reset_after

    def tick(self, now: float, policy: BreakerPolicy) -> Breaker:
        """Turn half open once ``reset_after`` has passed since the breaker opened."""
        due = self.probe_at(policy)
        if due is None or now < due:
            return self
        return self._move(
            BreakerState.HALF_OPEN,
            f"reset_after ({format_duration(policy.reset_after)}) has passed: the next scheduled"
            " run is a probe",
            now,
            failures=self.failures,
            opened_at=self.opened_at,
            probe_job_id=None,
        )

    def admits(self, policy: BreakerPolicy) -> bool:
        """Whether a scheduled run may go ahead now (call :meth:`tick` first)."""
        if not policy.enabled or self.state is BreakerState.CLOSED:
            return True
        return self.state is BreakerState.HALF_OPEN and self.probe_job_id is None

    def probing(self, job_id: str) -> Breaker:
        """Note the job let through as the probe (no change unless half open)."""
        if self.state is not BreakerState.HALF_OPEN:
            return self
        return attrs.evolve(self, probe_job_id=job_id)

    def record(
        self,
        *,
        job_id: str,
        status: JobStatus,
        error: str | None,
        now: float,
        policy: BreakerPolicy,
    ) -> Breaker:
        """Account for a scheduled job that finished with ``status``."""
        if not policy.enabled or not status.terminal:
            return self
        if status is JobStatus.CANCELLED:
            # Says nothing about the plugin; a cancelled probe frees the slot.
            if job_id == self.probe_job_id:
                return attrs.evolve(self, probe_job_id=None)
            return self
        failed = status in _FAILURES
        what = f"job {job_id} {status.value}" + (f": {error}" if failed and error else "")
        if self.state is BreakerState.OPEN:
            # Runs that started before it opened; the timer decides, not them.
            return attrs.evolve(self, failures=self.failures + 1) if failed else self
        if self.state is BreakerState.HALF_OPEN:
            if failed:
                return self._move(
                    BreakerState.OPEN,
                    f"probe failed ({what})",
                    now,
                    failures=self.failures + 1,
                    opened_at=now,
                    probe_job_id=None,
                )
            return self._move(
                BreakerState.CLOSED,
                f"probe succeeded ({what})",
                now,
                failures=0,
                opened_at=None,
                probe_job_id=None,
            )
        if not failed:
            return self if self.failures == 0 else attrs.evolve(self, failures=0)
        failures = self.failures + 1
        if failures < policy.threshold:
            return attrs.evolve(self, failures=failures)
        return self._move(
            BreakerState.OPEN,
            f"{failures} consecutive scheduled runs failed (last: {what})",
            now,
            failures=failures,
            opened_at=now,
            probe_job_id=None,
        )

    def reset(self, *, now: float, reason: str) -> Breaker:
        """Close the breaker by hand."""
        if self.state is BreakerState.CLOSED:
            return attrs.evolve(self, failures=0)
        return self._move(
            BreakerState.CLOSED, reason, now, failures=0, opened_at=None, probe_job_id=None
        )

    def _move(
        self,
        target: BreakerState,
        reason: str,
        now: float,
        *,
        failures: int,
        opened_at: float | None,
        probe_job_id: str | None,
    ) -> Breaker:
        step = Transition(source=self.state, target=target, reason=reason, at=now)
        return Breaker(
            state=target,
            failures=failures,
            opened_at=opened_at,
            probe_job_id=probe_job_id,
            transitions=(*self.transitions, step)[-TRANSITIONS_KEPT:],
        )
