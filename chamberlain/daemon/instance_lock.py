"""The single-instance lock: one daemon per state database.

Two daemons on one database would each recover the other's running jobs as
orphans and run them twice.  The lock is an advisory ``flock`` on the database file
itself.  The kernel keys an ``flock`` on the inode, not on the name it was opened
by, so a symlink, a hard link, a bind mount or a relative path all reach the same
lock; a lock file beside the database would be named from a path, and a hard link
(whose name resolves nowhere else) would give a second daemon a lock of its own.
The kernel drops the lock when the process dies, even by SIGKILL, so a crash never
leaves a stale lock behind.

An ``flock`` does not interact with the POSIX record locks SQLite takes on the same
file (Linux keeps the two apart on local file systems, the only ones SQLite's WAL
mode supports), so the store works under it unchanged.  The descriptor is kept open
for the life of the daemon: closing any descriptor of a file drops every POSIX lock
the process holds on it, SQLite's included, so it is closed only once the store is.

Opening the database here also creates it when it is new, with mode 0600; SQLite
gives its ``-wal`` and ``-shm`` files the database's mode, so they are private too.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AlreadyRunning(Exception):
    """Another daemon holds the lock for this database."""


class StateUnusable(Exception):
    """The database cannot be opened or created at the configured path.

    ``str()`` names the path and what the operating system said, on one line.
    """


class InstanceLock:
    """Holds an ``flock`` on the state database for the life of the daemon."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`AlreadyRunning` naming the holder's pid.

        Raises :class:`StateUnusable` when the database, or the directory SQLite
        must create its ``-wal`` and ``-shm`` files in, cannot be written.
        """
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = os.fstat(fd)
            os.close(fd)
            holder = _flock_holder(info.st_dev, info.st_ino) or "unknown"
            real = self.database.resolve()
            alias = f" (given as {self.database})" if real != self.database else ""
            raise AlreadyRunning(
                f"another chamberlain (pid {holder}) is already running on {real}{alias}"
            ) from None
        self._fd = fd

    def _open(self) -> int:
        database = self.database
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(database, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateUnusable(f"cannot open {database}: {exc.strerror or exc}") from None
        directory = database.resolve().parent
        # SQLite creates <db>-wal and <db>-shm beside the real file; without this it
        # would fail later, deep inside the store, with "unable to open database file".
        if not os.access(directory, os.W_OK | os.X_OK):
            os.close(fd)
            raise StateUnusable(
                f"cannot open {database}: its directory {directory} is not writable"
                " (SQLite creates its -wal and -shm files there)"
            )
        return fd

    def release(self) -> None:
        """Drop the lock (also dropped by the kernel when the process exits)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock_holder(device: int, inode: int) -> str | None:
    """The pid holding an ``flock`` on the file, from ``/proc/locks`` (Linux only)."""
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                # "1: FLOCK  ADVISORY  WRITE 4242 00:2d:1234 0 EOF"; "->" marks waiters.
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return fields[4] if fields[4] != "0" else None
    except OSError:
        pass
    return None
