"""Finding plugin processes that outlived the daemon that started them.

A daemon killed with SIGKILL cannot clean up: its plugins' process groups keep
running, re-parented to init.  Every plugin process is started with
``CHAMBERLAIN_JOB_ID`` in its environment, which its descendants inherit (even one
that left the group with ``setsid``), so at the next start the processes of the jobs
found ``running`` can be recognised in ``/proc`` and killed before those jobs run
again.  Nothing here is needed under systemd, which kills the whole cgroup, but a
daemon started by hand deserves the same promise.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger("chamberlain.plugins")

JOB_ID_VARIABLE = "CHAMBERLAIN_JOB_ID"


def job_environment(job_id: str, plugin: str) -> dict[str, str]:
    """The environment a plugin process runs with: ours, plus who it works for."""
    return {**os.environ, JOB_ID_VARIABLE: job_id, "CHAMBERLAIN_PLUGIN": plugin}


def find_job_processes(job_ids: Collection[str], proc: Path = Path("/proc")) -> dict[int, str]:
    """Live processes whose environment names one of ``job_ids``: pid -> job id."""
    if not job_ids:
        return {}
    wanted = {f"{JOB_ID_VARIABLE}={j}".encode(): j for j in job_ids}
    found: dict[int, str] = {}
    me = os.getpid()
    try:
        entries = list(proc.iterdir())
    except OSError:
        return found  # no /proc (not Linux): nothing we can do
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or another user's
        for variable in environ.split(b"\0"):
            job = wanted.get(variable)
            if job is not None:
                found[int(entry.name)] = job
                break
    return found


def kill_job_processes(job_ids: Collection[str], proc: Path = Path("/proc")) -> dict[int, str]:
    """SIGKILL every process (and its group) that works for one of ``job_ids``."""
    found = find_job_processes(job_ids, proc)
    for pid, job in found.items():
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        log.warning(
            "killed pid %d left over from a previous run of the job",
            pid,
            extra={"component": "plugins", "job_id": job, "pid": pid},
        )
    return found
