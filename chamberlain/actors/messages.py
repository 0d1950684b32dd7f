"""The messages actors exchange: one place that reads as the tree's protocol.

Every message is a frozen record.  A request that needs an answer carries its own
:class:`~chamberlain.actors.mailbox.ReplyTo`; notifications carry none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from chamberlain.actors.mailbox import ReplyTo
from chamberlain.model import Job, NewJob
from chamberlain.pipelines.routing import Plan
from chamberlain.plugins.protocol import Outcome, TerminationReason
from chamberlain.retry import RetryPolicy
from chamberlain.store.sqlite import Claimed, Enqueued, JobFilter

# -- to the JobStore --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Enqueue:
    """Create jobs; answered once they are committed."""

    jobs: tuple[NewJob, ...]
    reply: ReplyTo[tuple[Enqueued, ...]]


@attrs.frozen(kw_only=True)
class ClaimResult:
    """Jobs now marked running, and when the next future job falls due."""

    jobs: tuple[Claimed, ...]
    next_due: float | None


@attrs.frozen(kw_only=True)
class Claim:
    """Mark due jobs running: at most ``limit`` in all and ``capacity[p]`` of plugin p."""

    capacity: Mapping[str, int]
    limit: int
    reply: ReplyTo[ClaimResult]


@attrs.frozen(kw_only=True)
class Settle:
    """Record the outcome of an attempt; answered with the job, or None if stale."""

    job_id: str
    attempt: int
    outcome: Outcome
    policy: RetryPolicy
    reply: ReplyTo[Job | None]


@attrs.frozen(kw_only=True)
class RecoverOrphans:
    """Settle the plugin's jobs marked running with no process behind them."""

    plugin: str
    reply: ReplyTo[tuple[Job, ...]]


@attrs.frozen(kw_only=True)
class GetJob:
    """One job by id (None when unknown)."""

    job_id: str
    reply: ReplyTo[Job | None]


@attrs.frozen(kw_only=True)
class ListJobs:
    """Jobs matching a filter, newest first, with the total count."""

    filter: JobFilter
    reply: ReplyTo[tuple[tuple[Job, ...], int]]


@attrs.frozen(kw_only=True)
class QueueDepth:
    """How many jobs are queued."""

    reply: ReplyTo[int]


@attrs.frozen(kw_only=True)
class RunningJobs:
    """Every job marked running (the Dispatcher rebuilds its books from this)."""

    reply: ReplyTo[tuple[Job, ...]]


@attrs.frozen(kw_only=True)
class WaitJob:
    """Answered with the job once it is terminal (at once if it already is)."""

    job_id: str
    reply: ReplyTo[Job | None]


@attrs.frozen(kw_only=True)
class CancelQueued:
    """Cancel a job that has not started; answered with the job as it now stands.

    ``cancelled`` is False when the job was not queued (unknown, running, or
    already terminal), in which case nothing changed.
    """

    job_id: str
    reason: str
    reply: ReplyTo[tuple[Job | None, bool]]


@attrs.frozen(kw_only=True)
class RouteSettled:
    """Apply ``planner`` to up to ``limit`` succeeded, unrouted jobs.

    Each job's plan (its events, the jobs they start) is stored in the same
    transaction that marks the job routed.  Answered with how many were routed.
    """

    planner: Callable[[Job, float], Plan]
    limit: int
    reply: ReplyTo[int]


@attrs.frozen(kw_only=True)
class EnqueuePlan:
    """Store a plan's events and create its jobs in one transaction."""

    plan: Plan
    reply: ReplyTo[tuple[Enqueued, ...]]


@attrs.frozen(kw_only=True)
class TreePending:
    """For each root id: how many jobs of its tree are unfinished or unrouted."""

    root_ids: tuple[str, ...]
    reply: ReplyTo[dict[str, int]]


@attrs.frozen(kw_only=True)
class Tree:
    """A job tree: its root, every job in creation order, and the core's notes."""

    root_job_id: str
    jobs: tuple[Job, ...]
    notes: tuple[Mapping[str, Any], ...]


@attrs.frozen(kw_only=True)
class GetTree:
    """The whole tree ``job_id`` belongs to (None when the job is unknown)."""

    job_id: str
    reply: ReplyTo[Tree | None]


JobStoreRequest = (
    RouteSettled
    | EnqueuePlan
    | TreePending
    | GetTree
    | CancelQueued
    | Enqueue
    | Claim
    | Settle
    | RecoverOrphans
    | GetJob
    | ListJobs
    | QueueDepth
    | RunningJobs
    | WaitJob
)


# -- to the Dispatcher --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Wake:
    """Something may have become runnable; claim again."""


@attrs.frozen(kw_only=True)
class Released:
    """A runner is done with a job (settled, or recovered as an orphan)."""

    job_id: str


@attrs.frozen(kw_only=True)
class Drain:
    """Stop starting jobs; answered once no job is in flight."""

    reply: ReplyTo[None]


@attrs.frozen(kw_only=True)
class DispatcherStatistics:
    """What the Dispatcher is doing, for health endpoints."""

    running: int
    running_by_plugin: Mapping[str, int]
    max_workers: int
    draining: bool
    claims: int


@attrs.frozen(kw_only=True)
class Statistics:
    """Ask for :class:`DispatcherStatistics`."""

    reply: ReplyTo[DispatcherStatistics]


@attrs.frozen(kw_only=True)
class CancelResult:
    """What a cancel request found and did."""

    #: The job as it stood after the request (None when unknown).
    job: Job | None
    #: True when the job was running: its process group is being terminated and it
    #: becomes ``cancelled`` once the process is gone (wait for it with WaitJob).
    was_running: bool
    #: True when this request changed something (a queued job cancelled, or a
    #: running one told to stop); False for unknown or already terminal jobs.
    accepted: bool


@attrs.frozen(kw_only=True)
class CancelJob:
    """Cancel a job: a queued one at once, a running one by terminating its process."""

    job_id: str
    reply: ReplyTo[CancelResult]


DispatcherRequest = Wake | Released | Drain | Statistics | CancelJob


@attrs.frozen(kw_only=True)
class Run:
    """Runner message: run this claimed job."""

    claimed: Claimed


# -- to a Runner ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Terminate:
    """Stop running jobs for ``reason``: one job, or all of them when ``job_id`` is None."""

    reason: TerminationReason
    job_id: str | None = None


RunnerRequest = Run | Terminate


# -- to the Router ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class WakeRouter:
    """Jobs finished: route what succeeded, and look at the trees being waited on."""


@attrs.frozen(kw_only=True)
class WaitTree:
    """Answered with the tree once none of its jobs is unfinished or unrouted
    (None when the root is unknown)."""

    root_job_id: str
    reply: ReplyTo[Tree | None]


RouterRequest = WakeRouter | WaitTree
