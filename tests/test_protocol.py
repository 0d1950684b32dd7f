"""Ductile protocol v2: request encoding, response decoding, and the outcome matrix."""

from __future__ import annotations

import errno
import json
import signal
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chamberlain.plugins.protocol import (
    EXIT_CONFIG,
    MAX_RESPONSE_DEPTH,
    RAW_OUTPUT_MAX,
    OutcomeKind,
    ProcessResult,
    Response,
    TerminationReason,
    decide_outcome,
    decode_response,
    encode_request,
)

DEADLINE = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _request(**overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "job_id": "job-1",
        "command": "handle",
        "config": {"message": "hi"},
        "state": {"n": 1},
        "context": {"trace": "t"},
        "payload": {"url": "https://example.org"},
        "event": None,
        "deadline_at": DEADLINE,
    }
    arguments.update(overrides)
    return encode_request(**arguments)


# --------------------------------------------------------------------- encode_request


def test_encode_request_exact_bytes() -> None:
    assert _request() == (
        b'{"protocol":2,"job_id":"job-1","command":"handle","config":{"message":"hi"},'
        b'"state":{"n":1},"context":{"trace":"t"},"payload":{"url":"https://example.org"},'
        b'"deadline_at":"2030-01-02T03:04:05.678Z"}\n'
    )


def test_encode_request_event_and_workspace_only_when_given() -> None:
    event = {"id": "e1", "type": "api.trigger", "payload": {"a": 1}}
    line = _request(payload=None, event=event, workspace_dir="/tmp/ws")
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    decoded = json.loads(line)
    assert list(decoded) == [
        "protocol",
        "job_id",
        "command",
        "config",
        "state",
        "context",
        "event",
        "deadline_at",
        "workspace_dir",
    ]
    assert decoded["event"] == event
    assert decoded["workspace_dir"] == "/tmp/ws"

    plain = json.loads(_request(payload=None))
    assert "payload" not in plain
    assert "event" not in plain
    assert "workspace_dir" not in plain


def test_encode_request_keeps_non_ascii_and_converts_deadline_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    line = _request(payload={"name": "Zoë ✓"}, deadline_at=datetime(2030, 1, 1, 2, 0, tzinfo=paris))
    assert "Zoë ✓".encode() in line
    assert json.loads(line)["deadline_at"] == "2030-01-01T00:00:00.000Z"


def test_encode_request_refuses_naive_deadline() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _request(deadline_at=datetime(2030, 1, 1))


# -------------------------------------------------------------------- decode_response


def test_decode_full_response() -> None:
    stdout = json.dumps(
        {
            "status": "ok",
            "result": {"n": 1},
            "error": None,
            "retry": False,
            "events": [{"type": "x.done", "payload": {"a": 1}}],
            "state_updates": {"cursor": 5},
            "logs": [{"level": "info", "message": "hi"}],
            "extra_key": "ignored",
        }
    ).encode()
    response = decode_response(stdout)
    assert response == Response(
        status="ok",
        result={"n": 1},
        retry=False,
        events=({"type": "x.done", "payload": {"a": 1}},),
        state_updates={"cursor": 5},
        logs=({"level": "info", "message": "hi"},),
    )
    assert isinstance(response, Response)
    assert response.to_json() == {
        "status": "ok",
        "result": {"n": 1},
        "error": None,
        "retry": False,
        "events": [{"type": "x.done", "payload": {"a": 1}}],
        "state_updates": {"cursor": 5},
        "logs": [{"level": "info", "message": "hi"}],
    }


def test_decode_minimal_response_gets_defaults() -> None:
    response = decode_response(b'  \n{"status":"error"}\n\n')
    assert response == Response(status="error")
    assert isinstance(response, Response)
    assert response.retry is True
    assert response.to_json()["events"] == []


def test_decode_nulls_count_as_absent() -> None:
    response = decode_response(
        b'{"status":"ok","retry":null,"events":null,"state_updates":null,"logs":null}'
    )
    assert response == Response(status="ok")


def test_decode_takes_last_line_after_junk() -> None:
    stdout = b'starting up...\n{"partial": \nprogress 50%\n{"status":"ok","result":7}\n'
    assert decode_response(stdout) == Response(status="ok", result=7)


def test_decode_pretty_printed_response() -> None:
    stdout = json.dumps({"status": "ok", "result": [1, 2]}, indent=2).encode()
    assert decode_response(stdout) == Response(status="ok", result=[1, 2])


def test_decode_invalid_utf8_is_replaced_not_fatal() -> None:
    response = decode_response(b'{"status":"ok","result":"a\xffb"}')
    assert response == Response(status="ok", result="a\ufffdb")


