"""The interactive protocol: its line codec (pure) and interactive runs of real processes.

Processes are tiny ``/bin/sh`` scripts on the real clock; every test bounds itself,
and waits poll a condition with a deadline.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from chamberlain.plugins.conversation import (
    COMPLETE_LINE,
    Answer,
    Line,
    Output,
    Text,
    Waiting,
    decode_line,
    inherited_session,
    input_line,
)
from chamberlain.plugins.process import Conversation, Limits, ProcessControl, run_plugin
from chamberlain.plugins.protocol import (
    OutcomeKind,
    ProcessResult,
    TerminationReason,
    decide_outcome,
    decode_response,
    encode_request,
)

FAST = Limits(kill_grace=0.5, linger=0.5)

# -- the codec ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (b'{"type":"output","text":"hi"}', Output("hi")),
        (b'  {"type": "waiting"}\r', Waiting()),
        (b'{"type":"response","status":"ok"}', Answer(b'{"type":"response","status":"ok"}')),
        # Not what the protocol acts on: kept as text, never a failure.
        (b"plain words", Text("plain words")),
        (b'{"type":"output","text":7}', Text('{"type":"output","text":7}')),
        (b'{"type":"mystery"}', Text('{"type":"mystery"}')),
        (b"[1, 2]", Text("[1, 2]")),
        (b'{"type": "output", "text": "x"', Text('{"type": "output", "text": "x"')),
        (b"\xff\xfe odd bytes", Text("\ufffd\ufffd odd bytes")),
        (b"", None),
        (b"   \t", None),
    ],
)
def test_each_stdout_line_is_read_for_what_it_says(raw: bytes, line: Line | None) -> None:
    assert decode_line(raw) == line


def test_a_deeply_nested_line_is_text_not_a_crash() -> None:
    raw = b'{"type":"output","text":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    assert isinstance(decode_line(raw), Text)


def test_an_input_line_is_one_json_object_on_one_line() -> None:
    line = input_line('two\nlines and "quotes" and \u00e9', "id-1")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "type": "input",
        "message": 'two\nlines and "quotes" and \u00e9',
        "message_id": "id-1",
    }
    assert json.loads(COMPLETE_LINE) == {"type": "complete"}


def test_a_response_line_is_a_v2_response_whose_type_is_ignored() -> None:
    response = decode_response(b'{"type":"response","status":"ok","result":1,"session":{"id":"s"}}')
    assert not isinstance(response, str)
    assert response.result == 1 and response.session == {"id": "s"}
    # A v2 plugin's "session" of another kind means nothing to Ductile: kept, not refused.
    kept = decode_response(b'{"status":"ok","session":"s"}')
    assert not isinstance(kept, str) and kept.session == "s"


def test_a_follow_up_inherits_the_newest_session_of_its_chain() -> None:
    assert inherited_session({"id": "new"}, {"session": {"id": "old"}}) == {"id": "new"}
    # A follow-up that failed before its plugin answered passes its own on.
    assert inherited_session(None, {"prompt": "p", "session": {"id": "old"}}) == {"id": "old"}
    assert inherited_session(None, None) is None


def test_the_outcome_of_an_interactive_run_names_what_went_wrong() -> None:
    def result(**fields: object) -> ProcessResult:
        base: dict[str, object] = {
            "exit_code": 0,
            "signal": None,
            "stdout": b"",
            "stdout_overflow": False,
            "stderr_tail": b"",
            "stderr_truncated": False,
            "terminated": None,
            "timeout": 30.0,
            "duration": 1.0,
            "interactive": True,
        }
        return ProcessResult(**{**base, **fields})  # type: ignore[arg-type]

    silent = decide_outcome(result())
    assert (silent.kind, silent.retryable) == (OutcomeKind.FAILED, True)
    assert silent.error == "invalid response: no response line (exit code 0)"
    idle = decide_outcome(result(terminated=TerminationReason.TIMEOUT, idle=True))
    assert idle.kind is OutcomeKind.TIMED_OUT
    assert idle.error == "timed out: no input or output for 30s"
    capped = decide_outcome(result(terminated=TerminationReason.TIMEOUT, timeout=7200.0))
    assert capped.error == "timed out: the session passed its max_duration (7200s)"
    unanswered = decide_outcome(result(terminated=TerminationReason.UNANSWERED))
    assert (unanswered.kind, unanswered.retryable) == (OutcomeKind.FAILED, True)
    ok = decide_outcome(result(stdout=b'{"type":"response","status":"ok","session":{"a":1}}'))
    assert ok.kind is OutcomeKind.SUCCEEDED
    assert ok.response is not None and ok.response.session == {"a": 1}


# -- interactive runs ----------------------------------------------------------------------


def script(directory: Path, body: str) -> Path:
    path = directory / "plugin.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def request() -> bytes:
    return encode_request(
        job_id="job-1",
        command="ask",
        config={},
        state={},
        context={},
        payload={},
        event=None,
        deadline_at=datetime.now(UTC) + timedelta(hours=1),
        interactive=True,
    )


class Heard:
    """The lines a conversation handed over, and a way to wait for the waits among them."""

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self._changed = trio.Event()

    def __call__(self, line: Line) -> None:
        self.lines.append(line)
        self._changed.set()

    async def waits(self, count: int) -> None:
        while self.lines.count(Waiting()) < count:
            await self._changed.wait()
            self._changed = trio.Event()


async def converse(
    entrypoint: Path,
    conversation: Conversation,
    *,
    limits: Limits = FAST,
    control: ProcessControl | None = None,
) -> ProcessResult:
    with trio.fail_after(15):
        return await run_plugin(
            entrypoint=entrypoint,
            cwd=entrypoint.parent,
            request=request(),
            timeout=3600,
            limits=limits,
            control=control,
            conversation=conversation,
        )


# Echoes each input line as an output, waits after each, answers on complete.
ECHO_SESSION = r"""
read -r request
echo '{"type":"waiting"}'
while read -r line; do
  case "$line" in
    *'"complete"'*)
      echo '{"type":"response","status":"ok","result":"done","session":{"n":1}}'; exit 0 ;;
    *)
      echo '{"type":"output","text":"got it"}'; echo 'not json'; echo '{"type":"waiting"}' ;;
  esac
