"""The retry policy: what each outcome does to a job."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fakes import stored_job

from chamberlain.config import ConfigError, parse_config
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.manifest import CommandSpec, CommandType, Manifest
from chamberlain.plugins.protocol import Outcome, OutcomeKind, Response
from chamberlain.records import Job, JobStatus
from chamberlain.retry import STATE_MAX_BYTES, RetryPolicy, recover_orphan, settle

NOW = 1_000_000.0


def make_job(**changes: object) -> Job:
    return stored_job(
        **{"created_at": NOW - 10, "started_at": NOW - 1, "run_at": NOW - 10, **changes}
    )


def outcome(
    kind: OutcomeKind,
    *,
    retryable: bool = True,
    error: str | None = None,
    response: Response | None = None,
) -> Outcome:
    return Outcome(
        kind=kind,
        retryable=retryable,
        error=error,
        response=response,
        raw_output=None,
        exit_code=0,
        signal=None,
        stderr_tail="",
    )


POLICY = RetryPolicy(backoff_base=30.0, backoff_max=3600.0, jitter=0.0)


@pytest.mark.parametrize(("attempt", "expected"), [(1, 30.0), (2, 60.0), (3, 120.0), (8, 3600.0)])
def test_backoff_doubles_and_caps(attempt: int, expected: float) -> None:
    assert POLICY.delay(attempt) == expected


def test_backoff_jitter_stays_within_a_tenth() -> None:
    policy = RetryPolicy(backoff_base=10.0)
    rng = random.Random(7)
    delays = [policy.delay(2, rng) for _ in range(500)]
    assert min(delays) >= 20.0
    assert max(delays) <= 22.0
    assert len(set(delays)) > 400  # actually jittered


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert POLICY.delay(10_000) == 3600.0


def test_success_is_terminal_and_merges_state() -> None:
    resp = Response(status="ok", result="done", state_updates={"cursor": 5})
    s = settle(
        make_job(),
        outcome(OutcomeKind.SUCCEEDED, response=resp),
        now=NOW,
        policy=POLICY,
        state={"a": 1, "cursor": 1},
    )
    assert s.status is JobStatus.SUCCEEDED
    assert s.completed
    assert s.new_state == {"a": 1, "cursor": 5}
    assert s.result["result"] == "done"


def test_success_without_updates_leaves_state_alone() -> None:
    resp = Response(status="ok", result="done")
    s = settle(
        make_job(),
        outcome(OutcomeKind.SUCCEEDED, response=resp),
        now=NOW,
        policy=POLICY,
        state={"a": 1},
    )
    assert s.new_state is None


def test_state_over_the_cap_fails_the_job() -> None:
    resp = Response(status="ok", state_updates={"blob": "x" * STATE_MAX_BYTES})
    s = settle(
        make_job(), outcome(OutcomeKind.SUCCEEDED, response=resp), now=NOW, policy=POLICY, state={}
    )
    assert s.status is JobStatus.FAILED
    assert s.new_state is None
    assert "state_updates rejected" in (s.last_error or "")


def test_retryable_failure_requeues_after_backoff() -> None:
    s = settle(
        make_job(attempt=2),
        outcome(OutcomeKind.FAILED, error="boom"),
        now=NOW,
        policy=POLICY,
        state={},
    )
    assert s.status is JobStatus.QUEUED
    assert s.run_at == NOW + 60.0
    assert s.last_error == "boom"
    assert not s.completed


def test_retryable_failure_on_last_attempt_is_dead() -> None:
    s = settle(
        make_job(attempt=3),
        outcome(OutcomeKind.FAILED, error="boom"),
        now=NOW,
        policy=POLICY,
        state={},
    )
    assert s.status is JobStatus.DEAD
    assert s.completed
    assert "gave up after 3 attempts" in (s.last_error or "")


def test_non_retryable_failure_is_failed_at_once() -> None:
    s = settle(
        make_job(attempt=1),
        outcome(OutcomeKind.FAILED, retryable=False, error="bad config"),
        now=NOW,
        policy=POLICY,
        state={},
    )
    assert s.status is JobStatus.FAILED
    assert s.completed


def test_a_timeout_is_retried_by_default_as_in_ductile() -> None:
    s = settle(
        make_job(attempt=1),
        outcome(OutcomeKind.TIMED_OUT, error="timed out after 1s"),
        now=NOW,
        policy=POLICY,
        state={},
    )
    assert s.status is JobStatus.QUEUED
    assert s.run_at == NOW + 30.0
    assert s.last_error == "timed out after 1s"
    assert not s.completed


def test_a_timeout_on_the_last_attempt_is_dead() -> None:
    s = settle(
        make_job(attempt=3),
        outcome(OutcomeKind.TIMED_OUT, error="timed out after 1s"),
        now=NOW,
        policy=POLICY,
        state={},
    )
    assert s.status is JobStatus.DEAD
    assert s.completed
    assert s.last_error == "timed out after 1s (gave up after 3 attempts)"


def test_a_timeout_is_terminal_when_the_policy_does_not_retry_timeouts() -> None:
    s = settle(
        make_job(attempt=1),
        outcome(OutcomeKind.TIMED_OUT, error="timed out after 1s"),
        now=NOW,
        policy=RetryPolicy(backoff_base=30.0, jitter=0.0, retry_timeouts=False),
        state={},
    )
    assert s.status is JobStatus.TIMED_OUT
    assert s.completed
    assert s.last_error == "timed out after 1s"


def test_cancelled_is_terminal() -> None:
    s = settle(
        make_job(),
        outcome(OutcomeKind.CANCELLED, retryable=False),
        now=NOW,
        policy=POLICY,
        state={},
    )
    assert s.status is JobStatus.CANCELLED


def test_interrupted_requeues_now_and_gives_the_attempt_back() -> None:
    s = settle(
        make_job(attempt=3), outcome(OutcomeKind.INTERRUPTED), now=NOW, policy=POLICY, state={}
    )
    assert s.status is JobStatus.QUEUED
    assert s.run_at == NOW
    assert s.attempt_delta == -1


def test_orphan_with_attempts_left_is_requeued() -> None:
    s = recover_orphan(make_job(attempt=1, max_attempts=3), now=NOW)
    assert s.status is JobStatus.QUEUED
    assert s.attempt_delta == 0
    assert "attempt 1" in (s.last_error or "")


def test_orphan_on_its_last_attempt_is_dead() -> None:
    s = recover_orphan(make_job(attempt=3, max_attempts=3), now=NOW)
    assert s.status is JobStatus.DEAD


def _policy_of(retry: dict[str, object]) -> RetryPolicy:
    config = parse_config({"plugins": {"echo": {"retry": retry}}}, base_dir=Path("/srv"))
    manifest = Manifest(
        name="echo",
        version="1",
        protocol=2,
        entrypoint=Path("/nonexistent/echo/run.sh"),
        directory=Path("/nonexistent/echo"),
        commands=(CommandSpec(name="poll", type=CommandType.READ),),
    )
    plugin = BoundPlugin(manifest=manifest, settings=config.plugins["echo"], parallelism=1)
    return plugin.retry_policy


def test_retry_on_timeout_is_on_by_default_and_configurable_per_plugin() -> None:
    assert _policy_of({}).retry_timeouts is True
    assert _policy_of({"on_timeout": False}).retry_timeouts is False
    assert _policy_of({"on_timeout": True, "max_attempts": 2}).retry_timeouts is True


def test_retry_on_timeout_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError) as info:
        _policy_of({"on_timeout": "sometimes"})
    assert info.value.problems == (
        "plugins.echo.retry.on_timeout: expected true or false, got 'sometimes'",
    )