@pytest.mark.parametrize(
    ("stdout", "reason"),
    [
        pytest.param(b"", "empty output", id="empty"),
        pytest.param(b"  \n\t\n", "empty output", id="whitespace"),
        pytest.param(b"hello world\n", "not JSON", id="text"),
        pytest.param(b'{"status":"ok"', "not JSON", id="truncated"),
        pytest.param(b'junk\n{"status":"ok"', "not JSON", id="truncated-after-junk"),
        pytest.param(b'junk\n["status","ok"]', "not JSON", id="last-line-not-object"),
        pytest.param(b"[1, 2]", "not a JSON object (got an array)", id="array"),
        pytest.param(b'"ok"', "not a JSON object (got a string)", id="string"),
        pytest.param(b"{}", "status must be 'ok' or 'error', got nothing", id="no-status"),
        pytest.param(b'{"status":"OK"}', "status must be 'ok' or 'error', got \"OK\"", id="case"),
        pytest.param(b'{"status":"ok","error":5}', "error must be a string", id="error-type"),
        pytest.param(b'{"status":"ok","retry":"no"}', "retry must be a boolean", id="retry"),
        pytest.param(b'{"status":"ok","events":{}}', "events must be a list", id="events"),
        pytest.param(
            b'{"status":"ok","events":["x"]}', "events[0] must be an object", id="event-item"
        ),
        pytest.param(
            b'{"status":"ok","events":[{"payload":{}}]}',
            "events[0] must have a non-empty string 'type'",
            id="event-no-type",
        ),
        pytest.param(
            b'{"status":"ok","events":[{"type":3}]}',
            "events[0] must have a non-empty string 'type'",
            id="event-type-type",
        ),
        pytest.param(
            b'{"status":"ok","state_updates":[]}',
            "state_updates must be an object",
            id="state-updates",
        ),
        pytest.param(b'{"status":"ok","logs":"x"}', "logs must be a list", id="logs"),
        pytest.param(b'{"status":"ok","logs":[1]}', "logs[0] must be an object", id="log-item"),
    ],
)
def test_decode_invalid(stdout: bytes, reason: str) -> None:
    decoded = decode_response(stdout)
    assert isinstance(decoded, str)
    assert decoded.startswith(reason)


# ------------------------------------------------------------------------ the matrix


def _result(
    *,
    stdout: bytes = b"",
    exit_code: int | None = 0,
    signal_number: int | None = None,
    stdout_overflow: bool = False,
    stderr: bytes = b"",
    terminated: TerminationReason | None = None,
    spawn_error: str | None = None,
    spawn_errno: int | None = None,
    timeout: float | None = 30.0,
) -> ProcessResult:
    return ProcessResult(
        exit_code=exit_code,
        signal=signal_number,
        stdout=stdout,
        stdout_overflow=stdout_overflow,
        stderr_tail=stderr,
        stderr_truncated=False,
        terminated=terminated,
        spawn_error=spawn_error,
        spawn_errno=spawn_errno,
        timeout=timeout,
        duration=1.5,
    )


OK = b'{"status":"ok","result":1}'
ERROR = b'{"status":"error","error":"upstream 503"}'
ERROR_NO_RETRY = b'{"status":"error","error":"bad input","retry":false}'
ERROR_NO_MESSAGE = b'{"status":"error"}'

