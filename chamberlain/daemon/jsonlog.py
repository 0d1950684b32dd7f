"""Logging on stderr: JSON lines (one object per line, easy for journald and jq).

Records carry structured context through ``extra`` (``component``, ``job_id``,
``plugin`` ...); those keys become top-level fields of the line.  :func:`configure`
installs the one handler, with :class:`JsonFormatter` unless it is handed another
:class:`RedactingFormatter` (the CLI passes
:class:`~chamberlain.daemon.textlog.TextFormatter` for a terminal).  Once the
daemon knows its configuration it hands the formatter a
:class:`~chamberlain.redaction.Redactor` (:func:`redact_with`), so no configured
token or secret is ever written out, whichever the format.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

from chamberlain.redaction import Redactor

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields ``record`` was given through ``extra``, in the order given."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


def exception_text(record: logging.LogRecord) -> str | None:
    """The traceback ``record`` carries, without a trailing newline; None without one."""
    if record.exc_info and record.exc_info[0] is not None:
        return "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return None


class RedactingFormatter(logging.Formatter):
    """A formatter that replaces ``redactor``'s secrets in what it writes."""

    redactor: Redactor = Redactor()


class JsonFormatter(RedactingFormatter):
    """Formats a record as one JSON object, with ``redactor``'s secrets replaced."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record``: time, level, logger, message, extras, exception."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(extras(record))
        exc = exception_text(record)
        if exc is not None:
            line["exc"] = exc
        text = json.dumps(line, default=str, ensure_ascii=False)
        redactor = self.redactor
        if not redactor.finds(text):
            return text
        return json.dumps(
            redactor.data(line),
            default=lambda value: redactor.text(str(value)),
            ensure_ascii=False,
        )


def configure(
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
    *,
    formatter: RedactingFormatter | None = None,
) -> None:
    """Send every ``chamberlain`` log record (and warnings) to ``stream``.

    Lines are JSON unless ``formatter`` says otherwise; ``stream`` defaults to stderr.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter or JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)


def redact_with(redactor: Redactor) -> None:
    """Have every log handler :func:`configure` installed redact ``redactor``'s secrets."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, RedactingFormatter):
            handler.formatter.redactor = redactor
