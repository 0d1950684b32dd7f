"""What happens to a job after an attempt: the retry policy as plain arithmetic.

The JobStore applies a :class:`Settlement` inside the transaction that records the
attempt, so the decision and its effect are one atomic step.  Nothing here does I/O,
which is what lets the tests cover every branch without a process or a database.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

import attrs

from chamberlain.plugins.manifest import FactOutput
from chamberlain.plugins.protocol import Outcome, OutcomeKind
from chamberlain.records import Job, JobStatus, PluginFact

#: Plugin state is handed to the plugin on every request; keep it small enough that
#: this stays cheap.
STATE_MAX_BYTES = 1024 * 1024


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a plugin's failed attempts are spaced out."""

    backoff_base: float = 30.0
    backoff_max: float = 3600.0
    #: Jitter is up to this fraction of the delay, so retries of jobs that failed
    #: together do not all hit the same flaky service at the same instant.
    jitter: float = 0.1
    #: A timed-out attempt is retried like a failed one (``retry.on_timeout``).
    retry_timeouts: bool = True

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        ``base * 2**(attempt-1)``, capped at ``backoff_max``, plus jitter.
        """
        exponent = max(0, attempt - 1)
        # Cap the exponent before computing: 2**1000 is fine for ints but not floats.
        raw = self.backoff_base * (2.0 ** min(exponent, 60))
        delay = min(self.backoff_max, raw)
        spread = delay * self.jitter
        return delay + (rng or random).uniform(0.0, spread) if spread > 0 else delay


@attrs.frozen(kw_only=True)
class Settlement:
    """The effect of one finished attempt on its job row (and on plugin state)."""

    status: JobStatus
    run_at: float | None = None
    last_error: str | None = None
    result: Any = None
    #: Added to the row's attempt count; -1 gives an interrupted attempt back.
    attempt_delta: int = 0
    completed: bool = False
    #: The plugin's whole new state, or None when the state does not change.
    new_state: Mapping[str, Any] | None = None
    #: Facts to record with the settlement (``fact_outputs``).
    facts: tuple[PluginFact, ...] = ()
    #: The response's ``session``, kept with the job (None: the job keeps its own).
    session: Any = None
    #: Why a loop job ended (chamberlain.loops.CompletionReason's value).
    completion_reason: str | None = None


def _result_of(outcome: Outcome) -> Any:
    if outcome.loop is not None:
        # A loop's result is its last answer with every iteration beside it.
        answer = {} if outcome.response is None else outcome.response.to_json()
        return {**answer, "loop": dict(outcome.loop)}
    if outcome.response is not None:
        return outcome.response.to_json()
    return outcome.raw_output


def _facts_settlement(
    job: Job,
    updates: Mapping[str, Any],
    rules: tuple[FactOutput, ...],
    result: Any,
    now: float,
) -> Settlement:
    """A success whose ``state_updates`` are facts: recorded, and mirrored if asked."""
    snapshot, size = merge_state({}, updates)
    if size > STATE_MAX_BYTES:
        # The cap bounds a fact as it bounds state: one answer must not grow the
        # database without limit.
        return Settlement(
            status=JobStatus.FAILED,
            completed=True,
            result=result,
            last_error=(
                f"state_updates rejected: the fact would be {size} bytes,"
                f" over the {STATE_MAX_BYTES} byte cap"
            ),
        )
    recorded = tuple(
        PluginFact(
            plugin=job.plugin,
            fact_type=rule.fact_type,
            job_id=job.id,
            command=job.command,
            fact=snapshot,
            created_at=now,
        )
        for rule in rules
    )
    mirrored = snapshot if any(rule.mirror for rule in rules) else None
    return Settlement(
        status=JobStatus.SUCCEEDED,
        completed=True,
        result=result,
        new_state=mirrored,
        facts=recorded,
    )


def merge_state(
    current: Mapping[str, Any], updates: Mapping[str, Any]
) -> tuple[dict[str, Any], int]:
    """Shallow-merge ``updates`` into ``current``; return the state and its JSON size."""
    merged = {**current, **updates}
    return merged, len(json.dumps(merged, separators=(",", ":")).encode())


def settle(
    job: Job,
    outcome: Outcome,
    *,
    now: float,
    policy: RetryPolicy,
    state: Mapping[str, Any],
    facts: tuple[FactOutput, ...] = (),
    rng: random.Random | None = None,
) -> Settlement:
    """Decide the job's next status from the outcome of its attempt.

    ``job.attempt`` is the attempt that just ran (claiming increments it).  Rules:

    * succeeded: terminal; ``state_updates`` are merged into the plugin's state,
      unless the result would exceed :data:`STATE_MAX_BYTES`, which fails the job
      (not retried: the same answer would overflow again).  When ``facts`` (the
      manifest's ``fact_outputs``) name the job's command, the updates are recorded
      as facts instead, as in Ductile, and the state becomes them whole if a rule
      mirrors them (``mirror_object``), or stays as it was.
    * failed and retryable with attempts left: back to queued after a backoff.
    * failed and retryable with none left: ``dead``.
    * failed and not retryable (``retry: false``, exit code 78, spawn errors): failed.
    * timed out, when the policy retries timeouts (the default, as in Ductile): as a
      retryable failure, queued again after a backoff, or ``dead`` with none left.
    * timed out otherwise: terminal ``timed_out``, for plugins whose hang is likely
      to repeat, where each retry would hold a worker for the whole timeout.
    * cancelled: terminal.
    * interrupted by shutdown: queued again at once, and the attempt is given back
      because the plugin never had its full chance.

    Whatever the status, a response's ``session`` is kept with the job: a plugin
    that failed may still have a session worth resuming in a follow-up.
    """
    settlement = _next_status(
        job, outcome, now=now, policy=policy, state=state, facts=facts, rng=rng
    )
    session = None if outcome.response is None else outcome.response.session
    reason = None if outcome.loop is None else outcome.loop.get("completion_reason")
    if session is None and reason is None:
        return settlement
    return attrs.evolve(settlement, session=session, completion_reason=reason)


def _next_status(
    job: Job,
    outcome: Outcome,
    *,
    now: float,
    policy: RetryPolicy,
    state: Mapping[str, Any],
    facts: tuple[FactOutput, ...],
    rng: random.Random | None,
) -> Settlement:
    result = _result_of(outcome)
    kind = outcome.kind
    if kind is OutcomeKind.SUCCEEDED:
        updates = outcome.response.state_updates if outcome.response else {}
        rules = tuple(rule for rule in facts if rule.command == job.command)
        if updates and rules:
            return _facts_settlement(job, updates, rules, result, now)
        if updates:
            merged, size = merge_state(state, updates)
            if size > STATE_MAX_BYTES:
                return Settlement(
                    status=JobStatus.FAILED,
                    completed=True,
                    result=result,
                    last_error=(
                        f"state_updates rejected: plugin state would be {size} bytes,"
                        f" over the {STATE_MAX_BYTES} byte cap"
                    ),
                )
            return Settlement(
                status=JobStatus.SUCCEEDED, completed=True, result=result, new_state=merged
            )
        return Settlement(status=JobStatus.SUCCEEDED, completed=True, result=result)
    if kind is OutcomeKind.INTERRUPTED:
        return Settlement(
            status=JobStatus.QUEUED,
            run_at=now,
            attempt_delta=-1,
            last_error=outcome.error or "interrupted by shutdown",
            result=result,
        )
    if kind is OutcomeKind.CANCELLED:
        return Settlement(
            status=JobStatus.CANCELLED,
            completed=True,
            result=result,
            last_error=outcome.error or "cancelled",
        )
    if kind is OutcomeKind.TIMED_OUT and not policy.retry_timeouts:
        return Settlement(
            status=JobStatus.TIMED_OUT, completed=True, result=result, last_error=outcome.error
        )
    # FAILED, or TIMED_OUT under a policy that retries it
    if not outcome.retryable:
        return Settlement(
            status=JobStatus.FAILED, completed=True, result=result, last_error=outcome.error
        )
    if job.attempt >= job.max_attempts:
        return Settlement(
            status=JobStatus.DEAD,
            completed=True,
            result=result,
            last_error=f"{outcome.error} (gave up after {job.attempt} attempts)",
        )
    return Settlement(
        status=JobStatus.QUEUED,
        run_at=now + policy.delay(job.attempt, rng),
        result=result,
        last_error=outcome.error,
    )


def recover_orphan(job: Job, *, now: float) -> Settlement:
    """A job found ``running`` with no process behind it (the daemon or its runner died).

    The attempt counts, since the plugin may have done part of its work; requeue it
    if attempts remain, otherwise it is ``dead``.
    """
    error = f"interrupted: the daemon stopped during attempt {job.attempt}"
    if job.attempt >= job.max_attempts:
        return Settlement(status=JobStatus.DEAD, completed=True, last_error=error)
    return Settlement(status=JobStatus.QUEUED, run_at=now, last_error=error)
