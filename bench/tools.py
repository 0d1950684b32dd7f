"""The public tools the benchmarks drive (wrk, hyperfine, webhook, a C compiler).

Each tool is looked up on PATH, or at the path in an environment variable named
after it (``WRK``, ``HYPERFINE``, ``WEBHOOK``, ``CC``), so a run can point at a
particular build, and a test can pretend a tool is missing.  A missing tool is
never an error and never silent: the caller prints ``SKIPPED ...`` with the
install line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import attrs

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# The benchmarks measure the tree they live in, whichever chamberlain is installed:
# this process imports it from REPO, and so do the servers it starts (PYTHONPATH).
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))
PYTHON_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}
INSTALL = "apt-get install -y wrk hyperfine webhook"


def find(tool: str) -> str | None:
    """The path of ``tool`` (or of ``$TOOL``), or None when it is not installed."""
    override = os.environ.get(tool.upper().replace("-", "_"))
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    return shutil.which(tool)


def missing(tool: str) -> str:
    """The reason printed when ``tool`` is not available."""
    return f"{tool} not found (install: {INSTALL})"


@attrs.frozen(kw_only=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    #: Answers that were not 2xx/3xx.
    bad_status: int

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    *,
    method: str = "GET",
    token: str | None = None,
    body: bytes | None = None,
    paths: list[str] | None = None,
    connections: int = 16,
    threads: int = 1,
    seconds: float = 10.0,
    binary: str | None = None,
) -> LoadResult:
    """Load ``url`` with wrk (closed loop, ``connections`` at once) and read its report."""
    binary = binary or find("wrk")
    if binary is None:
        raise FileNotFoundError(missing("wrk"))
    with tempfile.TemporaryDirectory(prefix="chamberlain-wrk-") as tmp:
        body_file = paths_file = "-"
        if body is not None:
            body_file = str(Path(tmp) / "body.json")
            Path(body_file).write_bytes(body)
        if paths is not None:
            paths_file = str(Path(tmp) / "paths.txt")
            Path(paths_file).write_text("\n".join(paths) + "\n")
        command = [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "load.lua"),
            url,
            "--",
            method,
            token or "-",
            body_file,
            paths_file,
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            data = json.loads(line.removeprefix("WRK_JSON "))
            break
    else:
        raise RuntimeError(f"wrk printed no WRK_JSON line:\n{out}")
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=data["connect_errors"]
        + data["read_errors"]
        + data["write_errors"]
        + data["timeouts"],
        bad_status=data["status_errors"],
    )
