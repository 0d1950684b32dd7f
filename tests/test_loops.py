"""Loop jobs' rules (pure) and the loop driver against fake runs and a real store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import trio

from chamberlain.actors.loop import LoopDriver
from chamberlain.actors.mail import GetIterations, JobStoreRequest, SaveIteration
from chamberlain.config.units import parse_duration
from chamberlain.loops import (
    CompletionReason,
    FeedbackCommand,
    LoopDefaults,
    LoopError,
    LoopSpec,
    Next,
    after_iteration,
    completes,
    iteration_field,
    output_tail,
    parse_loop,
    summary,
)
from chamberlain.plugins.process import ProcessControl
from chamberlain.plugins.protocol import Outcome, OutcomeKind, ProcessResult, TerminationReason
from chamberlain.records import FeedbackResult, Iteration, JobStatus, NewJob
from chamberlain.store import loop_rows
from chamberlain.store.sqlite import SqliteStore

NOW = 1_700_000_000.0

# -- what a loop asks for ----------------------------------------------------------------


def parse(value: object, **defaults: Any) -> LoopSpec:
    return parse_loop(value, defaults=LoopDefaults(**defaults), parse_duration=parse_duration)


def test_a_loop_takes_the_plugin_s_defaults_and_its_own_settings() -> None:
    assert parse({}) == LoopSpec()
    spec = parse(
        {
            "max_iterations": 10,
            "completion_token": " DONE ",
            "feedback": [{"command": ["npm", "test"], "timeout": "2m"}, {"command": ["make"]}],
            "iteration_timeout": "30m",
        },
        trigger_feedback=True,
    )
    assert spec == LoopSpec(
        max_iterations=10,
        completion_token="DONE",
        feedback=(
            FeedbackCommand(command=("npm", "test"), timeout=120.0),
            FeedbackCommand(command=("make",), timeout=120.0),
        ),
        iteration_timeout=1800.0,
    )
    assert LoopSpec.from_json(spec.to_json()) == spec
    configured = (FeedbackCommand(command=("pytest",), timeout=60.0),)
    assert parse({}, max_iterations=7, feedback=configured, completion_token="OK") == LoopSpec(
        max_iterations=7, completion_token="OK", feedback=configured
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("yes", "loop must be an object"),
        (True, "loop must be an object"),
        (None, "loop must be an object"),
        ({"max_iterations": 0}, "loop.max_iterations must be an integer from 1 to 100, got 0"),
        ({"max_iterations": 101}, "loop.max_iterations must be an integer from 1 to 100"),
        ({"max_iterations": True}, "loop.max_iterations must be an integer"),
        ({"max_iterations": 2.5}, "loop.max_iterations must be an integer"),
        ({"completion_token": ""}, "loop.completion_token must be a non-empty string"),
        ({"completion_token": "A\nB"}, "loop.completion_token must be a non-empty string on one"),
        ({"feedback": "npm test"}, "loop.feedback must be a list"),
        ({"feedback": [{"command": "npm test"}]}, "loop.feedback[0].command must be an argv"),
        ({"feedback": [{"command": ["", "x"]}]}, "loop.feedback[0].command must be a non-empty"),
        ({"feedback": [{"command": ["a"], "x": 1}]}, "loop.feedback[0]: unknown field 'x'"),
        ({"feedback": [{"command": ["a"], "timeout": 0}]}, "loop.feedback[0].timeout must be"),
        ({"feedback": [{"command": ["a"]}] * 11}, "loop.feedback holds more than 10"),
        ({"iteration_timeout": "soon"}, "loop.iteration_timeout: invalid duration"),
        ({"tokens": "x"}, "loop: unknown field 'tokens'"),
    ],
)
def test_a_bad_loop_is_refused_naming_its_field(value: object, error: str) -> None:
    with pytest.raises(LoopError) as info:
        parse(value, trigger_feedback=True)
    assert str(info.value).startswith(error), str(info.value)


def test_the_plugin_caps_iterations_and_may_keep_feedback_to_its_config() -> None:
    with pytest.raises(LoopError, match="from 1 to 4, got 5"):
        parse({"max_iterations": 5}, max_iterations_cap=4)
    with pytest.raises(LoopError, match="trigger_feedback is true"):
        parse({"feedback": [{"command": ["make"]}]})


# -- completion --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "done"),
    [
        ("all tests pass\nDONE", True),
        ("DONE", True),
        ("work\n  DONE  \n\n", True),
        # Quoted, or with other words on its line: not a promise.
        ("I will print DONE when it is finished", False),
        ("DONE\nbut one more thing", False),
        ("DONE.", False),
        ("done", False),
        ("NOT DONE", False),
        ({"text": "DONE"}, False),
        (None, False),
        ("", False),
    ],
)
def test_completion_is_the_token_on_the_last_line_never_a_substring(
    result: object, done: bool
) -> None:
    assert completes(None, result, "DONE") is done


def test_a_structured_complete_needs_no_token() -> None:
    assert completes(True, {"anything": 1}, None)
    assert not completes(False, "DONE", None)
    assert not completes("true", "x", "DONE")


# -- what follows an iteration -----------------------------------------------------------


SPEC = LoopSpec(max_iterations=3, completion_token="DONE")


@pytest.mark.parametrize(
    ("number", "failures", "failed", "complete", "stop", "next_", "reason"),
    [
        (1, 0, False, False, False, Next.FEEDBACK, None),
        (1, 0, False, True, False, Next.END, CompletionReason.PROMISE_DETECTED),
        # The promise on the last allowed iteration is a promise.
        (3, 0, False, True, False, Next.END, CompletionReason.PROMISE_DETECTED),
        (3, 0, False, False, False, Next.FEEDBACK, CompletionReason.MAX_ITERATIONS),
        (2, 0, False, False, True, Next.END, CompletionReason.MANUAL_STOP),
        # Completion wins over a stop asked meanwhile.
        (2, 0, False, True, True, Next.END, CompletionReason.PROMISE_DETECTED),
        (2, 1, True, False, False, Next.RETRY, None),
        (2, 2, True, False, False, Next.END, CompletionReason.ITERATION_ERROR),
        (2, 1, True, False, True, Next.END, CompletionReason.MANUAL_STOP),
    ],
)
def test_after_an_iteration(
    number: int,
    failures: int,
    failed: bool,
    complete: bool,
    stop: bool,
    next_: Next,
    reason: CompletionReason | None,
) -> None:
    verdict = after_iteration(
        SPEC,
        number=number,
        failures=failures,
        failed=failed,
        complete=complete,
        stop_requested=stop,
    )
    assert (verdict.next, verdict.reason) == (next_, reason)


def test_a_request_lists_the_finished_iterations_before_it() -> None:
    done = Iteration(
        number=1,
        started_at=NOW,
        completed_at=NOW + 1,
        output_summary="tried",
        feedback=(FeedbackResult(command=("make",), exit_code=2, passed=False, output_tail="E"),),
    )
    running = Iteration(number=2, started_at=NOW + 2)
    assert iteration_field(SPEC, 2, 1, [done, running]) == {
        "number": 2,
        "max": 3,
        "attempt": 1,
        "completion_token": "DONE",
        "previous": [
            {
                "number": 1,
                "summary": "tried",
                "feedback": [
                    {"command": ["make"], "exit_code": 2, "passed": False, "output_tail": "E"}
                ],
            }
        ],
    }


def test_summaries_and_tails_are_bounded() -> None:
    assert summary({"a": 1}) == '{"a":1}'
    assert len(summary("x" * 10_000)) == 2000
    assert output_tail(b"out\n", b"err\n") == "out\nerr"
    assert output_tail(b"", b"only err") == "only err"
    long = output_tail(b"y" * 10_000, b"")
    assert len(long) == 4096 and long.startswith("\u2026")


# -- the driver, against fake runs and a real store ----------------------------------------


def result(stdout: bytes = b"", *, exit_code: int | None = 0, **fields: Any) -> ProcessResult:
    return ProcessResult(
        exit_code=exit_code,
        signal=None,
        stdout=stdout,
        stdout_overflow=False,
        stderr_tail=b"",
        stderr_truncated=False,
        terminated=fields.pop("terminated", None),
        timeout=fields.pop("timeout", 10.0),
        duration=0.1,
        **fields,
    )


class Store:
    """A real SQLite store behind a JobStore-like mailbox (SaveIteration, GetIterations)."""

    def __init__(self) -> None:
        self.db = SqliteStore(":memory:")
        self.send, self.receive = trio.open_memory_channel[JobStoreRequest](10)

    def running_loop(self, spec: LoopSpec) -> Any:
        self.db.enqueue(
            NewJob(plugin="p", command="work", loop=spec.to_json()), now=NOW, dedupe_ttl=0
        )
        (claimed,), _ = self.db.claim({"p": 1}, 1, now=NOW)
        return claimed.job

    async def serve(self) -> None:
        async for request in self.receive:
            match request:
                case SaveIteration(job_id=job_id, attempt=attempt, iteration=it, note=note):
                    request.reply.send(
                        loop_rows.save_iteration(
                            self.db.conn, job_id, attempt, it, note=note, now=NOW
                        )
                    )
                case GetIterations(job_id=job_id):
                    request.reply.send(tuple(loop_rows.iterations(self.db.conn, job_id)))
                case _:
                    raise AssertionError(request)


async def run_driver(store: Store, job: Any, spec: LoopSpec, iterate: Any, command: Any) -> Outcome:
    """Run the loop driver on ``job`` with fake runs, the store served meanwhile."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.serve)
        outcome = await LoopDriver(
            job=job,
            spec=spec,
            store=store.send,
            control=ProcessControl(),
            run_iteration=iterate,
            run_command=command,
            timeout=60.0,
            now=lambda: NOW,
        ).run()
        nursery.cancel_scope.cancel()
    return outcome


