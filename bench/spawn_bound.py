"""Figure 1, the spawn bound: how fast this machine runs a plugin (the bundled echo).

A job's irreducible cost is its process: spawn the entrypoint in a new session,
write the request, read stdout and stderr to EOF, reap it.  bench/spawner.c does
exactly that in a tight loop, N at a time, with nothing else (no store, no
scheduling, no parsing); the daemon's core dispatch (figure 4) is compared to it.
The request is the one the daemon would send, encoded by the daemon's own code.

Without a C compiler a Python loop with ``os.posix_spawn`` stands in (slower, so a
lower bound, and said so).  With hyperfine installed, one sequential run of the
plugin is also timed by it, as an independent cross-check of the N=1 figure.

A figure is only fair against the bound of the plugin it ran: ``--plugin trivial``
(bench/plugins/trivial, two shell builtins) measures the bound the trigger flood
(bench/flood.py) is compared to.  Figures of a plugin other than echo carry its
name: ``spawn bound (trivial): N=4``.

    python bench/spawn_bound.py [--parallel 1,2,4,8] [--jobs 2000] [--plugin echo]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import report
import tools
import yaml

from chamberlain.plugins.protocol import encode_request

ECHO = tools.REPO / "plugins" / "echo"
ENTRYPOINT = ECHO / "run.sh"
TRIVIAL = tools.BENCH / "plugins" / "trivial"


@attrs.frozen(kw_only=True)
class Plugin:
    """A plugin to spawn: its directory (the working directory) and entrypoint."""

    name: str
    folder: Path
    entrypoint: Path

    @property
    def prefix(self) -> str:
        """The start of its figures' names; echo's keep the names they always had."""
        return "spawn bound" if self.name == "echo" else f"spawn bound ({self.name})"


def plugin_at(folder: Path) -> Plugin:
    """The plugin in ``folder``, as its manifest names it and its entrypoint."""
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    return Plugin(
        name=str(manifest["name"]),
        folder=folder,
        entrypoint=folder / str(manifest["entrypoint"]),
    )


def find_plugin(name: str) -> Plugin:
    """A plugin by name, from the repository's plugins/ or bench/plugins/."""
    for root in (tools.REPO / "plugins", tools.BENCH / "plugins"):
        if (root / name / "manifest.yaml").is_file():
            return plugin_at(root / name)
    raise SystemExit(f"no plugin {name!r} in plugins/ or bench/plugins/")


def echo_request() -> bytes:
    """A ``poll`` request for the echo plugin, as the daemon encodes it."""
    return encode_request(
        job_id="00000000-0000-4000-8000-000000000000",
        command="poll",
        config={},
        state={"last_command": "poll", "last_job_id": "00000000-0000-4000-8000-000000000000"},
        context={},
        payload={"k": "v"},
        event=None,
        deadline_at=datetime.now(UTC) + timedelta(seconds=60),
    )


def compile_spawner(workdir: Path) -> Path | None:
    """Build bench/spawner.c with ``$CC``/cc; None when there is no compiler."""
    cc = tools.find("cc")
    if cc is None:
        return None
    binary = workdir / "spawner"
    subprocess.run(
        [cc, "-O2", "-o", str(binary), str(tools.BENCH / "spawner.c")],
        check=True,
        capture_output=True,
    )
    return binary


