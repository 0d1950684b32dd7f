"""Adopting plugin escapees, and sweeping up what finished runs left behind.

A plugin descendant that leaves its process group (``setsid``) survives the group
kill at the end of its run.  Two things make sure it does not outlive its job:

* the daemon becomes a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux),
  so an orphaned descendant is re-parented to it instead of to init, and its zombie
  is ours to reap (:func:`chamberlain.plugins.strays.reap_adopted`);
* :func:`tend_leftovers` looks in ``/proc`` for processes carrying the marker of a
  run that is over (:func:`chamberlain.plugins.strays.kill_leftover_processes`) and
  SIGKILLs them.  Reading every process's environment costs about 10 µs a process
  on an idle machine (6 ms with 470 processes), so the look is batched: at most once per
  ``service.sweep_interval``, only when runs ended since the last one, and in a
  worker thread.  A last look on the way out covers the runs that ended just before.
  Why it is safe to wait for adopted children at all, next to trio waiting for its
  own: see :func:`~chamberlain.plugins.strays.reap_adopted`.

Elsewhere than on Linux there is neither ``prctl`` nor ``/proc``: the daemon logs
that and carries on, and systemd's cgroup kill remains the backstop.
"""

from __future__ import annotations

import ctypes
import logging
import math
import sys

import trio

from chamberlain.plugins.strays import RUNS, kill_leftover_processes, reap_adopted

log = logging.getLogger("chamberlain.root")

_PR_SET_CHILD_SUBREAPER = 36

#: How long the last sweep on the way out may take.
_FINAL_SWEEP_TIMEOUT = 5.0


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants; False where it cannot."""
    if not sys.platform.startswith("linux"):
        log.info(
            "not a child subreaper (%s has no PR_SET_CHILD_SUBREAPER): escaped plugin"
            " descendants are re-parented to init",
            sys.platform,
            extra={"component": "root"},
        )
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        log.warning(
            "cannot become a child subreaper (errno %d): escaped plugin descendants"
            " are re-parented to init",
            errno,
            extra={"component": "root"},
        )
        return False
    return True


async def tend_leftovers(
    *,
    interval: float,
    adopt: bool,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Kill the leftovers of finished runs, and reap adopted zombies, until cancelled.

    With ``adopt``, the process becomes a child subreaper first (only a daemon that
    owns its process should: it changes who reaps every orphan below it).  The task
    sleeps until a run ends, never polls for one: an idle daemon, or a test on trio's
    autojump clock that skips weeks, pays nothing.  Only a subreaper also wakes every
    ``interval`` to reap the adopted descendants that died meanwhile.
    """
    reaping = become_subreaper() if adopt else False
    token = trio.lowlevel.current_trio_token()
    nudge_tx, nudge_rx = trio.open_memory_channel[None](1)

    def nudge() -> None:
        try:
            nudge_tx.send_nowait(None)
        except trio.WouldBlock:
            pass  # a wake-up is already waiting: one is as good as many

    def run_ended() -> None:
        # Runs end in trio tasks and in worker threads alike: hand over to the loop.
        try:
            token.run_sync_soon(nudge)
        except trio.RunFinishedError:
            pass

    swept = RUNS.ended
    stop_watching = RUNS.watch(run_ended)
    task_status.started()
    try:
        while True:
            with trio.move_on_after(interval if reaping else math.inf):
                await nudge_rx.receive()
            if RUNS.ended != swept:
                # Batch: the runs that end during this pause share one sweep.
                await trio.sleep(interval)
                swept = RUNS.ended
                await trio.to_thread.run_sync(kill_leftover_processes)
            if reaping:
                reap_adopted()
    finally:
        stop_watching()
        if RUNS.ended != swept:
            with trio.move_on_after(_FINAL_SWEEP_TIMEOUT, shield=True):
                await trio.to_thread.run_sync(kill_leftover_processes)
        if reaping:
            reap_adopted()