async def drive(
    store: Store,
    spec: LoopSpec,
    answers: Sequence[ProcessResult],
    commands: Mapping[str, ProcessResult] | None = None,
) -> tuple[Any, list[Mapping[str, Any]], list[Sequence[str]]]:
    job = store.running_loop(spec)
    fields: list[Mapping[str, Any]] = []
    ran: list[Sequence[str]] = []
    replies = list(answers)

    async def iterate(field: Mapping[str, Any], timeout: float, control: ProcessControl) -> Any:
        fields.append(field)
        return replies.pop(0)

    async def command(argv: Sequence[str], timeout: float, control: ProcessControl) -> Any:
        ran.append(argv)
        return (commands or {}).get(argv[0], result(b"ok"))

    outcome = await run_driver(store, job, spec, iterate, command)
    return outcome, fields, ran


def answer(text: str) -> ProcessResult:
    return result(('{"status": "ok", "result": "' + text + '"}').encode())


async def test_the_driver_runs_feedback_between_iterations_until_the_promise() -> None:
    store = Store()
    spec = LoopSpec(
        max_iterations=5,
        completion_token="DONE",
        feedback=(FeedbackCommand(command=("make", "test")),),
    )
    outcome, fields, ran = await drive(
        store,
        spec,
        [answer("one"), answer("two\\nDONE")],
        {"make": result(b"1 failed", exit_code=1)},
    )
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.loop is not None
    assert outcome.loop["completion_reason"] == "promise_detected"
    assert [f["number"] for f in fields] == [1, 2]
    assert fields[1]["previous"][0]["feedback"] == [
        {"command": ["make", "test"], "exit_code": 1, "passed": False, "output_tail": "1 failed"}
    ]
    assert ran == [("make", "test")]  # none after the iteration that completed
    job = store.db.running_jobs()[0]
    history = loop_rows.iterations(store.db.conn, job.id)
    assert [(it.number, it.promise_detected, it.finished) for it in history] == [
        (1, False, True),
        (2, True, True),
    ]


