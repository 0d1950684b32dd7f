"""Plugin processes that outlived their run: finding them, killing them, reaping them.

A plugin's process group is killed when its run ends (:mod:`.process`), but a
descendant that left the group with ``setsid`` escapes that kill, and a daemon killed
with SIGKILL cannot clean up at all.  Every plugin process is therefore started with
two variables in its environment, which its descendants inherit (``setsid`` or not):

* ``CHAMBERLAIN_JOB_ID``, the job it works for (for the logs, and to recognise the
  processes of a daemon older than the run marker);
* ``CHAMBERLAIN_RUN``, the run marker: which daemon started it (pid namespace, pid and
  start time, which no other process on the machine shares while it lives) and which
  of that daemon's runs it belongs to.

:data:`RUNS` books the runs in progress.  A process whose marker names this daemon and
a run no longer in progress, or a daemon that is gone, is a leftover: nothing reads
its output and its job has moved on.  :func:`kill_leftover_processes` finds them in
``/proc`` and SIGKILLs them (at start-up, and batched after runs end).  A process of
another live daemon is never touched, nor one of a dead daemon whose job is not in
our database (another state's: its own daemon cleans up when it starts), and one in
another pid namespace is never judged.  A daemon that is a child subreaper adopts
the escapees once their parents die; :func:`reap_adopted` reaps those of its children
that nobody else waits for.  Under systemd the service's cgroup is killed as a whole
on stop, but a daemon started by hand deserves the same promise.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

import attrs

log = logging.getLogger("chamberlain.plugins")

JOB_ID_VARIABLE = "CHAMBERLAIN_JOB_ID"
RUN_VARIABLE = "CHAMBERLAIN_RUN"
_JOB_KEY = JOB_ID_VARIABLE.encode()
_RUN_KEY = RUN_VARIABLE.encode()

PROC = Path("/proc")

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@attrs.frozen(kw_only=True)
class DaemonIdentity:
    """A daemon process as the machine knows it; the pid alone could be recycled."""

    namespace: int
    pid: int
    #: Start time in clock ticks since boot (``/proc/<pid>/stat``, field 22).
    started: int

    def marker(self, run: int) -> str:
        """The ``CHAMBERLAIN_RUN`` value of this daemon's run number ``run``."""
        return f"{self.namespace}.{self.pid}.{self.started}.{run}"

    def alive(self, proc: Path = PROC) -> bool:
        """True while the very process this identity names runs (zombies excepted)."""
        st = read_stat(self.pid, proc)
        return st is not None and st.started == self.started and st.state not in "ZX"


@attrs.frozen(kw_only=True)
class RunMarker:
    """A parsed ``CHAMBERLAIN_RUN`` value."""

    daemon: DaemonIdentity
    run: int

    @classmethod
    def parse(cls, value: str) -> RunMarker | None:
        """The marker in ``value``, or None for anything else (a plugin may fake it)."""
        parts = value.split(".")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return None
        namespace, pid, started, run = (int(p) for p in parts)
        return cls(daemon=DaemonIdentity(namespace=namespace, pid=pid, started=started), run=run)


@attrs.frozen(kw_only=True)
class Stat:
    """The fields of ``/proc/<pid>/stat`` the reaper needs."""

    state: str
    ppid: int
    session: int
    started: int


def read_stat(pid: int, proc: Path = PROC) -> Stat | None:
    """``/proc/<pid>/stat``, or None once the process is gone (or on a system without it)."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    return Stat(
        state=fields[0], ppid=int(fields[1]), session=int(fields[3]), started=int(fields[19])
    )


def _pid_namespace(proc: Path) -> int:
    try:
        link = os.readlink(proc / "self" / "ns" / "pid")  # "pid:[4026531836]"
    except OSError:
        return 0
    digits = "".join(c for c in link if c.isdigit())
    return int(digits) if digits else 0


def _boot_ticks() -> int:
    """Now, in the clock of ``/proc/<pid>/stat``'s start times."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLOCK_TICKS)


@attrs.define(eq=False)
class _Live:
    #: When the run began, in boot ticks: no process of it can have started earlier.
    began: int
    leader: int | None = None


