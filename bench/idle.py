"""Figure 6, idle cost: CPU and memory of a daemon with 50 plugins doing nothing.

An always-on daemon on a workstation must cost nothing while it waits.  This one
loads 50 copies of a trivial plugin (generated into a temporary plugin root), each
with an hourly schedule, and measures, over 60 s of
idleness: CPU%, RSS, and context switches per second (every timer or poll loop
shows up there, so "no polling anywhere" is a number).

    python bench/idle.py [--plugins 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import report
import servers
import yaml

MANIFEST = {
    "version": "1.0.0",
    "protocol": 2,
    "entrypoint": "run.sh",
    "description": "A copy of the echo plugin, for the idle benchmark.",
    "concurrency_safe": True,
    "commands": [{"name": "poll", "type": "read"}],
}


def make_plugins(root: Path, count: int) -> list[str]:
    """Write ``count`` copies of the echo plugin under ``root``; their names."""
    names = []
    for i in range(count):
        name = f"idle{i:02d}"
        folder = root / name
        folder.mkdir(parents=True)
        shutil.copy2(servers.ECHO / "run.sh", folder / "run.sh")
        (folder / "manifest.yaml").write_text(yaml.safe_dump({"name": name, **MANIFEST}))
        names.append(name)
    return names


def context_switches(pid: int) -> dict[str, int]:
    """Voluntary plus involuntary context switches of each thread of ``pid``."""
    counts: dict[str, int] = {}
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue  # a thread that ended meanwhile
        total = 0
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
        counts[status.parent.name] = total
    return counts


def switches_between(before: dict[str, int], after: dict[str, int]) -> int:
    """Context switches from one reading to the next.  A thread that ended in between
    takes its count with it (worker threads retire after 10 idle seconds), so only
    threads still there are compared; a new one counts from zero."""
    return sum(n - before.get(thread, 0) for thread, n in after.items())


def measure(plugins: int, seconds: float) -> list[report.Figure]:
    """Idle CPU, RSS and wakeups of a daemon with ``plugins`` plugins."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        root = Path(tmp) / "plugins"
        names = make_plugins(root, plugins)
        # Hourly: armed timers the daemon must hold without waking up for them.
        settings = {n: {"schedules": [{"id": "hourly", "every": "1h"}]} for n in names}
        with servers.daemon(Path(tmp), plugin_roots=[root], extra={"plugins": settings}) as d:
            loaded = d.get("/healthz")["plugins_loaded"]
            if loaded != plugins:
                raise RuntimeError(f"{loaded} plugins loaded, {plugins} expected\n{d.tail()}")
            cpu0, switches0, t0 = (
                servers.cpu_seconds(d.pid),
                context_switches(d.pid),
                time.monotonic(),
            )
            time.sleep(seconds)
            cpu1, switches1, t1 = (
                servers.cpu_seconds(d.pid),
                context_switches(d.pid),
                time.monotonic(),
            )
            switches = switches_between(switches0, switches1)
            rss = servers.rss_bytes(d.pid)
    elapsed = t1 - t0
    what = f"{plugins} plugins, {plugins} schedules"
    return [
        report.Figure(
            name="idle: CPU",
            value=100 * (cpu1 - cpu0) / elapsed,
            unit="%",
            target="< 0.5 %",
            note=f"{what}, over {elapsed:.0f} s",
        ),
        report.Figure(name="idle: RSS", value=rss / 1e6, unit="MB", target="< 60 MB"),
        report.Figure(
            name="idle: context switches",
            value=switches / elapsed,
            unit="/s",
            note="0 means nothing wakes up",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure the idle cost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--plugins", type=int, default=50, help="how many plugins to load")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to watch")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    plugins = 3 if args.quick else args.plugins
    seconds = 0.5 if args.quick else args.seconds
    report.header(f"idle cost ({plugins} plugins, {seconds:g} s)")
    figures = measure(plugins, seconds)
    report.show(figures)
    report.save(args.json, "idle cost", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
