"""Starting a plugin process from the event loop, and awaiting its exit on a pidfd.

trio's ``open_process`` runs ``subprocess.Popen`` in a worker thread, because a
spawn may block.  On Linux CPython spawns with ``vfork``: the parent waits only
until the child has called ``exec``, a fraction of a millisecond for the small
executables plugins are, while the hop to a thread and back costs the parent twice
the CPU of the spawn itself, and under load the worker then waits for the GIL the
event loop holds (docs/PERFORMANCE.md has the figures).  So where the kernel has
pidfds (Linux 5.3 and later) a plugin is spawned right here: its pipes become trio
streams, and its exit is awaited by waiting for its pidfd to become readable, which
is also how trio waits for the processes it starts.  Elsewhere trio's
``open_process`` does it all.

Either way the caller gets a :class:`Spawned`: the pid (also the process group, as
the child leads a new session), the three pipes and an awaitable exit status.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import attrs
import trio

__all__ = ["PidfdProcess", "Spawned", "spawn"]


class Spawned(Protocol):
    """What :func:`spawn` returns: trio's Process, or a :class:`PidfdProcess`."""

    @property
    def pid(self) -> int:
        """The process id; the process group's too."""

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (negative: the signal that ended it), else None."""

    @property
    def stdin(self) -> trio.abc.SendStream | None:
        """Our end of the process's stdin."""

    @property
    def stdout(self) -> trio.abc.ReceiveStream | None:
        """Our end of the process's stdout."""

    @property
    def stderr(self) -> trio.abc.ReceiveStream | None:
        """Our end of the process's stderr."""

    async def wait(self) -> int:
        """Wait for the process to exit and reap it; its return code."""


@attrs.define(eq=False)
class PidfdProcess:
    """A child spawned on the event loop; its exit is awaited on its pidfd."""

    pid: int
    stdin: trio.lowlevel.FdStream
    stdout: trio.lowlevel.FdStream
    stderr: trio.lowlevel.FdStream
    #: Kept until the child is reaped: dropped earlier, subprocess would count the
    #: child among its own and reap it behind our back at its next spawn.
    _popen: subprocess.Popen[bytes] = attrs.field(repr=False)
    _pidfd: int = attrs.field(repr=False)

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (negative: the signal that ended it), else None."""
        return self._popen.returncode

    async def wait(self) -> int:
        """Wait for the process to exit and reap it; its return code."""
        if self._popen.returncode is None:
            await trio.lowlevel.wait_readable(self._pidfd)
            # A readable pidfd means the child has exited: this wait does not block.
            self._popen.wait()
            os.close(self._pidfd)
        returncode = self._popen.returncode
        assert returncode is not None
        return returncode


def _pidfds_work() -> bool:
    """Whether this kernel and Python open pidfds (``os.pidfd_open``, Linux 5.3+)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


PIDFDS = _pidfds_work()


async def spawn(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str], new_session: bool = True
) -> Spawned:
    """Start ``args`` with three pipes, in a new session; raise OSError if it cannot start."""
    if not PIDFDS:
        return await trio.lowlevel.open_process(
            list(args),
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=new_session,
        )
    # Ours: the parent's ends close on exec, the child's are dup'ed onto 0, 1, 2.
    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
    stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
    ours = [stdin_w, stdout_r, stderr_r]
    try:
        try:
            # On the event loop on purpose: a vfork waits only for the child's exec
            # (see the module docstring).
            popen = subprocess.Popen(  # noqa: ASYNC220
                list(args),
                cwd=cwd,
                env=env,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=stderr_w,
                start_new_session=new_session,
            )
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
        try:
            pidfd = os.pidfd_open(popen.pid)
        except BaseException:
            popen.kill()
            popen.wait()
            raise
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    return PidfdProcess(
        pid=popen.pid,
        stdin=trio.lowlevel.FdStream(stdin_w),
        stdout=trio.lowlevel.FdStream(stdout_r),
        stderr=trio.lowlevel.FdStream(stderr_r),
        popen=popen,
        pidfd=pidfd,
    )
