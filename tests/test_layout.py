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


ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"


def undocumented_modules(root: Path, doc: str) -> list[str]:
    """Modules of ``root`` that docs/ARCHITECTURE.md's table does not name.

    A module is named by its path (``chamberlain/web/app.py``), or, inside a package
    the table describes as a whole (``chamberlain/config/``), by its own name.
    """
    missing = []
    rows = doc.splitlines()
    for path in sorted(root.rglob("*.py")):
        if path.stem == "__init__":
            continue  # a package is named by its modules
        rel = path.relative_to(root.parent).as_posix()
        if f"`{rel}`" in doc:
            continue
        package = f"`{path.parent.relative_to(root.parent).as_posix()}/`"
        if any(package in row and f"`{path.stem}`" in row for row in rows):
            continue
        missing.append(rel)
    return missing


def test_the_architecture_map_names_every_module() -> None:
    doc = ARCHITECTURE.read_text(encoding="utf-8")
    assert undocumented_modules(PACKAGE, doc) == []
    # The check looks: a module the table does not name is reported.
    assert undocumented_modules(PACKAGE, doc.replace("`chamberlain/web/app.py`", "")) == [
        "chamberlain/web/app.py"
    ]
