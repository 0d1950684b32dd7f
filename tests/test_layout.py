"""The package layout keeps its promises: every module name says what it holds.

The layering itself is checked by ``lint-imports`` (the contracts in
pyproject.toml, run by ``make lint``); what import-linter cannot see is checked here.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import chamberlain

PACKAGE = Path(chamberlain.__file__).parent
#: Names every package may have once: they say "this package", not what it holds.
PACKAGE_FILES = {"__init__", "__main__"}


def module_names(root: Path) -> dict[str, list[str]]:
    """Each basename (leading underscores dropped) and the modules that have it."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        if path.stem in PACKAGE_FILES:
            continue
        found[path.stem.lstrip("_")].append(str(path.relative_to(root)))
    return found


def test_no_two_modules_share_a_basename() -> None:
    clashes = {name: paths for name, paths in module_names(PACKAGE).items() if len(paths) > 1}
    assert clashes == {}


def test_the_check_sees_a_clash(tmp_path: Path) -> None:
    # Guards the test above against a walk that finds nothing.
    for rel in ("a/metrics.py", "b/_metrics.py", "c/__init__.py", "d/__init__.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert module_names(tmp_path) == {"metrics": ["a/metrics.py", "b/_metrics.py"]}
    assert len(module_names(PACKAGE)) > 50
