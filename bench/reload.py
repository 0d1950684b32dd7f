"""Configuration reload: how long one takes, and what it costs the triggers around it.

One real daemon with ``--plugins`` aliases of the echo plugin, each with an hourly
schedule, and two versions of its file that differ in what a reload applies most
often: one plugin (and its schedule) added and another removed, a timeout, and
``service.max_workers``.

- **reload, unchanged file**: ``POST /system/reload`` ``--reloads`` times with the
  same file: the whole check (file, discovery, manifests, routing) and an apply
  that changes nothing;
- **reload, plugin added and removed**: the same, alternating the two versions, so
  every reload starts one Runner and retires another;
- **triggers during reloads**: ``POST /trigger/echo/poll`` latency while another
  thread reloads back to back, against the same triggers with no reload running,
  the two phases alternating ``--rounds`` times so a noisy spell falls on both;
- **jobs lost**: every job those triggers created is waited for; any that did not
  succeed is counted (the target is 0).

    python bench/reload.py [--plugins 20] [--reloads 40] [--triggers 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import report
import servers
import yaml


def versions(plugins: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two files' ``plugins`` and ``service`` sections, as overrides."""

    alias = {"uses": "echo", "schedules": [{"id": "hourly", "every": "1h"}]}
    first = {f"echo{i:02d}": alias for i in range(plugins)}
    second = {**first, f"echo{plugins:02d}": alias}
    del second["echo00"]
    second["echo01"] = {**second["echo01"], "timeouts": {"poll": "30s"}}
    return (
        {"plugins": first, "service": {"max_workers": 4}},
        {"plugins": second, "service": {"max_workers": 3}},
    )


def rewrite(path: Path, override: dict[str, Any]) -> None:
    config = yaml.safe_load(path.read_text())
    config["plugins"] = override["plugins"]
    config["service"] = {**config["service"], **override["service"]}
    path.write_text(yaml.safe_dump(config))


def timed_reload(d: servers.Daemon) -> float:
    started = time.perf_counter()
    status, answer = d.post("/system/reload", {})
    elapsed = time.perf_counter() - started
    if status != 200 or not answer.get("reloaded"):
        raise RuntimeError(f"reload answered {status}: {answer}")
    return elapsed


def timed_trigger(d: servers.Daemon, jobs: list[str]) -> float:
    started = time.perf_counter()
    status, answer = d.post("/trigger/echo/poll", {"payload": {}})
    elapsed = time.perf_counter() - started
    if status != 202:
        raise RuntimeError(f"trigger answered {status}: {answer}")
    jobs.append(answer["job_id"])
    return elapsed


def measure(plugins: int, reloads: int, triggers: int, rounds: int) -> list[report.Figure]:
    """Every figure of the module docstring, from one daemon."""
    first, second = versions(plugins)
    with (
        tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp,
        servers.daemon(Path(tmp), extra=first) as d,
    ):
        path = Path(tmp) / "config.yaml"
        unchanged = [timed_reload(d) for _ in range(reloads)]
        swapping = []
        for n in range(reloads):
            rewrite(path, second if n % 2 == 0 else first)
            swapping.append(timed_reload(d))
        rewrite(path, first)
        timed_reload(d)

        jobs: list[str] = []
        quiet: list[float] = []
        busy: list[float] = []
        during = 0
        for _ in range(rounds):
            quiet += [timed_trigger(d, jobs) for _ in range(triggers)]
            stop = threading.Event()
            count = [0]

            def reload_until_stopped(
                stop: threading.Event = stop, count: list[int] = count
            ) -> None:
                n = 0
                while not stop.is_set():
                    rewrite(path, second if n % 2 == 0 else first)
                    timed_reload(d)
                    n += 1
                count[0] = n
                rewrite(path, first)
                timed_reload(d)

            worker = threading.Thread(target=reload_until_stopped)
            worker.start()
            busy += [timed_trigger(d, jobs) for _ in range(triggers)]
            stop.set()
            worker.join()
            during += count[0]
        lost = 0
        for job_id in jobs:
            job = d.get(f"/job/{job_id}?wait=30s")
            lost += job["status"] != "succeeded"

    def ms(samples: list[float], q: float) -> float:
        return 1000 * report.percentile(samples, q)

    setting = f"{plugins} plugins with a schedule each, {reloads} reloads"
    figures = [
        report.Figure(
            name="reload: unchanged file p50", value=ms(unchanged, 50), unit="ms", note=setting
        ),
        report.Figure(name="reload: unchanged file p99", value=ms(unchanged, 99), unit="ms"),
        report.Figure(
            name="reload: plugin added and removed p50", value=ms(swapping, 50), unit="ms"
        ),
        report.Figure(
            name="reload: plugin added and removed p99", value=ms(swapping, 99), unit="ms"
        ),
    ]
    for q in (50, 99):
        figures.append(
            report.Figure(
                name=f"reload: trigger during reloads p{q}",
                value=ms(busy, q),
                unit="ms",
                limit_name=f"trigger with no reload p{q}",
                limit=ms(quiet, q),
                note=f"{during} reloads during {len(busy)} triggers" if q == 50 else "",
            )
        )
    figures.append(
        report.Figure(
            name="reload: jobs lost",
            value=lost,
            unit="jobs",
            target="<= 0 jobs",
            note=f"of {len(jobs)} triggered",
        )
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    """Measure reloads and the triggers around them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=20)
    parser.add_argument("--reloads", type=int, default=40)
    parser.add_argument("--triggers", type=int, default=200, help="per phase and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.plugins, args.reloads, args.triggers, args.rounds = 3, 4, 20, 1
    report.header(f"configuration reload ({args.plugins} plugins)")
    figures = measure(args.plugins, args.reloads, args.triggers, args.rounds)
    report.show(figures)
    report.save(args.json, "reload", figures, plugins=args.plugins, reloads=args.reloads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
