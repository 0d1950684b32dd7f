"""Processes as ``/proc`` shows them: what the reliability tests look at.

A test that promises "no process outlives its job" or "no fd leaks" has to look at
the machine, not at the daemon's own books.  These helpers read ``/proc`` directly
(Linux only, which is what the daemon targets) and never raise for a process that
vanished while being read: that race is the normal case here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs

PROC = Path("/proc")


@attrs.frozen(kw_only=True)
class Stat:
    """The fields of ``/proc/<pid>/stat`` the tests need."""

    pid: int
    state: str
    ppid: int
    pgrp: int


def stat(pid: int) -> Stat | None:
    """``/proc/<pid>/stat``, or None when the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses itself.
    fields = text[text.rindex(")") + 2 :].split()
    return Stat(pid=pid, state=fields[0], ppid=int(fields[1]), pgrp=int(fields[2]))


def all_stats() -> list[Stat]:
    """Every process on the machine."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            st = stat(int(entry.name))
            if st is not None:
                found.append(st)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as dead (it only waits to be reaped)."""
    st = stat(pid)
    return st is not None and st.state not in ("Z", "X")


def survivors(pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` that still run."""
    return sorted(pid for pid in pids if alive(pid))


def group_members(pgids: Iterable[int]) -> list[Stat]:
    """Live processes in any of the process groups ``pgids``."""
    wanted = set(pgids)
    return [s for s in all_stats() if s.pgrp in wanted and s.state not in ("Z", "X")]


def children(pid: int) -> list[Stat]:
    """Direct children of ``pid``, zombies included."""
    return [s for s in all_stats() if s.ppid == pid]


def zombies(parent: int) -> list[int]:
    """Children of ``parent`` that exited and were never reaped."""
    return [s.pid for s in children(parent) if s.state == "Z"]


def descendants(pid: int) -> list[Stat]:
    """Children, grandchildren ... of ``pid`` (only those still attached to the tree)."""
    stats = all_stats()
    by_parent: dict[int, list[Stat]] = {}
    for s in stats:
        by_parent.setdefault(s.ppid, []).append(s)
    out: list[Stat] = []
    todo = [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def open_fds(pid: int) -> dict[int, str]:
    """The process's open file descriptors: number -> what it points at."""
    fds: dict[int, str] = {}
    base = PROC / str(pid) / "fd"
    for entry in base.iterdir():
        try:
            fds[int(entry.name)] = os.readlink(entry)
        except OSError:
            continue  # closed while we looked
    return fds


def threads(pid: int) -> int:
    """How many threads the process has."""
    return len(list((PROC / str(pid) / "task").iterdir()))


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (``VmRSS``)."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for pid {pid}")


@attrs.frozen(kw_only=True)
class Mark:
    """A file a chaos plugin left: ``<job id>.<role>.<pid>``."""

    job_id: str
    role: str
    pid: int


def read_marks(directory: Path) -> list[Mark]:
    """Every mark the chaos plugins left in ``directory`` (see tests/chaos_plugins)."""
    found = []
    for entry in directory.iterdir():
        job_id, _, rest = entry.name.partition(".")
        role, _, pid = rest.partition(".")
        if pid.isdigit():
            found.append(Mark(job_id=job_id, role=role, pid=int(pid)))
    return found
