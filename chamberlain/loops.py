"""Loop jobs: one job, many iterations of its plugin, until it says it is done (pure).

A trigger's ``loop`` asks for a job whose plugin runs again and again on the same
task.  Each iteration is one run of the plugin; its request says which iteration it
is and what the iterations before it said and what their feedback commands found.
An iteration is complete when its response says ``"complete": true``, or when its
``result`` is a string whose last non-empty line *is* the completion token: a token
quoted inside other text never ends a loop.  Between iterations that did not
complete, the loop's feedback commands run (an argv each, never a shell string).

The decisions are here, as plain functions and records: what a ``loop`` asks for
(:func:`parse_loop`, within the plugin's defaults and cap), when an iteration is
complete (:func:`completes`), what follows an iteration (:func:`after_iteration`),
and what each request and the history show.  The Runner's loop driver
(:mod:`chamberlain.actors.loop`) does the I/O.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from chamberlain.records import Iteration

#: Iterations a loop gets when it names none, and the most any loop may ask for.
DEFAULT_MAX_ITERATIONS: Final = 5
MAX_ITERATIONS_LIMIT: Final = 100
#: How long a feedback command may run when it names no timeout.
DEFAULT_FEEDBACK_TIMEOUT: Final = 120.0
#: Feedback commands one loop may run after each iteration.
MAX_FEEDBACK_COMMANDS: Final = 10
#: Runs one iteration may have: a failed one is run once more, then the loop fails.
ITERATION_RUNS: Final = 2
#: How much of an iteration's result is kept as its summary, and of a feedback
#: command's output as its tail.
SUMMARY_MAX: Final = 2000
OUTPUT_TAIL_MAX: Final = 4096


class LoopError(ValueError):
    """A ``loop`` that cannot be run: the message names the field."""


class CompletionReason(enum.Enum):
    """Why a loop ended."""

    #: An iteration said it was done (on any iteration, the last allowed one too).
    PROMISE_DETECTED = "promise_detected"
    #: Every allowed iteration ran and none said it was done.
    MAX_ITERATIONS = "max_iterations"
    #: ``POST /job/{id}/stop``: the iteration under way finished, no more ran.
    MANUAL_STOP = "manual_stop"
    #: ``POST /job/{id}/cancel``: the iteration under way was killed.
    CANCELLED = "cancelled"
    #: An iteration failed twice.
    ITERATION_ERROR = "iteration_error"


@attrs.frozen(kw_only=True)
class FeedbackCommand:
    """One command run between iterations: an argv, and how long it may take."""

    command: tuple[str, ...]
    timeout: float = DEFAULT_FEEDBACK_TIMEOUT

    def to_json(self) -> dict[str, Any]:
        """As the job stores it."""
        return {"command": list(self.command), "timeout": self.timeout}


@attrs.frozen(kw_only=True)
class LoopSpec:
    """What a loop job was asked to do (stored with the job)."""

    max_iterations: int = DEFAULT_MAX_ITERATIONS
    completion_token: str | None = None
    feedback: tuple[FeedbackCommand, ...] = ()
    #: The longest one iteration may run (None: the command's own timeout).
    iteration_timeout: float | None = None

    def to_json(self) -> dict[str, Any]:
        """As the job stores it and the API shows it."""
        return {
            "max_iterations": self.max_iterations,
            "completion_token": self.completion_token,
            "feedback": [command.to_json() for command in self.feedback],
            "iteration_timeout": self.iteration_timeout,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoopSpec:
        """Back from :meth:`to_json` (what the store kept)."""
        return cls(
            max_iterations=int(data["max_iterations"]),
            completion_token=data.get("completion_token"),
            feedback=tuple(
                FeedbackCommand(command=tuple(item["command"]), timeout=float(item["timeout"]))
                for item in data.get("feedback") or ()
            ),
            iteration_timeout=data.get("iteration_timeout"),
        )


@attrs.frozen(kw_only=True)
class LoopDefaults:
    """A plugin's ``loop`` settings: what a trigger's loop gets unless it says otherwise,
    and the most iterations any of its loops may ask for."""

    max_iterations: int = DEFAULT_MAX_ITERATIONS
    max_iterations_cap: int = MAX_ITERATIONS_LIMIT
    completion_token: str | None = None
    feedback: tuple[FeedbackCommand, ...] = ()
    iteration_timeout: float | None = None
    #: A trigger may name its own feedback commands (else only these run).
    trigger_feedback: bool = False


_LOOP_KEYS: Final = ("max_iterations", "completion_token", "feedback", "iteration_timeout")


def parse_loop(
    value: object,
    *,
    defaults: LoopDefaults = LoopDefaults(),
    parse_duration: Any,
    path: str = "loop",
) -> LoopSpec:
    """The loop a trigger's ``loop`` asks for; :class:`LoopError` naming the field if bad.

    ``parse_duration`` turns ``"2m"`` or ``120`` into seconds (the config's units),
    raising ValueError for anything else.
    """
    if not isinstance(value, Mapping):
        raise LoopError(f"{path} must be an object")
    unknown = sorted(str(key) for key in value if key not in _LOOP_KEYS)
    if unknown:
        raise LoopError(
            f"{path}: unknown field {', '.join(map(repr, unknown))}; expected"
            f" {', '.join(_LOOP_KEYS)}"
        )
    cap = min(defaults.max_iterations_cap, MAX_ITERATIONS_LIMIT)
    count = value.get("max_iterations", defaults.max_iterations)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= cap:
        raise LoopError(f"{path}.max_iterations must be an integer from 1 to {cap}, got {count!r}")
    token = value.get("completion_token", defaults.completion_token)
    if token is not None and (not isinstance(token, str) or not token.strip() or "\n" in token):
        raise LoopError(f"{path}.completion_token must be a non-empty string on one line")
    if "feedback" in value:
        if not defaults.trigger_feedback:
            raise LoopError(
                f"{path}.feedback: this plugin runs the feedback commands of its config"
                " only (plugins.<name>.loop.feedback); a trigger may name its own once"
                " plugins.<name>.loop.trigger_feedback is true"
            )
        feedback = _feedback(value["feedback"], f"{path}.feedback", parse_duration)
    else:
        feedback = defaults.feedback
    timeout = defaults.iteration_timeout
    if value.get("iteration_timeout") is not None:
        timeout = _duration(value["iteration_timeout"], f"{path}.iteration_timeout", parse_duration)
    return LoopSpec(
        max_iterations=count,
        completion_token=None if token is None else token.strip(),
        feedback=feedback,
        iteration_timeout=timeout,
    )


def _duration(value: object, path: str, parse_duration: Any) -> float:
    try:
        seconds = float(parse_duration(value))
    except (TypeError, ValueError) as exc:
        raise LoopError(f"{path}: {exc}") from None
    if seconds <= 0:
        raise LoopError(f"{path} must be longer than zero")
    return seconds


def _feedback(value: object, path: str, parse_duration: Any) -> tuple[FeedbackCommand, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise LoopError(f"{path} must be a list of {{command, timeout}} objects")
    if len(value) > MAX_FEEDBACK_COMMANDS:
        raise LoopError(f"{path} holds more than {MAX_FEEDBACK_COMMANDS} commands")
    commands = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            raise LoopError(f"{where} must be an object with command and timeout")
        unknown = sorted(str(key) for key in item if key not in ("command", "timeout"))
        if unknown:
            raise LoopError(f"{where}: unknown field {', '.join(map(repr, unknown))}")
        argv = item.get("command")
        if isinstance(argv, str):
            raise LoopError(
                f"{where}.command must be an argv list, not a shell string; write"
                f' ["sh", "-c", {argv!r}] to run it through a shell'
            )
        if (
            not isinstance(argv, Sequence)
            or not argv
            or not all(isinstance(arg, str) and "\x00" not in arg for arg in argv)
            or not argv[0]
        ):
            raise LoopError(f"{where}.command must be a non-empty list of strings")
        timeout = DEFAULT_FEEDBACK_TIMEOUT
        if item.get("timeout") is not None:
            timeout = _duration(item["timeout"], f"{where}.timeout", parse_duration)
        commands.append(FeedbackCommand(command=tuple(argv), timeout=timeout))
    return tuple(commands)


# -- iterations --------------------------------------------------------------------------


def iteration_field(
    spec: LoopSpec, number: int, run: int, history: Sequence[Iteration]
) -> dict[str, Any]:
    """The ``iteration`` of iteration ``number``'s request (its ``run``-th run)."""
    return {
        "number": number,
        "max": spec.max_iterations,
        "attempt": run,
        "completion_token": spec.completion_token,
        "previous": [it.previous() for it in history if it.finished and it.number < number],
    }


def completes(response_complete: object, result: object, token: str | None) -> bool:
    """Whether an iteration's answer says the loop is done.

    ``"complete": true`` in the response, or a string ``result`` whose last
    non-empty line, stripped, is the token itself.  Nothing else: the token quoted
    inside a sentence, or on a line with other words, does not end the loop.
    """
    if response_complete is True:
        return True
    if token is None or not isinstance(result, str):
        return False
    lines = [line.strip() for line in result.splitlines() if line.strip()]
    return bool(lines) and lines[-1] == token


def summary(result: object) -> str:
    """A short text of an iteration's result, for the next iterations and the history."""
    if result is None:
        return ""
    if isinstance(result, str):
        text = result
    else:
        text = json.dumps(result, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "\u2026"


def output_tail(stdout: bytes, stderr: bytes) -> str:
    """The end of what a feedback command printed, stdout then stderr."""
    parts = [part.rstrip(b"\r\n") for part in (stdout, stderr) if part.strip()]
    text = b"\n".join(parts).decode("utf-8", errors="replace")
    return text if len(text) <= OUTPUT_TAIL_MAX else "\u2026" + text[-(OUTPUT_TAIL_MAX - 1) :]


class Next(enum.Enum):
    """What follows an iteration."""

    #: Run the feedback commands, then the next iteration.
    FEEDBACK = "feedback"
    #: Run the same iteration once more (it failed once).
    RETRY = "retry"
    #: The loop is over (with a reason).
    END = "end"


@attrs.frozen(kw_only=True)
class Verdict:
    """What :func:`after_iteration` decided."""

    next: Next
    reason: CompletionReason | None = None


def after_iteration(
    spec: LoopSpec,
    *,
    number: int,
    failures: int,
    failed: bool,
    complete: bool,
    stop_requested: bool,
) -> Verdict:
    """What follows iteration ``number`` (its failed runs so far: ``failures``).

    Completion wins, on any iteration; then a stop; a failed run is run once more,
    and a second failure ends the loop; past the last iteration the loop has used
    them all.
    """
    if complete:
        return Verdict(next=Next.END, reason=CompletionReason.PROMISE_DETECTED)
    if stop_requested:
        return Verdict(next=Next.END, reason=CompletionReason.MANUAL_STOP)
    if failed:
        if failures >= ITERATION_RUNS:
            return Verdict(next=Next.END, reason=CompletionReason.ITERATION_ERROR)
        return Verdict(next=Next.RETRY)
    if number >= spec.max_iterations:
        return Verdict(next=Next.FEEDBACK, reason=CompletionReason.MAX_ITERATIONS)
    return Verdict(next=Next.FEEDBACK)
