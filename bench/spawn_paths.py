"""What starting a plugin costs the daemon's process, by the way it is started.

Inside one trio loop, N tasks each start the trivial plugin, write its request,
read its answer and reap it, as fast as they can, for a few seconds per way:

- **trio's open_process**: ``subprocess.Popen`` in a worker thread, as the daemon
  spawned before chamberlain/plugins/spawn.py;
- **spawn()**: ``Popen`` (vfork) on the event loop, the exit awaited on a pidfd:
  what the daemon does now on Linux;
- **run_plugin()**: the whole of chamberlain/plugins/process.py around spawn():
  timeouts, capped reads, the process group killed, the run booked for the sweep.

Each way is measured twice, alternating, and reported with the parent's CPU time
per start (this process's user + system time, so the plugin's own is not in it):
the figure the daemon pays once per job, whatever else it does.

    python bench/spawn_paths.py [--parallel 4] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import report
import tools
import trio

from chamberlain.plugins.process import Limits, run_plugin
from chamberlain.plugins.spawn import Spawned, spawn

PLUGIN = tools.BENCH / "plugins" / "trivial" / "run.sh"
REQUEST = b'{"command":"poll"}\n'
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def _read_all(stream: trio.abc.ReceiveStream | None) -> bytes:
    assert stream is not None
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def via_open_process() -> bytes:
    """One start through trio's open_process (Popen in a worker thread)."""
    process = await trio.lowlevel.open_process(
        [str(PLUGIN)],
        cwd=PLUGIN.parent,
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    return await _converse(process)


async def via_spawn() -> bytes:
    """One start through chamberlain.plugins.spawn."""
    return await _converse(await spawn([str(PLUGIN)], cwd=PLUGIN.parent, env=ENV))


async def _converse(process: Spawned) -> bytes:
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    await process.stdin.send_all(REQUEST)
    await process.stdin.aclose()
    out = await _read_all(process.stdout)
    await _read_all(process.stderr)
    await process.wait()
    await process.stdout.aclose()
    await process.stderr.aclose()
    return out


async def via_run_plugin() -> bytes:
    """One whole run, as the Runner makes it."""
    result = await run_plugin(
        entrypoint=PLUGIN, cwd=PLUGIN.parent, request=REQUEST, timeout=30, env=ENV, limits=Limits()
    )
    return result.stdout


WAYS: dict[str, Callable[[], Awaitable[bytes]]] = {
    "trio's open_process": via_open_process,
    "spawn()": via_spawn,
    "run_plugin()": via_run_plugin,
}


async def rate(
    start: Callable[[], Awaitable[bytes]], parallel: int, seconds: float
) -> tuple[float, float]:
    """(starts per second, parent CPU ms per start) with ``parallel`` tasks."""
    count = 0
    end = trio.current_time() + seconds

    async def worker() -> None:
        nonlocal count
        while trio.current_time() < end:
            answer = await start()
            if b'"ok"' not in answer:
                raise RuntimeError(f"the plugin answered {answer!r}")
            count += 1

    cpu = time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(parallel):
            nursery.start_soon(worker)
    cpu = time.process_time() - cpu
    return count / seconds, cpu / max(1, count) * 1000


def measure(parallel: int, seconds: float, rounds: int = 2) -> list[report.Figure]:
    """Every way's best rate and CPU per start over ``rounds`` alternating rounds."""
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in WAYS}

    async def main() -> None:
        for start in WAYS.values():
            await rate(start, parallel, min(seconds, 0.3))  # warm-up: imports, caches
        for _ in range(rounds):
            for name, start in WAYS.items():
                found[name].append(await rate(start, parallel, seconds))

    trio.run(main)
    figures: list[report.Figure] = []
    base_cpu = min(cpu for _, cpu in found["trio's open_process"])
    for name, runs in found.items():
        best_rate = max(r for r, _ in runs)
        cpu = min(c for _, c in runs)
        figures.append(
            report.Figure(
                name=f"spawn paths: {name}, parent CPU per start",
                value=cpu,
                unit="ms",
                limit_name="trio's open_process",
                limit=base_cpu,
                note=f"{best_rate:,.0f} starts/s with {parallel} in parallel, best of {rounds}",
            )
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    """Measure every way of starting the trivial plugin."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a second or two")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="per way and round")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    report.header(f"spawn paths (the trivial plugin, {args.parallel} in parallel)")
    figures = measure(args.parallel, 0.2 if args.quick else args.seconds, 1 if args.quick else 2)
    report.show(figures)
    report.save(args.json, "spawn paths", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
