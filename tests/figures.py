"""Figures a reliability test measured, for docs/RELIABILITY.md.

Each test states what it did (jobs, kills, faults, inputs tried, jobs lost) through
:func:`record`.  The figures are printed (``pytest -s`` shows them) and, when
``CHAMBERLAIN_FIGURES`` names a file, appended to it as one JSON line per test, so
the documentation quotes a run rather than a guess.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

FIGURES_VARIABLE = "CHAMBERLAIN_FIGURES"


def record(test: str, **figures: Any) -> dict[str, Any]:
    """Print ``figures`` for ``test`` and append them to ``$CHAMBERLAIN_FIGURES``."""
    line = {"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    text = json.dumps(line, sort_keys=False)
    print(f"\nfigures: {text}")
    target = os.environ.get(FIGURES_VARIABLE)
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    return line
