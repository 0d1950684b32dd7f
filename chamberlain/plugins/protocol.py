"""Ductile protocol v2: request encoding, response decoding and the outcome matrix.

Everything here is pure: bytes and records in, bytes and records out. The process
edge (`chamberlain.plugins.process`) gathers a `ProcessResult`; `decide_outcome` turns
it into an `Outcome` the job layer can act on. Keeping the decision out of the I/O
code is what lets every row of the matrix be tested without spawning anything.
"""

from __future__ import annotations

import enum
import errno
import json
import signal as signal_module
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import attrs

from chamberlain.jsoncodec import JsonRefused, json_kind, loads

__all__ = [
    "EXIT_CONFIG",
    "MAX_RESPONSE_DEPTH",
    "PROTOCOL_VERSION",
    "RAW_OUTPUT_MAX",
    "Outcome",
    "OutcomeKind",
    "ProcessResult",
    "Response",
    "TerminationReason",
    "decide_outcome",
    "decode_response",
    "encode_request",
    "format_timestamp",
]

PROTOCOL_VERSION = 2

#: ``EX_CONFIG`` from sysexits.h: the plugin says it is misconfigured, so running it
#: again without a configuration change cannot help.
EXIT_CONFIG = 78

#: A response nested deeper (the envelope is level 1) is invalid.  The store and the
#: API encode a result recursively, inside a few levels of their own; this keeps
#: them far from Python's recursion limit and within orjson's.
MAX_RESPONSE_DEPTH = 128

#: How much of an unusable stdout is kept on the job record for diagnosis.
RAW_OUTPUT_MAX = 64 * 1024

_STDERR_HINT_MAX = 200

# Spawn failures that can go away by themselves; anything else (missing file or
# interpreter, permissions, bad executable format) needs a human.
_TRANSIENT_SPAWN_ERRNOS = frozenset(
    {errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EINTR, errno.ETXTBSY}
)


