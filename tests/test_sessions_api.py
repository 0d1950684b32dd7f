"""The session routes' decisions, without a daemon: bodies, conflicts, the follow-up job."""

from __future__ import annotations

import pytest
from fakes import stored_job

from chamberlain.plugins.conversation import MESSAGE_MAX_BYTES
from chamberlain.records import JobStatus, SessionRefusal, SessionReply
from chamberlain.web.errors import ApiError, JobConflict
from chamberlain.web.sessions import (
    follow_up_job,
    parse_instruction,
    parse_message,
    refusal_error,
)


def test_a_message_body_is_one_non_empty_string() -> None:
    assert parse_message(b'{"message": "hi there"}') == "hi there"
    for body, error in [
        (b"", "message must be a non-empty string"),
        (b'{"message": "  "}', "message must be a non-empty string"),
        (b'{"message": ["a"]}', "message must be a non-empty string"),
        (b'{"message": "a", "to": "b"}', "unknown field 'to'; expected message"),
        (b"[1]", "request body must be a JSON object, not an array"),
    ]:
        with pytest.raises(ApiError) as info:
            parse_message(body)
        assert (info.value.status, info.value.message) == (400, error)
    too_long = '{"message": "' + "\u00e9" * (MESSAGE_MAX_BYTES // 2 + 1) + '"}'
    with pytest.raises(ApiError, match=f"longer than {MESSAGE_MAX_BYTES} bytes"):
        parse_message(too_long.encode())


def test_an_instruction_is_a_prompt_and_perhaps_a_payload() -> None:
    assert parse_instruction(b'{"prompt": "go"}') == ("go", None)
    assert parse_instruction(b'{"prompt": "go", "payload": {"a": 1}}') == ("go", {"a": 1})
    with pytest.raises(ApiError, match="payload must be an object"):
        parse_instruction(b'{"prompt": "go", "payload": "x"}')
    with pytest.raises(ApiError, match="prompt must be a non-empty string"):
        parse_instruction(b'{"payload": {}}')


@pytest.mark.parametrize(
    ("refused", "status", "text"),
    [
        (SessionRefusal.BUSY, 503, "too many messages waiting"),
        (SessionRefusal.NOT_INTERACTIVE, 409, "is not an interactive command"),
        (SessionRefusal.COMPLETING, 409, "session is being completed"),
        (SessionRefusal.NOT_RUNNING, 409, "is no longer running"),
    ],
)
def test_each_refusal_of_a_session_has_its_answer(
    refused: SessionRefusal, status: int, text: str
) -> None:
    job = stored_job(id="j", status=JobStatus.SUCCEEDED)
    error = refusal_error(job, SessionReply(job_id="j", refused=refused))
    assert error.status == status and text in error.message
    if isinstance(error, JobConflict):
        assert error.body()["status"] in ("succeeded", "running")
    else:
        assert error.headers["Retry-After"] == "1"


def test_a_follow_up_keeps_the_old_job_s_inputs_unless_told_otherwise() -> None:
    old = stored_job(
        id="old",
        plugin="claude_code",
        command="run",
        payload={"prompt": "first"},
        context={"ductile_plugin": "claude_code"},
        timeout=120.0,
        mcp_servers=("github",),
        status=JobStatus.SUCCEEDED,
    )
    new = follow_up_job(
        old,
        prompt="then this",
        payload=None,
        max_attempts=2,
        submitted_by="token:ci",
        callback_url="http://127.0.0.1/cb",
    )
    assert (new.plugin, new.command, new.payload) == ("claude_code", "run", {"prompt": "first"})
    assert (new.timeout, new.mcp_servers, new.callback_url) == (
        120.0,
        ("github",),
        new.callback_url,
    )
    assert (new.follows, new.follow_up) == ("old", {"prompt": "then this"})
    assert new.id != old.id and new.dedupe_key is None
    given = follow_up_job(
        old,
        prompt="x",
        payload={"prompt": "other"},
        max_attempts=1,
        submitted_by="a",
        callback_url=None,
    )
    assert given.payload == {"prompt": "other"}
