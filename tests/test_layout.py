"""The package layout keeps its promises: every module name says what it holds.

The layering itself is checked by ``lint-imports`` (the contracts in
pyproject.toml, run by ``make lint``); what import-linter cannot see is checked here.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

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


PYPROJECT = PACKAGE.parent / "pyproject.toml"


def unplaced_modules(root: Path, contracts: list[dict[str, Any]]) -> list[str]:
    """Top-level modules of ``root`` that are neither a layer nor part of the domain."""
    by_id = {c["id"]: c for c in contracts}
    placed = {*by_id["layers"]["layers"], *by_id["domain-below-layers"]["source_modules"]}
    top = sorted(
        f"{root.name}.{p.stem if p.is_file() else p.name}"
        for p in root.iterdir()
        if (p.suffix == ".py" and p.stem not in PACKAGE_FILES) or (p / "__init__.py").exists()
    )
    return [name for name in top if name not in placed]


def test_every_top_level_module_is_a_layer_or_in_the_domain() -> None:
    contracts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"][
        "contracts"
    ]
    assert unplaced_modules(PACKAGE, contracts) == []
    # The check looks: a module left out of both lists is reported.
    for contract in contracts:
        if contract["id"] == "domain-below-layers":
            contract["source_modules"].remove("chamberlain.retry")
    assert unplaced_modules(PACKAGE, contracts) == ["chamberlain.retry"]