class RunBook:
    """The plugin runs this process has in progress, shared by every thread.

    `begin` before spawning, `spawned` once the leader exists, `end` when the run is
    over and its leader reaped (or given up on).  A run's number is never reused, so
    "not in progress" is the same as "over" for every number handed out.
    """

    def __init__(self, proc: Path = PROC) -> None:
        self._proc = proc
        self._lock = threading.Lock()
        self._next = 1
        self._live: dict[int, _Live] = {}
        self._identity: DaemonIdentity | None = None
        self._watchers: list[Callable[[], None]] = []
        self.ended = 0

    def identity(self) -> DaemonIdentity:
        """This process's identity (computed again in a forked child)."""
        me = os.getpid()
        identity = self._identity
        if identity is None or identity.pid != me:
            st = read_stat(me, self._proc)
            identity = DaemonIdentity(
                namespace=_pid_namespace(self._proc),
                pid=me,
                started=st.started if st is not None else 0,
            )
            self._identity = identity
        return identity

    def begin(self) -> tuple[int, str]:
        """Book a new run: its number and the marker its processes carry."""
        identity = self.identity()
        with self._lock:
            run = self._next
            self._next += 1
            self._live[run] = _Live(began=_boot_ticks())
        return run, identity.marker(run)

    def spawned(self, run: int, pid: int) -> None:
        """The run's leader exists: its exit status is trio's, never the reaper's."""
        with self._lock:
            live = self._live.get(run)
            if live is not None:
                live.leader = pid

    def end(self, run: int) -> None:
        """The run is over: whatever still carries its marker is a leftover."""
        with self._lock:
            if self._live.pop(run, None) is None:
                return
            self.ended += 1
            watchers = tuple(self._watchers)
        for watcher in watchers:
            watcher()

    def watch(self, watcher: Callable[[], None]) -> Callable[[], None]:
        """Call ``watcher`` (from whichever thread ends it) whenever a run ends.

        Returns the function that stops the watching.  Watchers must not block: the
        sweeper's only wakes a task.
        """
        with self._lock:
            self._watchers.append(watcher)

        def stop() -> None:
            with self._lock:
                self._watchers.remove(watcher)

        return stop

    def in_progress(self, run: int) -> bool:
        """True while run number ``run`` is booked."""
        with self._lock:
            return run in self._live

    def leaders(self) -> tuple[frozenset[int], int | None]:
        """The leaders that are somebody's to reap, and since when one may be forking.

        The second value is the earliest `begin` tick of the runs whose leader is not
        known yet: a child started since then may be such a leader (forked, not yet
        booked), so the reaper must leave it alone for now.
        """
        with self._lock:
            leaders = frozenset(v.leader for v in self._live.values() if v.leader is not None)
            pending = [v.began for v in self._live.values() if v.leader is None]
        return leaders, min(pending) if pending else None


#: The runs of this process.  Process-wide, like the pids and the children it tracks.
RUNS = RunBook()


def _environment(pid: str, proc: Path) -> dict[bytes, bytes] | None:
    # This runs for every process on the machine at every sweep: raw reads on a
    # string path, and one substring test for the common case (not a plugin's).
    try:
        fd = os.open(f"{proc}/{pid}/environ", os.O_RDONLY)
    except OSError:
        return None  # gone meanwhile, or another user's
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return None  # exited while we read
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if b"CHAMBERLAIN_" not in raw:
        return None
    found: dict[bytes, bytes] = {}
    for variable in raw.split(b"\0"):
        name, _, value = variable.partition(b"=")
        if name in (_JOB_KEY, _RUN_KEY):
            found[name] = value
    return found


