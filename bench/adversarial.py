"""Re-run the adversarial scenarios of docs/RELIABILITY.md and print what they found.

Each scenario that once broke a promise (a plugin reading the admin key, a second
daemon through a symlink, a full disk, connections held open, a lone surrogate, an
escaped descendant, SIGHUP, bad input, start-up errors, foreign plugins) is now a
regression test against the real daemon.  This runs all of them in one pytest run,
together with the chaos run, the kill -9 crash loop and the fuzzer, and prints one
Markdown table: each scenario, its tests, whether they passed and how long they took,
and the figures the tests recorded (``tests/figures.py``).

    python bench/adversarial.py [--crash-cycles 100] [--figures FILE] [--keep-going]

Scenarios that need root (a tmpfs, chown) are skipped by their tests when not root;
the table says so.  Exit status 1 when any test failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: (scenario, test files or node ids): in the order of docs/RELIABILITY.md.
SCENARIOS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("misbehaving plugins leave nothing behind", ("tests/test_chaos.py",)),
    ("kill -9 under load loses no accepted job", ("tests/test_crash_recovery.py",)),
    (
        "escaped descendants die with their job",
        ("tests/test_leftovers_e2e.py", "tests/test_strays.py"),
    ),
    (
        "SIGTERM drains; SIGHUP reloads, never kills",
        ("tests/test_drain.py", "tests/test_sighup_e2e.py"),
    ),
    ("fuzzed and hostile input gets no 5xx", ("tests/test_bad_input.py",)),
    (
        "plugins never see the daemon's secrets",
        (
            "tests/test_plugin_secrets_e2e.py",
            "tests/test_plugin_environment.py",
            "tests/test_redaction.py",
        ),
    ),
    (
        "a full disk refuses writes and recovers",
        ("tests/test_disk_full_e2e.py", "tests/test_storage_faults.py"),
    ),
    (
        "connections are closed and bounded",
        ("tests/test_connections_e2e.py", "tests/test_web_admission.py"),
    ),
    (
        "one daemon per database; clear start-up errors; trusted plugins",
        (
            "tests/test_instance_lock.py",
            "tests/test_startup_errors.py",
            "tests/test_plugin_owners.py",
        ),
    ),
    (
        "one plugin's answer cannot hurt another job; one set of JSON rules",
        (
            "tests/test_plugin_output_e2e.py",
            "tests/test_runner_settle.py",
            "tests/test_json_rules_api.py",
        ),
    ),
)


def run(crash_cycles: int, figures: Path, junit: Path, keep_going: bool) -> int:
    """One pytest run over every scenario's tests; its exit code."""
    env = {
        **os.environ,
        "CHAMBERLAIN_CRASH_CYCLES": str(crash_cycles),
        "CHAMBERLAIN_FIGURES": str(figures),
    }
    tests = [test for _, group in SCENARIOS for test in group]
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        *([] if keep_going else ["-x"]),
        *tests,
    ]
    return subprocess.run(command, cwd=REPO, env=env, check=False).returncode


def outcomes(junit: Path) -> dict[str, list[tuple[str, str, float]]]:
    """Test file -> [(test name, passed|failed|skipped, seconds)] from pytest's report."""
    found: dict[str, list[tuple[str, str, float]]] = {}
    if not junit.exists():
        return found
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        if case.find("failure") is not None or case.find("error") is not None:
            state = "failed"
        elif case.find("skipped") is not None:
            state = "skipped"
        else:
            state = "passed"
        found.setdefault(module, []).append(
            (case.get("name", "?"), state, float(case.get("time", "0")))
        )
    return found


def table(
    results: dict[str, list[tuple[str, str, float]]], figures: list[dict[str, object]]
) -> str:
    """The Markdown report: one row per scenario, then the recorded figures."""
    lines = [
        "| scenario | tests | passed | failed | skipped | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, group in SCENARIOS:
        cases = [c for test in group for c in results.get(test.split("::")[0], [])]
        count = {
            state: sum(1 for _, s, _ in cases if s == state)
            for state in ("passed", "failed", "skipped")
        }
        seconds = sum(t for _, _, t in cases)
        lines.append(
            f"| {scenario} | {len(cases)} | {count['passed']} | {count['failed']}"
            f" | {count['skipped']} | {seconds:.1f} |"
        )
    if figures:
        lines += ["", "Figures the tests recorded:", ""]
        lines += [f"- `{json.dumps(line, sort_keys=False)}`" for line in figures]
    return "\n".join(lines)


def main() -> int:
    """Run the scenarios and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--crash-cycles", type=int, default=20, help="kill -9 cycles of the crash loop"
    )
    parser.add_argument("--figures", type=Path, help="also append the figures to this file")
    parser.add_argument(
        "--keep-going", action="store_true", help="run every test even after a failure"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        figures = Path(scratch) / "figures.jsonl"
        junit = Path(scratch) / "junit.xml"
        code = run(args.crash_cycles, figures, junit, args.keep_going)
        recorded = (
            [json.loads(line) for line in figures.read_text().splitlines() if line.strip()]
            if figures.exists()
            else []
        )
        if args.figures is not None and recorded:
            with args.figures.open("a", encoding="utf-8") as out:
                out.writelines(json.dumps(line) + "\n" for line in recorded)
        print(table(outcomes(junit), recorded))
    return 1 if code else 0


if __name__ == "__main__":
    sys.exit(main())
