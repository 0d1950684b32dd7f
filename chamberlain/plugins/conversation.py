"""Interactive commands and follow-ups: the line protocol on top of protocol v2 (pure).

A command whose manifest entry says ``interactive: true`` keeps its stdin open.  The
gateway writes one JSON object per line: the v2 request (with ``"interactive":
true``), then an ``input`` line for each message a user sends, then a ``complete``
line when the user ends the session, and closes stdin.  The plugin writes one JSON
object per line too: ``output`` (shown live as a ``stdout`` message), ``waiting``
(it waits for input) and, last, ``response``, a v2 response with a ``type``.  A
line that is not one of those is kept as a ``stdout`` message, never a failure.

A *follow-up* (``POST /job/{id}/instruct``) is a new job of the same plugin and
command whose requests carry ``follow_up``: the old job's id, the new prompt and
the session the old job left.  Any plugin can use it, interactive or not.

Everything here is bytes and records in, bytes and records out; the pipes are
:mod:`chamberlain.plugins.process`'s and the session's bookkeeping is the Runner's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, Final

import attrs

from chamberlain.jsoncodec import loads
from chamberlain.plugins.protocol import MAX_RESPONSE_DEPTH

__all__ = [
    "COMPLETE_LINE",
    "MESSAGE_MAX_BYTES",
    "Answer",
    "Line",
    "Output",
    "Text",
    "Waiting",
    "decode_line",
    "follow_up_field",
    "inherited_session",
    "input_line",
    "new_message_id",
]

#: The longest message a user may send a session (UTF-8 bytes): a prompt, not a file.
MESSAGE_MAX_BYTES: Final = 256 * 1024

#: What tells the plugin the user completed the session; stdin is closed after it.
COMPLETE_LINE: Final = b'{"type":"complete"}\n'


def new_message_id() -> str:
    """A fresh id for one user input: unique across jobs and restarts."""
    return str(uuid.uuid4())


def input_line(message: str, message_id: str) -> bytes:
    """The stdin line that hands a user's ``message`` to the plugin."""
    line = {"type": "input", "message": message, "message_id": message_id}
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


@attrs.frozen
class Output:
    """An ``output`` line: text for the job's ``stdout`` messages."""

    text: str


@attrs.frozen
class Waiting:
    """A ``waiting`` line: the plugin waits for the user's next input."""


@attrs.frozen
class Answer:
    """The ``response`` line: the attempt's answer, to decode as a v2 response."""

    line: bytes


@attrs.frozen
class Text:
    """Any other line (not JSON, or JSON of no known type): kept as a ``stdout`` message."""

    text: str


Line = Output | Waiting | Answer | Text

_WAITING: Final = Waiting()


def decode_line(raw: bytes) -> Line | None:
    """What one stdout line of an interactive plugin says; None for a blank line.

    Lenient in what it keeps and strict in what it obeys: only an object whose
    ``type`` is ``output`` (with a string ``text``), ``waiting`` or ``response`` is
    acted on; everything else is shown as it was written.
    """
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            document = loads(
                text, max_depth=MAX_RESPONSE_DEPTH, unique_keys=False, finite_numbers=False
            )
        except ValueError:
            # Not JSON, or JSON the response decoder would refuse too: shown as text.
            document = None
        if isinstance(document, dict):
            kind = document.get("type")
            if kind == "output" and isinstance(document.get("text"), str):
                return Output(document["text"])
            if kind == "waiting":
                return _WAITING
            if kind == "response":
                return Answer(raw)
    return Text(text)


def follow_up_field(old_job_id: str, prompt: str, session: Any) -> dict[str, Any]:
    """The ``follow_up`` a follow-up's requests carry."""
    return {"job_id": old_job_id, "prompt": prompt, "session": session}


def inherited_session(session: Any, follow_up: Mapping[str, Any] | None) -> Any:
    """The session a follow-up of a job is given.

    The job's own, when a response left one; otherwise the one it was given itself:
    a follow-up that failed before its plugin answered must not cut the chain.
    """
    if session is not None:
        return session
    return None if follow_up is None else follow_up.get("session")