def _processes(proc: Path) -> list[str]:
    try:
        return [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return []  # no /proc (not Linux): nothing we can do


def find_job_processes(job_ids: Collection[str], proc: Path = PROC) -> dict[int, str]:
    """Live processes whose environment names one of ``job_ids``: pid -> job id."""
    if not job_ids:
        return {}
    wanted = set(job_ids)
    me = str(os.getpid())
    found: dict[int, str] = {}
    for pid in _processes(proc):
        env = None if pid == me else _environment(pid, proc)
        job = env.get(_JOB_KEY, b"").decode(errors="replace") if env else ""
        if job in wanted:
            found[int(pid)] = job
    return found


def kill_leftover_processes(
    job_ids: Collection[str] = (),
    proc: Path = PROC,
    book: RunBook = RUNS,
    known: Callable[[str], bool] | None = None,
) -> dict[int, str]:
    """SIGKILL every plugin process (and its group) that no run in progress owns.

    A leftover is a process whose run marker names this daemon and a run that is
    over; or names a daemon that is gone, when ``known`` says its job is one of ours
    (a job of another state is that state's daemon's to clean up when it starts); or
    carries no marker (started by an older daemon) and works for one of ``job_ids``,
    the jobs found ``running`` at start-up.  Returns pid -> job id of those killed.
    """
    wanted = set(job_ids)
    me = book.identity()
    verdicts: dict[DaemonIdentity, bool] = {me: True}
    found: dict[int, str] = {}
    for pid in _processes(proc):
        if int(pid) == me.pid:
            continue
        env = _environment(pid, proc)
        if not env:
            continue
        job = env.get(_JOB_KEY, b"").decode(errors="replace")
        marker = RunMarker.parse(env.get(_RUN_KEY, b"").decode(errors="replace"))
        if marker is None:
            leftover = job in wanted
        elif marker.daemon == me:
            leftover = not book.in_progress(marker.run)
        elif marker.daemon.namespace != me.namespace:
            leftover = False  # its pid means nothing here: not ours to judge
        else:
            alive = verdicts.get(marker.daemon)
            if alive is None:
                alive = verdicts[marker.daemon] = marker.daemon.alive(proc)
            leftover = not alive and known is not None and known(job)
        if leftover:
            found[int(pid)] = job
    killed: dict[int, str] = {}
    for number, job_id in found.items():
        if _kill(number, proc):
            killed[number] = job_id
            log.warning(
                "killed pid %d left over from a previous run of the job",
                number,
                extra={"component": "plugins", "job_id": job_id, "pid": number},
            )
    return killed


def _kill(pid: int, proc: Path) -> bool:
    """SIGKILL ``pid`` and its group, unless the pid now names another process."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:
        handle = None  # no pidfd here: accept the (tiny) pid-reuse race
    try:
        # Through a pidfd, the signal reaches the process we hold or none; what we
        # hold must still carry a marker, or the pid was reused after we read it.
        if handle is not None and _environment(str(pid), proc) is None:
            return False
        # The group first: an escapee that called setsid leads one, and whatever it
        # forked since we read /proc is in it.  While the process lives (we just saw
        # it), no other group can have its pid as id.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            if handle is not None:
                signal.pidfd_send_signal(handle, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group kill got it first
        return True
    finally:
        if handle is not None:
            os.close(handle)


def _children(proc: Path) -> set[int]:
    """This process's children, from every thread's ``children`` list."""
    found: set[int] = set()
    try:
        tasks = os.listdir(proc / "self" / "task")
    except OSError:
        return found
    for task in tasks:
        try:
            text = (proc / "self" / "task" / task / "children").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        found.update(int(pid) for pid in text.split())
    return found


def reap_adopted(proc: Path = PROC, book: RunBook = RUNS) -> list[int]:
    """Reap the zombies among our children that no one else will wait for.

    Only for a child subreaper, whose adopted orphans (plugin descendants whose
    parents died) would otherwise stay zombies forever.  Never ``waitpid(-1)``,
    which would steal the exit status of a plugin leader trio is waiting for: each
    zombie is reaped by its pid, and only when it cannot be such a leader, that is,
    when it is not a booked leader, not in the daemon's own session (every process
    the daemon forks for itself is), and started before any run whose leader is not
    booked yet began.  A zombie cannot change identity before it is reaped, and only
    its parent (us) can reap it, so its pid stays its own between the look and the
    wait.  Returns the pids reaped.
    """
    me = os.getpid()
    session = os.getsid(0)
    leaders, forking_since = book.leaders()
    reaped: list[int] = []
    for pid in sorted(_children(proc) - leaders):
        st = read_stat(pid, proc)
        if st is None or st.state != "Z" or st.ppid != me or st.session == session:
            continue
        if forking_since is not None and st.started >= forking_since - 1:
            continue  # may be a leader just forked: the next pass decides
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done:
            reaped.append(pid)
    return reaped