def encode_request(
    *,
    job_id: str,
    command: str,
    config: Mapping[str, Any],
    state: Mapping[str, Any],
    context: Mapping[str, Any],
    payload: Mapping[str, Any] | None,
    event: Mapping[str, Any] | None,
    deadline_at: datetime,
    workspace_dir: str | None = None,
    interactive: bool = False,
    transcript: Sequence[Mapping[str, Any]] = (),
    follow_up: Mapping[str, Any] | None = None,
    iteration: Mapping[str, Any] | None = None,
) -> bytes:
    """Encode one request as a single compact JSON line, ready for the plugin's stdin.

    ``payload``, ``event`` and ``workspace_dir`` are included only when given, so a
    plugin can tell "no event" from "an empty event". ``deadline_at`` must be
    timezone-aware; it is sent as RFC 3339 UTC with a ``Z`` suffix.  An interactive
    command's request says ``"interactive": true`` and, when the job's session had
    inputs before this attempt, lists them as ``transcript``; a follow-up's carries
    ``follow_up`` (see :mod:`chamberlain.plugins.conversation`); an iteration of a
    loop job, its ``iteration`` (see :mod:`chamberlain.loops`).
    """
    request: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "job_id": job_id,
        "command": command,
        "config": dict(config),
        "state": dict(state),
        "context": dict(context),
    }
    if payload is not None:
        request["payload"] = dict(payload)
    if event is not None:
        request["event"] = dict(event)
    request["deadline_at"] = format_timestamp(deadline_at)
    if workspace_dir is not None:
        request["workspace_dir"] = workspace_dir
    if interactive:
        request["interactive"] = True
        if transcript:
            request["transcript"] = [dict(entry) for entry in transcript]
    if follow_up is not None:
        request["follow_up"] = dict(follow_up)
    if iteration is not None:
        request["iteration"] = dict(iteration)
    text = json.dumps(request, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with millisecond precision and ``Z``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamps sent to plugins must be timezone-aware")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@attrs.frozen(kw_only=True)
class Response:
    """A plugin's answer, once its envelope has been validated."""

    status: Literal["ok", "error"]
    result: Any = None
    error: str | None = None
    retry: bool = True
    events: tuple[Mapping[str, Any], ...] = ()
    state_updates: Mapping[str, Any] = attrs.field(factory=dict)
    logs: tuple[Mapping[str, Any], ...] = ()
    #: An opaque value (an object, by the protocol) the gateway keeps with the job
    #: and sends a follow-up (``follow_up.session``): an agent's session id, say.
    #: Not part of ``result``.
    session: Any = None
    #: ``"complete": true``: a loop's iteration says the loop is done.
    complete: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the response as plain JSON-ready data, for storing on the job."""
        return {
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "retry": self.retry,
            "events": [dict(event) for event in self.events],
            "state_updates": dict(self.state_updates),
            "logs": [dict(entry) for entry in self.logs],
        }


def decode_response(stdout: bytes) -> Response | str:
    """Parse a plugin's stdout into a `Response`, or explain why it is not one.

    Lenient where Ductile is: surrounding whitespace is fine, and if the whole output
    is not JSON but its last non-empty line is a JSON object, that line is the answer
    (plugins often print progress before answering). Strict about the envelope:
    ``status`` is ``"ok"`` or ``"error"``; ``error`` a string; ``retry`` a boolean;
    ``events`` a list of objects with a string ``type``; ``state_updates`` an object;
    ``logs`` a list of objects. ``null`` counts as absent. ``session`` is kept as
    it is, whatever it is: a v2 plugin written for Ductile, where it means nothing,
    must not fail for having one. Unknown keys are ignored (so an interactive
    response's ``type`` is too).

    Refused as invalid, wherever it is: what could not be stored as JSON text, a
    lone surrogate (``"\\ud800"``, named by its path: ``result.x``), nesting deeper
    than `MAX_RESPONSE_DEPTH`, an integer too long to convert.  Duplicate keys (the
    last wins) and NaN or overflowing numbers (stored as ``null``) are let through.
    """
    # Invalid UTF-8 becomes U+FFFD rather than a failure, as in Go's encoding/json.
    text = stdout.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    if not text:
        return "empty output"
    try:
        document = _parse(text)
    except JsonRefused as exc:
        return str(exc)
    except ValueError:
        try:
            document = _last_line_object(text)
        except JsonRefused as exc:
            return str(exc)
        if document is None:
            return "not JSON"
    if not isinstance(document, dict):
        return f"not a JSON object (got {json_kind(document)})"
    return _envelope(document)


def _parse(text: str) -> Any:
    return loads(text, max_depth=MAX_RESPONSE_DEPTH, unique_keys=False, finite_numbers=False)


def _last_line_object(text: str) -> dict[str, Any] | None:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    try:
        candidate = _parse(lines[-1])
    except JsonRefused:
        raise
    except ValueError:
        return None
    return candidate if isinstance(candidate, dict) else None


def _envelope(document: dict[str, Any]) -> Response | str:
    status = document.get("status")
    if status not in ("ok", "error"):
        return f"status must be 'ok' or 'error', got {_short_repr(status)}"

    error = document.get("error")
    if error is not None and not isinstance(error, str):
        return f"error must be a string, got {json_kind(error)}"

    retry = document.get("retry")
    if retry is None:
        retry = True
    elif not isinstance(retry, bool):
        return f"retry must be a boolean, got {json_kind(retry)}"

    events = document.get("events")
    if events is None:
        events = []
    if not isinstance(events, list):
        return f"events must be a list, got {json_kind(events)}"
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            return f"events[{index}] must be an object, got {json_kind(event)}"
        if not isinstance(event.get("type"), str) or not event["type"]:
            return f"events[{index}] must have a non-empty string 'type'"

    state_updates = document.get("state_updates")
    if state_updates is None:
        state_updates = {}
    if not isinstance(state_updates, dict):
        return f"state_updates must be an object, got {json_kind(state_updates)}"

    logs = document.get("logs")
    if logs is None:
        logs = []
    if not isinstance(logs, list):
        return f"logs must be a list, got {json_kind(logs)}"
    for index, entry in enumerate(logs):
        if not isinstance(entry, dict):
            return f"logs[{index}] must be an object, got {json_kind(entry)}"

    return Response(
        status=status,
        result=document.get("result"),
        error=error,
        retry=retry,
        events=tuple(events),
        state_updates=state_updates,
        logs=tuple(logs),
        session=document.get("session"),
        complete=document.get("complete") is True,
    )


class TerminationReason(enum.Enum):
    """Why the daemon stopped a plugin before it finished on its own."""

    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"
    STDOUT_OVERFLOW = "stdout_overflow"
    #: An interactive session was completed and no response line followed in time.
    UNANSWERED = "unanswered"


@attrs.frozen(kw_only=True)
class ProcessResult:
    """Everything observed about one plugin run, with no interpretation yet.

    ``exit_code`` is ``None`` when the process was killed by a signal (then ``signal``
    is set) or never started (then ``spawn_error`` is set, with ``spawn_errno`` when
    the OS gave one). ``terminated`` is set only when the daemon asked the process to
    stop before it had exited by itself. ``timeout`` is the limit the run had, so
    messages can quote it.
    """

    exit_code: int | None
    signal: int | None
    stdout: bytes
    stdout_overflow: bool
    stderr_tail: bytes
    stderr_truncated: bool
    terminated: TerminationReason | None
    spawn_error: str | None = None
    spawn_errno: int | None = None
    timeout: float | None = None
    duration: float
    interactive: bool = False
    idle: bool = False
    #: The stdout cap the run had, so an overflow can quote it.
    stdout_max: int | None = None

    @classmethod
    def in_daemon(
        cls, response: Mapping[str, Any] | None, *, timeout: float, duration: float
    ) -> ProcessResult:
        """What a built-in plugin's run in the daemon (a relay delivery, a sync) saw, as
        if a process had printed ``response``; None: it ran out of ``timeout``."""
        return cls(
            exit_code=0,
            signal=None,
            stdout=b"" if response is None else json.dumps(response).encode() + b"\n",
            stdout_overflow=False,
            stderr_tail=b"",
            stderr_truncated=False,
            terminated=TerminationReason.TIMEOUT if response is None else None,
            timeout=timeout,
            duration=duration,
        )


class OutcomeKind(enum.Enum):
    """How a run ended, in job-status terms."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    #: Stopped by daemon shutdown: the job goes back to the queue, it did not fail.
    INTERRUPTED = "interrupted"


@attrs.frozen(kw_only=True)
class Outcome:
    """The verdict on one run.

    ``response`` is set only when the plugin's answer counts: a successful run, or a
    run where the plugin itself reported an error. A run the daemon stopped keeps its
    stdout only as ``raw_output``, so nothing it said (events, state updates) is
    applied by accident. ``raw_output`` is the decoded stdout, capped at
    `RAW_OUTPUT_MAX`, whenever there is no counted response and stdout was not empty.
    """

    kind: OutcomeKind
    retryable: bool
    error: str | None
    response: Response | None
    raw_output: str | None
    exit_code: int | None
    signal: int | None
    stderr_tail: str
    #: A loop job's end: its completion reason and every iteration (JSON), kept in
    #: the job's result beside the last answer.  None for every other job.
    loop: Mapping[str, Any] | None = None


def decide_outcome(result: ProcessResult) -> Outcome:
    """Apply the outcome matrix to one run. Rows are checked in this order:

    ==============================  ===========  =========  ==============================
    condition                       kind         retryable  error
    ==============================  ===========  =========  ==============================
    spawn failed                    failed       transient  ``failed to start plugin: …``
                                                 errno only
    terminated: timeout             timed_out    yes        ``timed out after Ns``
    terminated: cancelled           cancelled    no         ``cancelled``
    terminated: shutdown            interrupted  yes        ``interrupted by shutdown``
    terminated: unanswered          failed       yes        ``the session was completed
                                                            but no response line …``
    stdout over its cap             failed       yes        ``stdout exceeded … cap``
    valid response, status ok       succeeded    no         —  (exit code/signal ignored)
    valid response, status error    failed       unless     the plugin's error
                                                 retry is
                                                 false or
                                                 exit 78
    killed by a signal              failed       yes        ``killed by signal SIGSEGV (11)``
    exit code 78                    failed       no         ``plugin reported a
                                                            configuration error …``
    anything else                   failed       yes        ``invalid response: … (exit
                                                            code N)``
    ==============================  ===========  =========  ==============================

    Errors without a valid response end with the last stderr line, when there is one.
    An interactive run is judged by the same rows, its response line standing for
    its stdout: one that sent none is ``invalid response: no response line``, and a
    timeout says whether the idle limit or ``max_duration`` struck.
    """
    stderr_text = result.stderr_tail.decode("utf-8", errors="replace")
    raw = _raw_output(result.stdout)

    def verdict(
        kind: OutcomeKind,
        *,
        retryable: bool,
        error: str | None,
        response: Response | None = None,
        raw_output: str | None = raw,
    ) -> Outcome:
        return Outcome(
            kind=kind,
            retryable=retryable,
            error=error,
            response=response,
            raw_output=raw_output,
            exit_code=result.exit_code,
            signal=result.signal,
            stderr_tail=stderr_text,
        )

    if result.spawn_error is not None:
        return verdict(
            OutcomeKind.FAILED,
            retryable=result.spawn_errno in _TRANSIENT_SPAWN_ERRNOS,
            error=f"failed to start plugin: {result.spawn_error}",
        )

    if result.terminated is TerminationReason.TIMEOUT:
        limit = result.timeout if result.timeout is not None else result.duration
        error = f"timed out after {_seconds(limit)}"
        if result.interactive:
            error = (
                f"timed out: no input or output for {_seconds(limit)}"
                if result.idle
                else f"timed out: the session passed its max_duration ({_seconds(limit)})"
            )
        return verdict(OutcomeKind.TIMED_OUT, retryable=True, error=error)
    if result.terminated is TerminationReason.CANCELLED:
        return verdict(OutcomeKind.CANCELLED, retryable=False, error="cancelled")
    if result.terminated is TerminationReason.SHUTDOWN:
        return verdict(OutcomeKind.INTERRUPTED, retryable=True, error="interrupted by shutdown")
    if result.terminated is TerminationReason.UNANSWERED:
        return verdict(
            OutcomeKind.FAILED,
            retryable=True,
            error="the session was completed but no response line followed; the plugin was stopped",
        )
    if result.stdout_overflow or result.terminated is TerminationReason.STDOUT_OVERFLOW:
        return verdict(
            OutcomeKind.FAILED,
            retryable=True,
            error=f"stdout exceeded {_size(result.stdout_max or len(result.stdout))} cap",
        )

    decoded = decode_response(result.stdout)
    if result.interactive and not result.stdout:
        decoded = "no response line"
    if isinstance(decoded, Response):
        if decoded.status == "ok":
            return verdict(
                OutcomeKind.SUCCEEDED,
                retryable=False,
                error=None,
                response=decoded,
                raw_output=None,
            )
        return verdict(
            OutcomeKind.FAILED,
            retryable=decoded.retry and result.exit_code != EXIT_CONFIG,
            error=decoded.error or "plugin reported an error",
            response=decoded,
            raw_output=None,
        )

    hint = _stderr_hint(stderr_text)
    if result.signal is not None:
        return verdict(
            OutcomeKind.FAILED,
            retryable=True,
            error=f"killed by signal {_signal_name(result.signal)}{hint}",
        )
    if result.exit_code == EXIT_CONFIG:
        return verdict(
            OutcomeKind.FAILED,
            retryable=False,
            error=f"plugin reported a configuration error (exit code {EXIT_CONFIG}){hint}",
        )
    return verdict(
        OutcomeKind.FAILED,
        retryable=True,
        error=f"invalid response: {decoded} (exit code {result.exit_code}){hint}",
    )


def _raw_output(stdout: bytes) -> str | None:
    if not stdout:
        return None
    return stdout[:RAW_OUTPUT_MAX].decode("utf-8", errors="replace")


def _stderr_hint(stderr_text: str) -> str:
    for line in reversed(stderr_text.splitlines()):
        line = line.strip()
        if line:
            if len(line) > _STDERR_HINT_MAX:
                line = line[: _STDERR_HINT_MAX - 1] + "…"
            return f": {line}"
    return ""


def _signal_name(number: int) -> str:
    try:
        name = signal_module.Signals(number).name
    except ValueError:
        return f"{number}"
    return f"{name} ({number})"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def _short_repr(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "nothing"
    return text if len(text) <= 40 else text[:39] + "…"