async def test_a_timed_out_iteration_is_run_once_more_then_the_loop_fails() -> None:
    store = Store()
    spec = LoopSpec(max_iterations=3, completion_token="DONE")
    timed_out = result(terminated=TerminationReason.TIMEOUT, exit_code=None)
    outcome, fields, _ = await drive(store, spec, [answer("one"), timed_out, timed_out])
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.FAILED, False)
    assert outcome.loop is not None and outcome.loop["completion_reason"] == "iteration_error"
    assert outcome.error == "iteration_error: iteration 2 failed twice: timed out after 10s"
    assert [(f["number"], f["attempt"]) for f in fields] == [(1, 1), (2, 1), (2, 2)]


async def test_a_stop_read_back_after_the_iteration_ends_the_loop() -> None:
    store = Store()
    spec = LoopSpec(max_iterations=5, completion_token="DONE")
    job = store.running_loop(spec)
    loop_rows.request_stop(store.db, job.id)
    # The job as claimed said no stop; the save after iteration 1 reads it.
    fields: list[Mapping[str, Any]] = []

    async def iterate(field: Mapping[str, Any], timeout: float, control: ProcessControl) -> Any:
        fields.append(field)
        return answer("one")

    async def command(argv: Sequence[str], timeout: float, control: ProcessControl) -> Any:
        raise AssertionError("no feedback after a stop")

    outcome = await run_driver(store, job, spec, iterate, command)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.loop is not None and outcome.loop["completion_reason"] == "manual_stop"
    assert len(fields) == 1


async def test_a_stale_attempt_saves_nothing_and_gives_the_job_back() -> None:
    store = Store()
    spec = LoopSpec(max_iterations=2)
    job = store.running_loop(spec)
    # Recovered as an orphan meanwhile: the attempt this driver runs is not the job's.
    store.db.conn.execute("UPDATE jobs SET status = 'queued' WHERE id = ?", (job.id,))

    async def never(*args: Any) -> Any:
        raise AssertionError("a stale attempt runs nothing")

    outcome = await run_driver(store, job, spec, never, never)
    assert outcome.kind is OutcomeKind.INTERRUPTED
    assert loop_rows.iterations(store.db.conn, job.id) == []
    assert store.db.get_job(job.id).status is JobStatus.QUEUED  # type: ignore[union-attr]
