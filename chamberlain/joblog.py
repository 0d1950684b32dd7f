"""Job messages: what a job said and what happened to it, as timestamped records.

A job's *messages* are its plugin's stderr lines (``kind: stderr``), an interactive
plugin's output (``kind: stdout``), what users sent it (``kind: user_input``), the entries
of the ``logs`` list in its responses (``kind: log``, see :func:`log_message`) and
system messages (``kind: system``): one per status change (queued, started, retry
scheduled, finished), written by the store in the transaction that changed the
status, and the markers that say how many lines the cap dropped.

Output is capped per job (:class:`OutputLimits`), stderr, stdout and log entries
together (a user's input is never dropped):
a plugin that prints without end must not fill the disk or the memory of every
client that follows it.  The rules are plain functions here; the Runner buffers
with :class:`OutputBuffer`, the store applies :func:`admit_output`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from chamberlain import jsoncodec
from chamberlain.records import MessageKind

#: The level of a log entry that names none (or names one that is not a string).
DEFAULT_LOG_LEVEL = "info"
#: Levels longer than this are cut: a level is a word, not a place to put data.
LOG_LEVEL_MAX = 32


@attrs.frozen(kw_only=True)
class OutputLimits:
    """How much stderr one job keeps: whichever limit is reached first."""

    max_lines: int = 1000
    max_bytes: int = 256 * 1024


def line_size(line: str) -> int:
    """What a line costs against :attr:`OutputLimits.max_bytes` (its UTF-8 size)."""
    return len(line.encode("utf-8", errors="replace"))


#: The system message that says an interactive attempt waits for input.
WAITING_TEXT = "waiting for input"
#: The system message that says the user completed an interactive session.
COMPLETING_TEXT = "completing: the user ended the session"


def dropped_marker(count: int) -> str:
    """The text of the marker that stands for ``count`` dropped lines."""
    noun = "line" if count == 1 else "lines"
    return f"\u2026 {count} more stderr {noun} dropped (over the job's output cap)"


def dropped_logs_marker(count: int) -> str:
    """The text of the marker that stands for ``count`` dropped log entries."""
    noun = "entry" if count == 1 else "entries"
    return f"\u2026 {count} more log {noun} dropped (over the job's output cap)"


def log_message(entry: Mapping[str, Any]) -> tuple[str, str]:
    """The ``(level, text)`` of one entry of a response's ``logs`` list.

    Ductile's plugins write ``{"level": "info", "message": "..."}``; the protocol
    only promises an object, so nothing a plugin says is lost: a ``message`` that is
    not a string, and any other keys, are kept as compact JSON after the message.
    """
    level = entry.get("level")
    if not isinstance(level, str) or not level.strip():
        level = DEFAULT_LOG_LEVEL
    level = level.strip().lower()[:LOG_LEVEL_MAX]
    message = entry.get("message")
    rest = {k: v for k, v in entry.items() if k not in ("level", "message")}
    parts: list[str] = []
    if isinstance(message, str):
        parts.append(message)
    elif message is not None:
        parts.append(jsoncodec.dumps(message))
    if rest:
        parts.append(jsoncodec.dumps(rest))
    return level, " ".join(parts)


@attrs.frozen(kw_only=True)
class OutputTotals:
    """What a job has kept so far."""

    lines: int = 0
    bytes: int = 0


def admit_output(
    totals: OutputTotals, lines: Sequence[str], limits: OutputLimits
) -> tuple[list[str], int]:
    """Split ``lines`` into those the job may still keep, and how many to drop.

    Lines are kept in order until either limit would be passed; once one line is
    refused every later one is too, so what is kept is always a prefix of the
    output and a reader never sees a gap in the middle.
    """
    kept: list[str] = []
    count, size = totals.lines, totals.bytes
    for index, line in enumerate(lines):
        cost = line_size(line)
        if count + 1 > limits.max_lines or size + cost > limits.max_bytes:
            return kept, len(lines) - index
        kept.append(line)
        count += 1
        size += cost
    return kept, 0


@attrs.define(eq=False)
class OutputBuffer:
    """Stderr lines of one running job, waiting to be flushed to the store.

    ``append`` is called from the process reader for every line and never blocks;
    the buffer holds at most one job's worth of output (``limits``), counting what
    it had to refuse, so a plugin flooding stderr faster than the store writes costs
    bounded memory.
    """

    limits: OutputLimits = attrs.field(factory=OutputLimits)
    _lines: list[tuple[float, str, MessageKind]] = attrs.field(factory=list, init=False)
    _bytes: int = attrs.field(default=0, init=False)
    _dropped: int = attrs.field(default=0, init=False)

    def append(self, line: str, ts: float, kind: MessageKind = MessageKind.STDERR) -> None:
        """Add a line read at ``ts``, or count it as dropped when the buffer is full."""
        cost = line_size(line)
        if len(self._lines) >= self.limits.max_lines or self._bytes + cost > self.limits.max_bytes:
            self._dropped += 1
            return
        self._lines.append((ts, line, kind))
        self._bytes += cost

    def __bool__(self) -> bool:
        return bool(self._lines) or self._dropped > 0

    def take(self) -> tuple[tuple[tuple[float, str, MessageKind], ...], int]:
        """Everything buffered and the count dropped since the last take; resets both."""
        lines, dropped = tuple(self._lines), self._dropped
        self._lines.clear()
        self._bytes = 0
        self._dropped = 0
        return lines, dropped