done
"""


async def test_inputs_reach_the_plugin_and_its_lines_come_back_in_order(tmp_path: Path) -> None:
    heard = Heard()
    conversation = Conversation(on_line=heard, idle_timeout=10, max_duration=60)

    async def talk() -> None:
        await heard.waits(1)
        assert conversation.send(input_line("hello", "m1"))
        await heard.waits(2)
        conversation.complete()
        # Completed: nothing more is taken.
        assert not conversation.send(input_line("late", "m2"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(talk)
        result = await converse(script(tmp_path, ECHO_SESSION), conversation)
    assert heard.lines == [Waiting(), Output("got it"), Text("not json"), Waiting()]
    outcome = decide_outcome(result)
    assert outcome.kind is OutcomeKind.SUCCEEDED, outcome.error
    assert outcome.response is not None and outcome.response.session == {"n": 1}


async def test_the_idle_timeout_counts_from_the_last_output(tmp_path: Path) -> None:
    # Output every 0.2 s for a while keeps it alive past the idle limit; silence ends it.
    body = """
read -r request
i=0
while [ $i -lt 6 ]; do echo '{"type":"output","text":"tick"}'; sleep 0.2; i=$((i+1)); done
exec sleep 60
"""
    lines: list[Line] = []
    conversation = Conversation(on_line=lines.append, idle_timeout=0.6, max_duration=60)
    result = await converse(script(tmp_path, body), conversation)
    assert result.terminated is TerminationReason.TIMEOUT and result.idle
    assert lines == [Output("tick")] * 6
    assert decide_outcome(result).error == "timed out: no input or output for 0.6s"


async def test_max_duration_ends_a_session_however_busy(tmp_path: Path) -> None:
    body = """
read -r request
while true; do echo '{"type":"output","text":"busy"}'; sleep 0.1; done
"""
    conversation = Conversation(on_line=lambda line: None, idle_timeout=30, max_duration=1)
    result = await converse(script(tmp_path, body), conversation)
    assert result.terminated is TerminationReason.TIMEOUT and not result.idle
    assert decide_outcome(result).error == "timed out: the session passed its max_duration (1s)"


async def test_a_completed_session_that_never_answers_is_stopped(tmp_path: Path) -> None:
    body = """
read -r request
echo '{"type":"waiting"}'
trap '' TERM
while true; do sleep 0.1; done
"""
    heard = Heard()
    conversation = Conversation(on_line=heard, idle_timeout=30, max_duration=60)

    async def complete_when_waiting() -> None:
        await heard.waits(1)
        conversation.complete()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(complete_when_waiting)
        result = await converse(script(tmp_path, body), conversation)
    assert result.terminated is TerminationReason.UNANSWERED
    assert result.signal is not None  # SIGKILLed after ignoring SIGTERM


async def test_a_plugin_that_answers_but_stays_is_killed_and_its_answer_stands(
    tmp_path: Path,
) -> None:
    body = """
read -r request
echo '{"type":"response","status":"ok","result":"early"}'
echo '{"type":"output","text":"after the response: ignored"}'
trap '' TERM
exec sleep 60
"""
    lines: list[Line] = []
    conversation = Conversation(on_line=lines.append, idle_timeout=30, max_duration=60)
    result = await converse(script(tmp_path, body), conversation)
    assert result.terminated is None
    assert lines == []
    outcome = decide_outcome(result)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.response is not None and outcome.response.result == "early"
    # The plugin answered: it takes no more input.
    assert not conversation.send(input_line("late", "m"))


async def test_the_stdout_cap_counts_every_line(tmp_path: Path) -> None:
    body = """
read -r request
while true; do echo '{"type":"output","text":"0123456789012345678901234567890123456789"}'; done
"""
    conversation = Conversation(on_line=lambda line: None, idle_timeout=30, max_duration=60)
    limits = Limits(stdout_max=64 * 1024, kill_grace=0.5, linger=0.5)
    result = await converse(script(tmp_path, body), conversation, limits=limits)
    assert result.terminated is TerminationReason.STDOUT_OVERFLOW
    assert decide_outcome(result).error == "stdout exceeded 64 KiB cap"


async def test_a_cancelled_session_is_cancelled(tmp_path: Path) -> None:
    body = """
read -r request
echo '{"type":"waiting"}'
exec sleep 60
"""
    control = ProcessControl()
    conversation = Conversation(
        on_line=lambda line: control.terminate(TerminationReason.CANCELLED),
        idle_timeout=30,
        max_duration=60,
    )
    result = await converse(script(tmp_path, body), conversation, control=control)
    assert decide_outcome(result).kind is OutcomeKind.CANCELLED
