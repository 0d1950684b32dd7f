"""Every benchmark in one run, so the ratios compare figures taken side by side.

    python bench/run_all.py [--quick] [--json results.json] [--markdown table.md]

Order: the limits first (spawn bound of the echo plugin and of the trivial one,
what starting a plugin costs the daemon's process, framework floor), then what is
compared to them (trigger path, core dispatch, then the two together under a
trigger flood, compared with the trivial plugin's spawn bound), the memory of a
deep queue, interactive sessions and MCP tool calls, then the peer, the idle cost
and store scale.
Each part prints as it finishes; a summary of ratios and targets closes the run.
Parts 1b, 4b to 4e came after the figures were numbered (docs/PERFORMANCE.md), so
they take letters rather than renumber the rest.  Store scale builds a
million-job store (a minute or two, about 1 GB on disk); ``--store-jobs`` makes it
smaller; ``--queued-jobs`` does the same for the deep queue.
"""

from __future__ import annotations

import argparse
import sys
import time

import core_dispatch
import flood
import floor_app
import idle
import mcp_calls
import peer
import queued_memory
import report
import session_roundtrip
import spawn_bound
import spawn_paths
import store_scale
import trigger_path


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the summary."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=(
            "Parts, in order: 1 spawn bound (echo, and the trivial plugin at --parallel),"
            " 1b spawn paths (bench/spawn_paths.py), 2 framework floor, 3 trigger path,"
            " 4 core dispatch, 4b trigger flood (bench/flood.py), 4c queued memory"
            " (bench/queued_memory.py), 4d interactive sessions (bench/session_roundtrip.py),"
            " 4e MCP tool calls (bench/mcp_calls.py), 5 peer, 6 idle cost, 7 store scale."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of everything")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each HTTP load")
    parser.add_argument("--flood-seconds", type=float, default=5.0, help="length of the flood")
    parser.add_argument("--parallel", type=int, default=4, help="N for spawning and dispatch")
    parser.add_argument("--store-jobs", type=int, default=1_000_000, help="jobs in store scale")
    parser.add_argument(
        "--queued-jobs",
        type=int,
        default=queued_memory.TARGET_JOBS,
        help="jobs queued for the memory figure",
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--markdown", help="write the summary table to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    seconds = 1.0 if quick else args.seconds
    started = time.monotonic()
    where = report.machine()
    figures: list[report.Figure] = []

    def part(title: str, found: list[report.Figure]) -> list[report.Figure]:
        report.header(title, where)
        report.show(found)
        figures.extend(found)
        return found

    report.busy_warning()
    spawn = part(
        "1. spawn bound",
        spawn_bound.measure(
            [1, args.parallel] if quick else sorted({1, 2, args.parallel, 8}),
            20 if quick else 2000,
            quick=quick,
        ),
    )
    at_n = next(f.value for f in spawn if f.name == f"spawn bound: N={args.parallel}")
    # The flood runs the trivial plugin: its figure is fair only against that plugin's
    # bound, at the same N, measured now with the other limits.
    trivial = spawn_bound.measure(
        [args.parallel],
        20 if quick else 2000,
        quick=quick,
        plugin=spawn_bound.plugin_at(spawn_bound.TRIVIAL),
    )[0]
    report.show([trivial])
    figures.append(trivial)
    part(
        "1b. spawn paths",
        spawn_paths.measure(args.parallel, 0.2 if quick else 3.0, 1 if quick else 2),
    )
    floor = part("2. framework floor", floor_app.measure(seconds, warm=not quick))
    floor_rate = floor[0].value if floor else None
    part(
        "3. trigger path",
        trigger_path.measure(
            seconds, floor_rate=floor_rate, max_workers=args.parallel, quick=quick
        ),
    )
    part(
        "4. core dispatch",
        core_dispatch.measure(
            20 if quick else 1000, args.parallel, at_n, timeout=60 if quick else 600
        ),
    )
    part(
        "4b. trigger flood",
        flood.measure(
            1.0 if quick else args.flood_seconds,
            args.parallel,
            trivial.value,
            batch=50 if quick else 1000,
            quick=quick,
            timeout=60 if quick else 600,
        ),
    )
    part("4c. queued memory", queued_memory.measure(2000 if quick else args.queued_jobs))
    part(
        "4d. interactive sessions",
        session_roundtrip.measure(20 if quick else 200, 2 if quick else args.parallel),
    )
    part(
        "4e. MCP tool calls",
        mcp_calls.measure(20 if quick else 200, 2 if quick else args.parallel),
    )
    part("5. peer", peer.measure(seconds, floor_app.CONNECTIONS, args.parallel, warm=not quick))
    part("6. idle cost", idle.measure(3 if quick else 50, 0.5 if quick else args.idle_seconds))
    part(
        "7. store scale",
        store_scale.measure(2000 if quick else args.store_jobs, 10 if quick else 200),
    )
    print(f"== summary ({time.monotonic() - started:.0f} s)")
    table = report.summary(figures)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(f"Measured on {where.describe()}.\n\n{table}\n")
    report.save(args.json, "all benchmarks", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
