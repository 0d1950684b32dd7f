"""What the JobStore does when the disk refuses a write: the decisions, as plain code.

A full disk (``SQLITE_FULL``) or a failing one (``SQLITE_IOERR``) is a state to wait
out, not a bug to crash on: the transaction is rolled back and the store answers
each request of the refused batch by its :class:`Disposition`.  Clients' writes are
refused with :class:`StorageFull` (the API turns it into 507), reads are served
again on their own, and the writes of actors that cannot take an error are kept
and tried again with :func:`retry_delay` between attempts, so the daemon resumes
by itself once space returns.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from chamberlain.actors.mail import (
    ActOnRun,
    AddRepository,
    BranchHolder,
    BuryQueued,
    CancelQueued,
    Claim,
    CommitSchedules,
    CreateMcpServer,
    CreateSecret,
    DecideStep,
    DeleteMcpServer,
    DeleteSecret,
    DeleteWorkspace,
    DueCallbacks,
    Enqueue,
    EnqueueFollowUp,
    EnqueuePlan,
    EnqueueWebhook,
    GetCallbacks,
    GetIterations,
    GetJob,
    GetMessages,
    GetQueue,
    GetRun,
    GetSecret,
    GetStatusChanges,
    GetTranscript,
    GetTree,
    GetWorkspace,
    JobStatuses,
    JobStoreRequest,
    ListAddedRepositories,
    ListFacts,
    ListJobs,
    ListMcpServers,
    ListRuns,
    ListSecrets,
    ListWorkspaces,
    LoadSchedules,
    MarkSession,
    OutstandingJobs,
    QueueDepth,
    RecordCallbackAttempt,
    RecordInput,
    RecordOutput,
    RecordPullRequest,
    RecoverOrphans,
    RemoveRepository,
    ReportCi,
    RotateSecret,
    RouteSettled,
    RunEvents,
    RunningJobs,
    SaveIteration,
    Settle,
    StopLoop,
    TouchWorkspace,
    TreePending,
    WaitJob,
    WorkspaceUsage,
)


class StorageFull(Exception):
    """A write the database's disk refused (full or failing): nothing of it was stored.

    The message says what SQLite reported; trying again once space returns may work.
    """


class Disposition(enum.Enum):
    """What becomes of a request whose batch the disk refused."""

    #: Changes nothing: run again on its own, so reads go on while writes cannot.
    READ = "read"
    #: Answered :class:`StorageFull` at once; its caller (an HTTP client, or the
    #: output forwarder, which logs and drops) can take the error.
    REFUSE = "refuse"
    #: Kept and tried again with backoff until it commits or its caller goes away:
    #: the actor that sent it would crash on an error, and a settled outcome or an
    #: orphan recovery must not be lost.
    HOLD = "hold"
    #: A Claim: answered "nothing to run yet, ask again after the backoff", so the
    #: Dispatcher neither crashes nor blocks.
    POSTPONE = "postpone"


#: SQLite's primary result codes SQLITE_FULL and SQLITE_IOERR (part of its stable C
#: API), spelled out so that this module, which the web layer sees through the
#: gateway, does not import sqlite3.
SQLITE_FULL = 13
SQLITE_IOERR = 10
_PRIMARY_CODES = frozenset({SQLITE_FULL, SQLITE_IOERR})

#: Each request type's disposition; every member of JobStoreRequest is listed.
DISPOSITIONS: Mapping[type, Disposition] = {
    **dict.fromkeys(
        (
            GetJob,
            WaitJob,
            ListJobs,
            QueueDepth,
            RunningJobs,
            TreePending,
            GetTree,
            LoadSchedules,
            OutstandingJobs,
            JobStatuses,
            GetMessages,
            GetStatusChanges,
            GetQueue,
            GetCallbacks,
            DueCallbacks,
            GetTranscript,
            GetIterations,
        ),
        Disposition.READ,
    ),
    # A cancel is a client's request too: refused, it gets its 507 at once instead
    # of stalling the Dispatcher (which waits for it) until space returns.
    **dict.fromkeys(
        (Enqueue, EnqueuePlan, EnqueueWebhook, RecordOutput, CancelQueued, BuryQueued),
        Disposition.REFUSE,
    ),
    # A session's writes are a client's (a message, a complete) or their
    # bookkeeping: refused at once, so the client hears 507 and nothing waits.
    **dict.fromkeys((RecordInput, MarkSession, EnqueueFollowUp), Disposition.REFUSE),
    # A loop's iteration is the Runner's bookkeeping: held until the disk takes it,
    # so a finished iteration is never lost; a stop is a client's, answered 507.
    SaveIteration: Disposition.HOLD,
    StopLoop: Disposition.REFUSE,
    # -- workspaces: reads go on; a use recorded waits for the disk; a delete is a
    # client's, answered 507.
    **dict.fromkeys((ListWorkspaces, GetWorkspace, WorkspaceUsage, BranchHolder), Disposition.READ),
    TouchWorkspace: Disposition.HOLD,
    DeleteWorkspace: Disposition.REFUSE,
    # A pull request opened is recorded for its client, who hears 507 and may ask
    # again: the forge then answers with the same one.
    RecordPullRequest: Disposition.REFUSE,
    # -- repositories added through the API: like the MCP servers below.
    ListAddedRepositories: Disposition.READ,
    **dict.fromkeys((AddRepository, RemoveRepository), Disposition.REFUSE),
    **dict.fromkeys(
        (
            Settle,
            RecoverOrphans,
            RouteSettled,
            CommitSchedules,
            RecordCallbackAttempt,
        ),
        Disposition.HOLD,
    ),
    Claim: Disposition.POSTPONE,
    # -- secrets: the registry's reads go on; its writes are a client's, answered 507.
    **dict.fromkeys((GetSecret, ListSecrets), Disposition.READ),
    **dict.fromkeys((CreateSecret, RotateSecret, DeleteSecret), Disposition.REFUSE),
    # -- MCP servers: likewise (a Runner's ListMcpServers is a read served again).
    ListMcpServers: Disposition.READ,
    **dict.fromkeys((CreateMcpServer, DeleteMcpServer), Disposition.REFUSE),
    # -- plugin facts: a client's read (the facts themselves are written by Settle).
    ListFacts: Disposition.READ,
    # -- runs: read from their jobs.
    **dict.fromkeys((GetRun, ListRuns, RunEvents), Disposition.READ),
    # A run's control is a client's request: refused, it hears 507 at once.
    **dict.fromkeys((ActOnRun, DecideStep, ReportCi), Disposition.REFUSE),
}

#: The first retry after a refused batch, and the most the backoff grows to: short
#: enough that the daemon resumes within a couple of seconds of space returning.
RETRY_FIRST = 0.1
RETRY_MAX = 2.0


def storage_failure(error: BaseException) -> str | None:
    """Why ``error`` means the disk refused a write (``SQLITE_FULL: ...``), else None.

    Only sqlite3's errors carry ``sqlite_errorcode``.  Extended codes
    (``SQLITE_IOERR_WRITE``, ``SQLITE_IOERR_FSYNC``...) keep their primary code in
    the low byte, so every I/O error counts.
    """
    code = getattr(error, "sqlite_errorcode", None)
    if not isinstance(code, int) or code & 0xFF not in _PRIMARY_CODES:
        return None
    name = getattr(error, "sqlite_errorname", None)
    return f"{name if isinstance(name, str) else f'SQLite error {code}'}: {error}"


def disposition(request: JobStoreRequest) -> Disposition:
    """What a refused batch does with ``request``.

    A request type nobody classified is refused: an error is never silently held.
    """
    return DISPOSITIONS.get(type(request), Disposition.REFUSE)


def retry_delay(failures: int) -> float:
    """Seconds to wait before the next attempt after ``failures`` refused ones in a row."""
    if failures <= 1:
        return RETRY_FIRST
    return min(RETRY_MAX, RETRY_FIRST * 2.0 ** min(failures - 1, 32))