MATRIX = [
    # (id, result, kind, retryable, error)
    (
        "spawn-missing-interpreter",
        _result(exit_code=None, spawn_error="No such file", spawn_errno=errno.ENOENT),
        OutcomeKind.FAILED,
        False,
        "failed to start plugin: No such file",
    ),
    (
        "spawn-permission",
        _result(exit_code=None, spawn_error="Permission denied", spawn_errno=errno.EACCES),
        OutcomeKind.FAILED,
        False,
        "failed to start plugin: Permission denied",
    ),
    (
        "spawn-transient",
        _result(exit_code=None, spawn_error="Resource unavailable", spawn_errno=errno.EAGAIN),
        OutcomeKind.FAILED,
        True,
        "failed to start plugin: Resource unavailable",
    ),
    (
        "timeout",
        _result(exit_code=None, signal_number=15, terminated=TerminationReason.TIMEOUT),
        OutcomeKind.TIMED_OUT,
        True,
        "timed out after 30s",
    ),
    (
        "timeout-despite-valid-json",
        _result(stdout=OK, exit_code=0, terminated=TerminationReason.TIMEOUT, timeout=2.5),
        OutcomeKind.TIMED_OUT,
        True,
        "timed out after 2.5s",
    ),
    (
        "cancelled",
        _result(
            stdout=OK, exit_code=None, signal_number=15, terminated=TerminationReason.CANCELLED
        ),
        OutcomeKind.CANCELLED,
        False,
        "cancelled",
    ),
    (
        "shutdown",
        _result(exit_code=None, signal_number=9, terminated=TerminationReason.SHUTDOWN),
        OutcomeKind.INTERRUPTED,
        True,
        "interrupted by shutdown",
    ),
    (
        "stdout-overflow",
        _result(
            stdout=b"x" * (10 * 1024 * 1024),
            exit_code=None,
            signal_number=13,
            stdout_overflow=True,
            terminated=TerminationReason.STDOUT_OVERFLOW,
        ),
        OutcomeKind.FAILED,
        True,
        "stdout exceeded 10 MiB cap",
    ),
    (
        "ok",
        _result(stdout=OK),
        OutcomeKind.SUCCEEDED,
        False,
        None,
    ),
    (
        "ok-nonzero-exit-ignored",
        _result(stdout=OK, exit_code=3),
        OutcomeKind.SUCCEEDED,
        False,
        None,
    ),
    (
        "ok-signal-ignored",
        _result(stdout=OK, exit_code=None, signal_number=11),
        OutcomeKind.SUCCEEDED,
        False,
        None,
    ),
    (
        "error-retry",
        _result(stdout=ERROR, exit_code=1),
        OutcomeKind.FAILED,
        True,
        "upstream 503",
    ),
    (
        "error-retry-false",
        _result(stdout=ERROR_NO_RETRY),
        OutcomeKind.FAILED,
        False,
        "bad input",
    ),
    (
        "error-exit-78",
        _result(stdout=ERROR, exit_code=EXIT_CONFIG),
        OutcomeKind.FAILED,
        False,
        "upstream 503",
    ),
    (
        "error-no-message",
        _result(stdout=ERROR_NO_MESSAGE),
        OutcomeKind.FAILED,
        True,
        "plugin reported an error",
    ),
    (
        "signal-no-response",
        _result(exit_code=None, signal_number=signal.SIGSEGV, stderr=b"boom\n"),
        OutcomeKind.FAILED,
        True,
        "killed by signal SIGSEGV (11): boom",
    ),
    (
        "signal-invalid-response",
        _result(stdout=b'{"status":', exit_code=None, signal_number=signal.SIGKILL),
        OutcomeKind.FAILED,
        True,
        "killed by signal SIGKILL (9)",
    ),
    (
        "exit-78-no-response",
        _result(exit_code=EXIT_CONFIG, stderr=b"missing api_key\n"),
        OutcomeKind.FAILED,
        False,
        "plugin reported a configuration error (exit code 78): missing api_key",
    ),
    (
        "not-json",
        _result(stdout=b"Traceback...\n", exit_code=1, stderr=b"line one\nValueError: x\n\n"),
        OutcomeKind.FAILED,
        True,
        "invalid response: not JSON (exit code 1): ValueError: x",
    ),
    (
        "empty-exit-0",
        _result(stdout=b"", exit_code=0),
        OutcomeKind.FAILED,
        True,
        "invalid response: empty output (exit code 0)",
    ),
    (
        "invalid-envelope",
        _result(stdout=b'{"status":"maybe"}', exit_code=0),
        OutcomeKind.FAILED,
        True,
        "invalid response: status must be 'ok' or 'error', got \"maybe\" (exit code 0)",
    ),
]


@pytest.mark.parametrize(
    ("result", "kind", "retryable", "error"),
    [pytest.param(*row[1:], id=row[0]) for row in MATRIX],
)
def test_outcome_matrix(
    result: ProcessResult, kind: OutcomeKind, retryable: bool, error: str | None
) -> None:
    outcome = decide_outcome(result)
    assert (outcome.kind, outcome.retryable, outcome.error) == (kind, retryable, error)
    assert outcome.exit_code == result.exit_code
    assert outcome.signal == result.signal
    assert outcome.stderr_tail == result.stderr_tail.decode()


def test_outcome_response_only_when_it_counts() -> None:
    succeeded = decide_outcome(_result(stdout=OK))
    assert succeeded.response == Response(status="ok", result=1)
    assert succeeded.raw_output is None

    failed = decide_outcome(_result(stdout=ERROR))
    assert failed.response == Response(status="error", error="upstream 503")
    assert failed.raw_output is None

    # The daemon stopped it: whatever it printed is evidence, not an answer to apply.
    timed_out = decide_outcome(_result(stdout=OK, terminated=TerminationReason.TIMEOUT))
    assert timed_out.response is None
    assert timed_out.raw_output == OK.decode()