def run_native(
    binary: Path, request_file: Path, parallel: int, jobs: int, plugin: Plugin | None = None
) -> float:
    """Jobs per second from the C spawner (the echo plugin unless told otherwise)."""
    plugin = plugin or plugin_at(ECHO)
    out = subprocess.run(
        [
            str(binary),
            str(plugin.entrypoint),
            str(plugin.folder),
            str(request_file),
            str(parallel),
            str(jobs),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fields = dict(part.split("=", 1) for part in out.split())
    return float(fields["jobs_per_s"])


def _python_worker(request: bytes, count: int, entrypoint: Path) -> None:
    """Run ``count`` jobs one after another with posix_spawn and pipes."""
    for _ in range(count):
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.posix_spawn(
            str(entrypoint),
            [str(entrypoint)],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, in_r, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
            setsid=True,
        )
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        os.write(in_w, request)
        os.close(in_w)
        with selectors.DefaultSelector() as sel:
            sel.register(out_r, selectors.EVENT_READ)
            sel.register(err_r, selectors.EVENT_READ)
            while sel.get_map():
                for key, _ in sel.select():
                    if not os.read(key.fd, 65536):
                        sel.unregister(key.fd)
                        os.close(key.fd)
        os.waitpid(pid, 0)


def run_python(request: bytes, parallel: int, jobs: int, plugin: Plugin | None = None) -> float:
    """Jobs per second from the Python stand-in: ``parallel`` forked workers."""
    plugin = plugin or plugin_at(ECHO)
    started = time.perf_counter()
    children = []
    for w in range(parallel):
        share = jobs // parallel + (1 if w < jobs % parallel else 0)
        pid = os.fork()
        if pid == 0:
            try:
                # The plugin runs in its own directory, as the daemon runs it.
                os.chdir(plugin.folder)
                _python_worker(request, share, plugin.entrypoint)
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return jobs / (time.perf_counter() - started)


def hyperfine_once(request_file: Path, runs: int, plugin: Plugin | None = None) -> float | None:
    """Mean seconds of one plugin run, timed by hyperfine; None without hyperfine."""
    plugin = plugin or plugin_at(ECHO)
    binary = tools.find("hyperfine")
    if binary is None:
        report.skipped("hyperfine cross-check", tools.missing("hyperfine"))
        return None
    with tempfile.TemporaryDirectory(prefix="bench-hyperfine-") as tmp:
        export = Path(tmp) / "out.json"
        subprocess.run(
            [
                binary,
                "--warmup",
                "5",
                "--runs",
                str(runs),
                "--export-json",
                str(export),
                f"cd {plugin.folder} && {plugin.entrypoint} < {request_file} > /dev/null",
            ],
            check=True,
            capture_output=True,
        )
        return float(json.loads(export.read_text())["results"][0]["mean"])


def measure(
    parallel: list[int], jobs: int, *, quick: bool = False, plugin: Plugin | None = None
) -> list[report.Figure]:
    """Jobs/s at each parallelism, the best of them, and the hyperfine cross-check,
    for ``plugin`` (the bundled echo plugin when None)."""
    plugin = plugin or plugin_at(ECHO)
    figures: list[report.Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-spawn-") as tmp:
        request_file = Path(tmp) / "request.json"
        request = echo_request()
        request_file.write_bytes(request)
        binary = compile_spawner(Path(tmp))
        how = "C spawner"
        if binary is None:
            report.skipped("C spawner", "no C compiler (cc); using the slower Python spawner")
            how = "Python spawner, a lower bound"
        for n in parallel:
            count = max(jobs, n)
            if binary is not None:
                rate = run_native(binary, request_file, n, count, plugin)
            else:
                rate = run_python(request, n, count, plugin)
            figures.append(
                report.Figure(name=f"{plugin.prefix}: N={n}", value=rate, unit="jobs/s", note=how)
            )
        best = max(figures, key=lambda f: f.value)
        figures.append(
            report.Figure(
                name=f"{plugin.prefix}: best",
                value=best.value,
                unit="jobs/s",
                note=best.name.removeprefix(f"{plugin.prefix}: "),
            )
        )
        mean = hyperfine_once(request_file, runs=10 if quick else 200, plugin=plugin)
        if mean is not None:
            figures.append(
                report.Figure(
                    name=f"hyperfine: one {plugin.name} run",
                    value=mean * 1000,
                    unit="ms",
                    note=f"{1 / mean:.0f} runs/s sequentially",
                )
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    """Measure the spawn bound."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a second or so")
    parser.add_argument("--parallel", default="1,2,4,8", help="comma-separated values of N")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per value of N")
    parser.add_argument(
        "--plugin", default="echo", help="which plugin (plugins/ or bench/plugins/, e.g. trivial)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    parallel = [1, 2] if args.quick else [int(n) for n in args.parallel.split(",")]
    jobs = 20 if args.quick else args.jobs
    plugin = find_plugin(args.plugin)
    report.header(f"spawn bound (the {plugin.name} plugin, spawn + request + read + reap)")
    figures = measure(parallel, jobs, quick=args.quick, plugin=plugin)
    report.show(figures)
    report.save(args.json, "spawn bound", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
