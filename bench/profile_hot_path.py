"""The profile of the hottest path: trigger -> commit -> dispatch -> spawn -> settle.

The real daemon runs the plain config while an open-loop client triggers echo jobs
at a fixed rate the dispatcher can keep up with, so every stage of a job's life is
in the samples.  py-spy samples the daemon from outside (``--gil``: only the thread
holding the GIL, i.e. where Python time goes) and this script folds the samples
into the functions that cost the most, inclusive and self, one line each.

Needs py-spy (``pip install py-spy``) and usually root (ptrace).

    python bench/profile_hot_path.py [--rate 150] [--seconds 15] [--top 40] [--raw FILE]
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import floor_app
import paced
import report
import servers
import tools

_LOCATION = re.compile(r" \((?:[^()]*/)?(site-packages|chamberlain|bench)/")


def fold(raw: str, top: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]], int]:
    """Inclusive and self shares of py-spy's raw (collapsed) output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LOCATION.sub(r" (\1/", f) for f in stack.split(";")]
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    share = 100.0 / max(1, total)
    return (
        [(f, n * share) for f, n in inclusive.most_common(top)],
        [(f, n * share) for f, n in own.most_common(top)],
        total,
    )


#: Where a sample's time went, by the first of these its stack contains.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (JSON lines)", ("Logger._log", "Logger.handle")),
    ("spawning: Popen (vfork, on the event loop)", ("Popen.",)),
    ("JobStore: transactions (worker thread)", ("JobStore._in_thread.<locals>.transaction",)),
    ("JobStore: thread hops and replies", ("JobStore.", "to_thread_run_sync")),
    ("Runner: pipes, exit, settle (event loop)", ("Runner.", "run_plugin", "_Run.")),
    ("Dispatcher", ("Dispatcher.",)),
    ("Router", ("Router.",)),
    ("HTTP: hypercorn, Quart, the handler", ("hypercorn/", "quart/", "quart_trio/", "web/")),
)


def stages(raw: str) -> tuple[list[tuple[str, float]], int]:
    """Each stage's share of the samples (``STAGES``; the rest is trio's own loop)."""
    shares: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        stage = next(
            (name for name, marks in STAGES if any(m in stack for m in marks)),
            "trio: scheduling, I/O readiness, the rest",
        )
        shares[stage] += int(count)
    share = 100.0 / max(1, total)
    return [(name, n * share) for name, n in shares.most_common()], total


def main(argv: list[str] | None = None) -> int:
    """Profile the daemon under a steady trigger load and print the hottest functions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150.0, help="triggers per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to sample")
    parser.add_argument("--top", type=int, default=40, help="functions to list")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    parser.add_argument("--max-workers", type=int, default=4, help="service.max_workers")
    args = parser.parse_args(argv)
    spy = tools.find("py-spy")
    if spy is None:
        report.skipped("profile", "py-spy not found (pip install py-spy)")
        return 0
    report.header(f"profile: echo triggers at {args.rate:g}/s, py-spy --gil")
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        raw_path = args.raw or Path(tmp) / "profile.txt"
        with servers.daemon(max_workers=args.max_workers) as d:
            recorder = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(d.pid),
                    "--duration",
                    str(round(args.seconds)),
                    "--rate",
                    "250",
                    "--gil",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(raw_path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            load = threading.Thread(
                target=paced.paced,
                kwargs={
                    "url": d.url + "/trigger/echo/poll",
                    "rate": args.rate,
                    "seconds": args.seconds + 1,
                    "body": floor_app.BODY,
                    "headers": d.headers(),
                },
            )
            load.start()
            recorder.wait()
            load.join()
        raw = raw_path.read_text()
        inclusive, own, total = fold(raw, args.top)
        by_stage, _ = stages(raw)
    print(f"  {total} samples (the GIL held: where Python time goes), by stage:")
    for name, pct in by_stage:
        print(f"  {pct:5.1f}%  {name}")
    print("  inclusive share of samples (the function or what it calls):")
    for frame, pct in inclusive:
        print(f"  {pct:5.1f}%  {frame}")
    print("  self share (the function's own code):")
    for frame, pct in own[: args.top // 2]:
        print(f"  {pct:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
