"""Redaction of configured secrets: the rules, and where job data and log lines pass them."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from chamberlain.actors.mail import JobStoreRequest, RecordOutput
from chamberlain.actors.output import forward_output
from chamberlain.config import parse_config
from chamberlain.daemon import jsonlog
from chamberlain.plugins.protocol import (
    RAW_OUTPUT_MAX,
    Outcome,
    OutcomeKind,
    ProcessResult,
    Response,
    decide_outcome,
)
from chamberlain.redaction import Redactor, configured_secrets, redact_outcome

SECRETS = {"api.auth.api_key": "admin-key-123", "api.auth.tokens[ci]": "ci-token-456"}


@pytest.fixture
def redactor() -> Redactor:
    return Redactor.from_secrets(SECRETS)


def test_every_configured_token_and_secret_is_named() -> None:
    config = parse_config(
        {
            "api": {
                "auth": {
                    "api_key": "k",
                    "tokens": [
                        {"name": "ci", "token": "t1", "scopes": ["*"]},
                        {"name": "ro", "token": "t2", "scopes": ["read:*"]},
                    ],
                }
            },
            "webhooks": {"endpoints": [{"path": "/hooks/github", "plugin": "echo", "secret": "w"}]},
            "callbacks": {"secret": "c"},
        },
        base_dir=Path("/cfg"),
        environ={},
    )
    assert configured_secrets(config) == {
        "api.auth.api_key": "k",
        "api.auth.tokens[ci]": "t1",
        "api.auth.tokens[ro]": "t2",
        "webhooks.endpoints[/hooks/github].secret": "w",
        "callbacks.secret": "c",
    }


def test_without_secrets_nothing_is_touched() -> None:
    config = parse_config({}, base_dir=Path("/cfg"), environ={})
    redactor = Redactor.from_config(config)
    assert not redactor
    text, data = "admin-key-123", {"a": ["admin-key-123"]}
    assert redactor.text(text) is text
    assert redactor.data(data) is data


def test_values_are_replaced_by_their_names(redactor: Redactor) -> None:
    assert redactor.text("key=admin-key-123 token=ci-token-456, again admin-key-123") == (
        "key=[redacted:api.auth.api_key] token=[redacted:api.auth.tokens[ci]],"
        " again [redacted:api.auth.api_key]"
    )


def test_text_without_a_secret_is_returned_as_is(redactor: Redactor) -> None:
    text = "nothing to see, admin-key-12"
    assert redactor.text(text) is text


def test_the_longest_of_secrets_starting_at_one_place_is_hidden_whole() -> None:
    redactor = Redactor.from_secrets({"short": "abc", "long": "abcdef"})
    assert redactor.text("xabcdefx abcx") == "x[redacted:long]x [redacted:short]x"


def test_overlapping_secrets_are_both_covered() -> None:
    redactor = Redactor.from_secrets({"first": "abcd", "second": "cdefgh"})
    assert redactor.text("xabcdefghx") == "x[redacted:first, second]x"
    # A chain of overlaps is one replacement.
    assert redactor.text("abcdefgh abcd") == "[redacted:first, second] [redacted:first]"


def test_a_value_configured_twice_is_named_after_its_first_name() -> None:
    redactor = Redactor.from_secrets({"api.auth.api_key": "same", "callbacks.secret": "same"})
    assert redactor.text("same") == "[redacted:api.auth.api_key]"


def test_a_start_of_a_secret_where_a_text_was_cut_is_hidden(redactor: Redactor) -> None:
    assert redactor.text("token admin-k", cut=True) == "token [redacted:api.auth.api_key]"
    assert redactor.text("token admin-k\u2026", cut=True) == (
        "token [redacted:api.auth.api_key]\u2026"
    )
    # Only where the text was cut, and only a start long enough to matter.
    assert redactor.text("token admin-k") == "token admin-k"
    assert redactor.text("token adm", cut=True) == "token adm"


def test_data_redacts_strings_and_keys_at_any_depth(redactor: Redactor) -> None:
    data = {"env": {"KEY": "admin-key-123", "admin-key-123": 1}, "list": [["ci-token-456", 2]]}
    assert redactor.data(data) == {
        "env": {"KEY": "[redacted:api.auth.api_key]", "[redacted:api.auth.api_key]": 1},
        "list": [["[redacted:api.auth.tokens[ci]]", 2]],
    }
    clean = {"a": [1, "two", None, {"b": True}]}
    assert redactor.data(clean) is clean


def test_data_nested_beyond_the_recursion_limit_is_redacted(redactor: Redactor) -> None:
    depth = sys.getrecursionlimit() * 3
    data: Any = "admin-key-123"
    for _ in range(depth):
        data = [data]
    result = redactor.data(data)
    for _ in range(depth):
        result = result[0]
    assert result == "[redacted:api.auth.api_key]"


def process_result(stdout: bytes, stderr: bytes = b"", exit_code: int = 0) -> ProcessResult:
    return ProcessResult(
        exit_code=exit_code,
        signal=None,
        stdout=stdout,
        stdout_overflow=False,
        stderr_tail=stderr,
        stderr_truncated=False,
        terminated=None,
        duration=0.1,
    )


def test_an_outcome_keeps_no_secret_of_its_response(redactor: Redactor) -> None:
    response = {
        "status": "error",
        "error": "denied for admin-key-123",
        "result": {"token": "ci-token-456"},
        "events": [{"type": "t", "payload": {"k": "admin-key-123"}}],
        "state_updates": {"last": "ci-token-456"},
        "logs": [{"level": "info", "message": "admin-key-123"}],
    }
    outcome = decide_outcome(
        process_result(json.dumps(response).encode(), b"stderr says ci-token-456\n")
    )
    redacted = redact_outcome(outcome, redactor)
    assert redacted.response is not None
    assert redacted.response.to_json() == {
        "status": "error",
        "error": "denied for [redacted:api.auth.api_key]",
        "result": {"token": "[redacted:api.auth.tokens[ci]]"},
        "retry": True,
        "events": [{"type": "t", "payload": {"k": "[redacted:api.auth.api_key]"}}],
        "state_updates": {"last": "[redacted:api.auth.tokens[ci]]"},
        "logs": [{"level": "info", "message": "[redacted:api.auth.api_key]"}],
    }
    assert redacted.error == "denied for [redacted:api.auth.api_key]"
    assert redacted.stderr_tail == "stderr says [redacted:api.auth.tokens[ci]]\n"
    assert redacted.kind is outcome.kind
    assert redacted.retryable is outcome.retryable


def test_an_error_quoting_a_cut_stderr_line_keeps_no_start_of_a_secret(
    redactor: Redactor,
) -> None:
    # The error quotes the last stderr line, cut to 200 characters: here mid-secret.
    line = "x" * 190 + " admin-key-123"
    outcome = decide_outcome(process_result(b"not json", line.encode(), exit_code=1))
    assert outcome.error is not None
    assert outcome.error.endswith(" admin-ke\u2026")
    redacted = redact_outcome(outcome, redactor).error
    assert redacted is not None
    assert "admin-k" not in redacted
    assert redacted.endswith(" [redacted:api.auth.api_key]\u2026")


def test_raw_output_cut_at_its_cap_keeps_no_start_of_a_secret(redactor: Redactor) -> None:
    stdout = b"y" * (RAW_OUTPUT_MAX - 6) + b"admin-key-123"
    outcome = decide_outcome(process_result(stdout))
    assert outcome.raw_output is not None
    assert outcome.raw_output.endswith("admin-")
    raw = redact_outcome(outcome, redactor).raw_output
    assert raw is not None
    assert raw.endswith("y[redacted:api.auth.api_key]")


def test_an_outcome_without_a_secret_is_left_alone(redactor: Redactor) -> None:
    outcome = Outcome(
        kind=OutcomeKind.SUCCEEDED,
        retryable=False,
        error=None,
        response=Response(status="ok", result={"n": 1}),
        raw_output=None,
        exit_code=0,
        signal=None,
        stderr_tail="",
    )
    assert redact_outcome(outcome, redactor) == outcome
    assert redact_outcome(outcome, Redactor()) is outcome


async def test_output_lines_are_stored_redacted(redactor: Redactor) -> None:
    store_tx, store_rx = trio.open_memory_channel[JobStoreRequest](10)
    stored: list[str] = []

    async def store() -> None:
        async for request in store_rx:
            assert isinstance(request, RecordOutput)
            stored.extend(text for _, text, _ in request.lines)
            request.reply.send(len(request.lines))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store)
        async with forward_output(
            store_tx, "job-1", now=lambda: 1.0, redactor=redactor, interval=0.01
        ) as forwarder:
            forwarder.on_line("using admin-key-123")
            forwarder.on_output("plain line")
        nursery.cancel_scope.cancel()
    # stderr and an interactive plugin's output alike.
    assert stored == ["using [redacted:api.auth.api_key]", "plain line"]


def test_log_lines_are_written_redacted(redactor: Redactor) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        jsonlog.configure(logging.INFO, stream)
        jsonlog.redact_with(redactor)
        log = logging.getLogger("chamberlain.test")
        try:
            raise RuntimeError("boom admin-key-123")
        except RuntimeError:
            log.exception(
                "job said %s",
                "ci-token-456",
                extra={"problems": ["admin-key-123"], "path": Path("/x/ci-token-456")},
            )
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    text = stream.getvalue()
    assert "admin-key-123" not in text
    assert "ci-token-456" not in text
    line = json.loads(text)
    assert line["msg"] == "job said [redacted:api.auth.tokens[ci]]"
    assert line["problems"] == ["[redacted:api.auth.api_key]"]
    assert line["path"] == "/x/[redacted:api.auth.tokens[ci]]"
    assert "RuntimeError: boom [redacted:api.auth.api_key]" in line["exc"]


def test_a_secret_that_json_escapes_is_found_in_data_and_in_json_text() -> None:
    redactor = Redactor.from_secrets({"callbacks.secret": 'quo"te\\'})
    assert redactor.data({"k": ['a quo"te\\ b']}) == {"k": ["a [redacted:callbacks.secret] b"]}
    assert redactor.text('{"k": "quo\\"te\\\\"}') == '{"k": "[redacted:callbacks.secret]"}'


def test_objects_that_are_not_json_are_left_as_they_are(redactor: Redactor) -> None:
    marker = object()
    assert redactor.data({"a": marker, "b": "admin-key-123"}) == {
        "a": marker,
        "b": "[redacted:api.auth.api_key]",
    }


def test_one_name_may_have_several_values() -> None:
    # A rotated secret: the value a running job was given and the one the next gets.
    redactor = Redactor.from_pairs([("github", "ghp-new-222"), ("github", "ghp-old-111")])
    assert redactor.text("old ghp-old-111, new ghp-new-222") == (
        "old [redacted:github], new [redacted:github]"
    )
