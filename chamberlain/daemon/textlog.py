"""Log lines for a person at a terminal: one line per record, extras as ``key=value``.

``chamberlain --log-format text`` (the default when stderr is a terminal) writes
each record as local time, level, logger and message, then the record's extras::

    2026-03-01 14:02:17.301 INFO     chamberlain.root  stopped  component=root

A value that is one plain word is written bare; any other string is quoted with
JSON's escapes, so a value with spaces, quotes or control characters cannot be
mistaken for the next field or move the cursor; numbers, lists and mappings are
written as JSON.  A traceback follows on the lines after its record.  The same
secrets are redacted as in the JSON lines (:mod:`chamberlain.daemon.jsonlog`).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from chamberlain.daemon.jsonlog import RedactingFormatter, exception_text, extras

# A value written without quotes: no space, quote, equals sign, backslash or control
# character, so reading it back at the spaces between fields is unambiguous.
_BARE = re.compile(r'[^\s"=\\\x00-\x1f\x7f]+')

#: Room for the longest level name (CRITICAL), so messages line up.
_LEVEL_WIDTH = 8


def text_value(value: Any) -> str:
    """``value`` as the text formatter writes it after ``key=``."""
    if isinstance(value, bool | int | float | list | tuple | dict) or value is None:
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    text = value if isinstance(value, str) else str(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


class TextFormatter(RedactingFormatter):
    """Formats a record as one line of text, with ``redactor``'s secrets replaced."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record``: local time, level, logger, message, ``key=value`` extras."""
        when = datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        millis = int(record.msecs)
        parts = [
            f"{when}.{millis:03d} {record.levelname:<{_LEVEL_WIDTH}} {record.name}  ",
            record.getMessage(),
        ]
        fields = " ".join(f"{key}={text_value(value)}" for key, value in extras(record).items())
        if fields:
            parts.append("  " + fields)
        exc = exception_text(record)
        if exc is not None:
            parts.append("\n" + exc)
        return self.redactor.text("".join(parts))