def test_outcome_keeps_raw_output_capped() -> None:
    stdout = b"<html>" + b"x" * (2 * RAW_OUTPUT_MAX)
    outcome = decide_outcome(_result(stdout=stdout, exit_code=0))
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.raw_output is not None
    assert len(outcome.raw_output) == RAW_OUTPUT_MAX
    assert outcome.raw_output.startswith("<html>")


def test_outcome_empty_stdout_has_no_raw_output() -> None:
    assert decide_outcome(_result(stdout=b"", exit_code=1)).raw_output is None


def test_outcome_stderr_hint_is_short_and_decoded_leniently() -> None:
    stderr = b"x" * 1000 + b"\xff\n"
    outcome = decide_outcome(_result(stdout=b"nope", exit_code=2, stderr=stderr))
    assert outcome.error is not None
    assert outcome.error.startswith("invalid response: not JSON (exit code 2): xxx")
    assert len(outcome.error) < 300
    assert outcome.stderr_tail.endswith("\ufffd\n")


def test_outcome_unknown_signal_number() -> None:
    outcome = decide_outcome(_result(exit_code=None, signal_number=200))
    assert outcome.error == "killed by signal 200"


def test_timeout_message_falls_back_to_duration() -> None:
    outcome = decide_outcome(_result(terminated=TerminationReason.TIMEOUT, timeout=None))
    assert outcome.error == "timed out after 1.5s"


# ------------------------------------------------- responses the store could not keep


def nested_result(levels: int) -> bytes:
    """A response whose result is ``levels`` arrays deep (the envelope adds one)."""
    return b'{"status":"ok","result":' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize(
    ("stdout", "reason"),
    [
        pytest.param(
            b'{"status":"ok","result":{"x":"\\ud800"}}',
            "a lone surrogate (U+D800) at result.x is not valid Unicode",
            id="surrogate-in-result",
        ),
        pytest.param(
            b'{"status":"ok","events":[{"type":"a","payload":{"\\udc00":1}}]}',
            "a lone surrogate (U+DC00) in a key of events[0].payload is not valid Unicode",
            id="surrogate-in-event-key",
        ),
        pytest.param(
            b'{"status":"error","error":"bad \\udbff"}',
            "a lone surrogate (U+DBFF) at error is not valid Unicode",
            id="surrogate-in-error",
        ),
        pytest.param(
            b'progress\n{"status":"ok","state_updates":{"k":"\\ud800"}}',
            "a lone surrogate (U+D800) at state_updates.k",
            id="surrogate-in-last-line",
        ),
        pytest.param(
            nested_result(MAX_RESPONSE_DEPTH),
            f"nested more than {MAX_RESPONSE_DEPTH} levels deep",
            id="one-level-too-deep",
        ),
        pytest.param(
            nested_result(100_000),
            f"nested more than {MAX_RESPONSE_DEPTH} levels deep",
            id="past-the-recursion-limit",
        ),
        pytest.param(
            b'{"status":"ok","result":' + b"9" * 5000 + b"}",
            "integer too long: more than 4300 digits",
            id="long-integer",
        ),
    ],
)
def test_a_response_that_could_not_be_stored_is_invalid(stdout: bytes, reason: str) -> None:
    decoded = decode_response(stdout)
    assert isinstance(decoded, str)
    assert decoded.startswith(reason)
    outcome = decide_outcome(_result(stdout=stdout))
    # The outcome matrix's invalid-response row: failed, retryable, raw stdout kept.
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.retryable is True
    assert outcome.response is None
    assert outcome.error is not None
    assert outcome.error.startswith(f"invalid response: {reason}")
    assert "set_int_max_str_digits" not in outcome.error
    assert outcome.raw_output == stdout[:RAW_OUTPUT_MAX].decode()
    # What is kept can be encoded: the escape is text, not the surrogate itself.
    assert outcome.raw_output.encode("utf-8")


def test_a_response_just_within_the_depth_limit_is_valid() -> None:
    response = decode_response(nested_result(MAX_RESPONSE_DEPTH - 1))
    assert isinstance(response, Response)
    assert response.status == "ok"


def test_surrogate_pairs_duplicates_and_nan_from_a_plugin_are_still_accepted() -> None:
    # Lenient where Ductile is: the last duplicate wins; NaN is stored as null.
    response = decode_response(
        b'{"status":"ok","result":{"face":"\\ud83d\\ude00","n":NaN,"a":1,"a":2}}'
    )
    assert isinstance(response, Response)
    assert response.result["face"] == "\U0001f600"
    assert response.result["a"] == 2
