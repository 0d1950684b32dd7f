"""What a client command's exit code says: how the job ended, or why nothing was asked.

Scripts branch on these, so they are part of the interface (docs/CLI.md) and never
reused for something else.  No I/O here.
"""

from __future__ import annotations

import enum

__all__ = ["ExitCode", "exit_for_status"]


class ExitCode(enum.IntEnum):
    """The exit codes of the client commands."""

    SUCCEEDED = 0
    #: The job failed or is dead; or the daemon refused the request (404, 409, 400).
    FAILED = 1
    USAGE = 2
    #: The job timed out, or ``--timeout`` passed before it ended.
    TIMED_OUT = 3
    CANCELLED = 4
    UNREACHABLE = 5
    AUTH_REFUSED = 6


_BY_STATUS = {
    "succeeded": ExitCode.SUCCEEDED,
    "failed": ExitCode.FAILED,
    "dead": ExitCode.FAILED,
    "timed_out": ExitCode.TIMED_OUT,
    "cancelled": ExitCode.CANCELLED,
}


def exit_for_status(status: str) -> ExitCode:
    """The exit code of a job that ended ``status``; a job still queued or running
    when the wait is over is ``TIMED_OUT`` (the wait timed out, not the job)."""
    return _BY_STATUS.get(status, ExitCode.TIMED_OUT)
