"""The crash soak: the kill -9 loop of tests/test_crash_recovery.py, for much longer.

CI runs 20 kill/restart cycles.  This runs the very same test with as many cycles
(and whatever seed) you ask for, several rounds in a row with fresh seeds, and
prints the figures each round measured: cycles, kills per phase, triggers sent,
jobs acknowledged, jobs re-run by recovery, integrity checks, and jobs lost.

    python bench/soak_crash.py --cycles 200 --rounds 3 [--seed 1] [--figures FILE]

Exit status 1 when any round failed (a lost job, a corrupt database, ...); the
failing round's pytest output says what and where.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST = "tests/test_crash_recovery.py"


def run_round(cycles: int, seed: int, figures: Path) -> int:
    """One pytest run of the crash test; its exit code."""
    env = {
        **os.environ,
        "CHAMBERLAIN_CRASH_CYCLES": str(cycles),
        "CHAMBERLAIN_CRASH_SEED": str(seed),
        "CHAMBERLAIN_FIGURES": str(figures),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST]
    return subprocess.run(command, cwd=REPO, env=env, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=200, help="kill/restart cycles per round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each with its own seed")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round")
    parser.add_argument("--figures", type=Path, help="append each round's figures (JSON lines)")
    args = parser.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as scratch:
        figures = args.figures or Path(scratch) / "figures.jsonl"
        for round_number in range(args.rounds):
            seed = args.seed + round_number
            code = run_round(args.cycles, seed, figures)
            failed += code != 0
            print(f"round {round_number + 1}/{args.rounds} (seed {seed}): exit {code}")
        lines = figures.read_text().splitlines() if figures.exists() else []
    totals = {"cycles": 0, "accepted": 0, "rerun_by_recovery": 0, "lost": 0}
    for line in lines[-args.rounds :]:
        round_figures = json.loads(line)
        print(json.dumps(round_figures))
        for key in totals:
            totals[key] += round_figures[key]
    print(json.dumps({"soak": "crash", "rounds": args.rounds, "failed_rounds": failed, **totals}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
