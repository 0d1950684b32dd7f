"""The Runner's loop driver: a loop job's iterations, one plugin run after another.

A loop job is one job and one attempt at a time; the driver runs its iterations
inside that attempt.  Before each iteration it saves the iteration as started;
after it, as finished (or failed once), and then with its feedback commands'
results: every save is a commit (``SaveIteration``) that also answers whether a
stop was asked for, so ``POST /job/{id}/stop`` takes effect as soon as the
iteration under way ends.  What follows each iteration is
:func:`chamberlain.loops.after_iteration`'s decision; the driver only runs things
and writes them down.

Each run (an iteration, a feedback command) has its own
:class:`~chamberlain.plugins.process.ProcessControl`, so one run's timeout does not
stop the next; a cancel or a shutdown (the job's own control) stops whichever runs.
A crash loses at most the run under way: the next attempt reads the iterations
back and starts at the first that did not finish, counting one more run of it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from chamberlain.actors.mail import GetIterations, JobStoreRequest, SaveIteration
from chamberlain.actors.mailbox import call
from chamberlain.loops import (
    CompletionReason,
    LoopSpec,
    Next,
    after_iteration,
    completes,
    iteration_field,
    output_tail,
    summary,
)
from chamberlain.plugins.process import ProcessControl
from chamberlain.plugins.protocol import (
    Outcome,
    OutcomeKind,
    ProcessResult,
    Response,
    TerminationReason,
    decide_outcome,
)
from chamberlain.records import FeedbackResult, Iteration, Job
from chamberlain.redaction import Redactor

log = logging.getLogger("chamberlain.runner")

#: Runs one iteration: its ``iteration`` field and timeout in, the run's result out.
RunIteration = Callable[[Mapping[str, Any], float, ProcessControl], Awaitable[ProcessResult]]
#: Runs one feedback command: argv and timeout in.
RunCommand = Callable[[Sequence[str], float, ProcessControl], Awaitable[ProcessResult]]


class _Superseded(Exception):
    """The attempt is no longer the job's (recovered as an orphan meanwhile)."""


@attrs.define(eq=False)
class LoopDriver:
    """Runs one attempt of a loop job; see the module docstring."""

    job: Job
    spec: LoopSpec
    store: trio.MemorySendChannel[JobStoreRequest]
    #: The job's own control: a cancel or a shutdown reaches every run through it.
    control: ProcessControl
    run_iteration: RunIteration
    run_command: RunCommand
    #: The command's own timeout, for a loop that names no ``iteration_timeout``.
    timeout: float
    now: Callable[[], float]
    redactor: Redactor = attrs.field(factory=Redactor)
    #: Stores the output read so far (the attempt's forwarder), so an iteration's
    #: stderr lines come before the message that says it ended.
    flush: Callable[[], Awaitable[None]] | None = None
    _history: list[Iteration] = attrs.field(factory=list, init=False)
    _current: ProcessControl | None = attrs.field(default=None, init=False)

    async def run(self) -> Outcome:
        """Run the loop's iterations until it ends; the outcome to settle the attempt."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pass_terminate)
            try:
                return await self._iterate()
            finally:
                nursery.cancel_scope.cancel()

    async def _pass_terminate(self) -> None:
        await self.control._wait_requested()
        if self._current is not None and self.control.reason is not None:
            self._current.terminate(self.control.reason)

    def _control(self) -> ProcessControl:
        control = ProcessControl()
        if self.control.reason is not None:
            control.terminate(self.control.reason)
        self._current = control
        return control

    async def _save(self, iteration: Iteration, note: str) -> bool:
        if self.flush is not None:
            await self.flush()
        job = self.job
        stop: bool | None = await call(
            self.store,
            lambda r: SaveIteration(
                job_id=job.id, attempt=job.attempt, iteration=iteration, note=note, reply=r
            ),
        )
        if stop is None:
            raise _Superseded
        return stop

    async def _iterate(self) -> Outcome:
        job, spec = self.job, self.spec
        found: tuple[Iteration, ...] = await call(
            self.store, lambda r: GetIterations(job_id=job.id, reply=r)
        )
        self._history = [it for it in found if it.finished]
        unfinished = next((it for it in found if not it.finished), None)
        number = len(self._history) + 1
        runs = 1 if unfinished is None else unfinished.runs + 1
        failures = 0 if unfinished is None else unfinished.failures
        last: Response | None = None
        if job.loop_stop:
            return self._end(CompletionReason.MANUAL_STOP, last)
        try:
            while True:
                started = Iteration(
                    number=number, runs=runs, failures=failures, started_at=self.now()
                )
                of = f"iteration {number}/{spec.max_iterations}"
                await self._save(started, f"{of} started" + (f" (run {runs})" if runs > 1 else ""))
                result = await self.run_iteration(
                    iteration_field(spec, number, runs, self._history),
                    spec.iteration_timeout or self.timeout,
                    self._control(),
                )
                outcome = decide_outcome(result)
                if outcome.kind is OutcomeKind.CANCELLED:
                    return self._end(CompletionReason.CANCELLED, last, outcome=outcome)
                if outcome.kind is OutcomeKind.INTERRUPTED:
                    # Shutdown: the job goes back to the queue; this iteration runs again.
                    return outcome
                response = outcome.response
                failed = outcome.kind is not OutcomeKind.SUCCEEDED or response is None
                if failed:
                    failures += 1
                    error = outcome.error or "the iteration failed"
                    stop = await self._save(
                        attrs.evolve(
                            started, failures=failures, error=error, exit_code=outcome.exit_code
                        ),
                        f"{of} failed: {error}",
                    )
                    verdict = after_iteration(
                        spec,
                        number=number,
                        failures=failures,
                        failed=True,
                        complete=False,
                        stop_requested=stop,
                    )
                    if verdict.next is Next.RETRY:
                        runs += 1
                        continue
                    assert verdict.reason is not None
                    return self._end(verdict.reason, last, outcome=outcome)
                assert response is not None
                last = response
                complete = completes(response.complete, response.result, spec.completion_token)
                finished = attrs.evolve(
                    started,
                    failures=failures,
                    completed_at=self.now(),
                    exit_code=outcome.exit_code,
                    promise_detected=complete,
                    output_summary=self.redactor.text(summary(response.result)),
                )
                stop = await self._save(
                    finished, f"{of} finished: {'complete' if complete else 'not complete'}"
                )
                verdict = after_iteration(
                    spec,
                    number=number,
                    failures=failures,
                    failed=False,
                    complete=complete,
                    stop_requested=stop,
                )
                if verdict.next is Next.END:
                    self._history.append(finished)
                    assert verdict.reason is not None
                    return self._end(verdict.reason, last)
                feedback = await self._feedback()
                finished = attrs.evolve(finished, feedback=feedback)
                self._history.append(finished)
                if feedback:
                    passed = sum(result.passed for result in feedback)
                    stop = await self._save(
                        finished, f"{of} feedback: {passed} of {len(feedback)} commands passed"
                    )
                if self.control.reason is TerminationReason.SHUTDOWN:
                    # Shut down during the feedback: the next attempt starts at the
                    # next iteration (this one finished, its feedback as far as it got).
                    return _interrupted("interrupted by shutdown")
                if self.control.reason is not None:
                    # Cancelled during the feedback: no next iteration.
                    return self._end(CompletionReason.CANCELLED, last)
                if verdict.reason is CompletionReason.MAX_ITERATIONS:
                    return self._end(CompletionReason.MAX_ITERATIONS, last)
                if stop:
                    return self._end(CompletionReason.MANUAL_STOP, last)
                number, runs, failures = number + 1, 1, 0
        except _Superseded:
            log.warning(
                "loop attempt superseded; stopping it",
                extra={"component": "runner", "job_id": job.id},
            )
            return _interrupted("superseded")

    async def _feedback(self) -> tuple[FeedbackResult, ...]:
        results = []
        for command in self.spec.feedback:
            if self.control.reason is not None:
                break
            result = await self.run_command(command.command, command.timeout, self._control())
            exit_code = result.exit_code if result.terminated is None else None
            tail = output_tail(result.stdout, result.stderr_tail)
            if result.spawn_error is not None:
                tail = f"could not start: {result.spawn_error}"
            elif result.terminated is TerminationReason.TIMEOUT:
                tail = f"{tail}\n[stopped: timeout after {command.timeout:g}s]"
            elif result.terminated is not None:
                tail = f"{tail}\n[stopped: {result.terminated.value}]"
            results.append(
                FeedbackResult(
                    command=command.command,
                    exit_code=exit_code,
                    passed=exit_code == 0,
                    output_tail=self.redactor.text(tail.strip("\n")),
                )
            )
        return tuple(results)

    def _end(
        self, reason: CompletionReason, last: Response | None, *, outcome: Outcome | None = None
    ) -> Outcome:
        """The attempt's outcome for a loop that ended for ``reason``."""
        loop = {
            "completion_reason": reason.value,
            "max_iterations": self.spec.max_iterations,
            "iterations": [it.to_json() for it in self._history],
        }
        count = len(self._history)
        kind, error = OutcomeKind.SUCCEEDED, None
        if reason is CompletionReason.CANCELLED:
            kind, error = OutcomeKind.CANCELLED, "cancelled"
        elif reason is CompletionReason.MAX_ITERATIONS:
            kind = OutcomeKind.FAILED
            error = f"max_iterations: no iteration of {count} said it was complete"
        elif reason is CompletionReason.ITERATION_ERROR:
            kind = OutcomeKind.FAILED
            failed = outcome.error if outcome is not None else None
            error = f"iteration_error: iteration {count + 1} failed twice: {failed}"
        # What the plugin said last is the job's answer: its events and state
        # updates apply once the loop succeeded, as a plain job's would.
        response = last if kind is OutcomeKind.SUCCEEDED else None
        if kind is OutcomeKind.SUCCEEDED and response is None:
            response = Response(status="ok")
        return Outcome(
            kind=kind,
            retryable=False,
            error=error,
            response=response,
            raw_output=None,
            exit_code=None if outcome is None else outcome.exit_code,
            signal=None if outcome is None else outcome.signal,
            stderr_tail="" if outcome is None else outcome.stderr_tail,
            loop=loop,
        )


def _interrupted(error: str) -> Outcome:
    """An attempt given back: the loop goes on in the job's next attempt."""
    return Outcome(
        kind=OutcomeKind.INTERRUPTED,
        retryable=True,
        error=error,
        response=None,
        raw_output=None,
        exit_code=None,
        signal=None,
        stderr_tail="",
    )
