"""The messages actors exchange: one place that reads as the tree's protocol.

Every message is a frozen record.  A request that needs an answer carries its own
:class:`~chamberlain.actors.mailbox.ReplyTo`; notifications carry none.

A request to the JobStore (a :class:`StoreRequest`) also says what follows once
its transaction has committed: its :meth:`~StoreRequest.effects` read its own
result and name the actors to wake, the jobs it finished and whether its answer
waits for a job to finish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from chamberlain.actors.mailbox import ReplyTo
from chamberlain.callback_rules import CallbackDelivery, CallbackState
from chamberlain.plugins.manifest import FactOutput
from chamberlain.plugins.protocol import Outcome, TerminationReason
from chamberlain.records import (
    AddedRepository,
    CancelResult,
    Changes,
    Claimed,
    Enqueued,
    FollowUpRefusal,
    Iteration,
    Job,
    JobFilter,
    JobMessage,
    JobStatus,
    McpServer,
    MessageKind,
    NewJob,
    PluginFact,
    PullRequest,
    QueueView,
    RepositoryRefusal,
    RoutePlan,
    SessionReply,
    Tree,
    UserInput,
    Workspace,
    WorkspaceRefusal,
)
from chamberlain.retry import RetryPolicy
from chamberlain.runs import (
    ActOutcome,
    Approval,
    CiMatch,
    CiSignal,
    PipelineRun,
    Refused,
    RunAction,
    RunStatus,
    Unchanged,
)
from chamberlain.schedule.books import (
    BreakerBook,
    BreakerKey,
    ScheduleBook,
    ScheduleKey,
    ScheduleStatus,
    StoredSchedules,
)
from chamberlain.schedule.plan import SchedulePlan
from chamberlain.sealing import SecretInfo

# -- to the JobStore --------------------------------------------------------------------------

R = TypeVar("R")

#: One line of a running job's output: when it was read, its text, and its kind
#: (``stderr``, or ``stdout`` for an interactive plugin's output).
OutputLine = tuple[float, str, MessageKind]


def _all_terminal(instance: object, attribute: object, jobs: tuple[Job, ...]) -> None:
    if not all(job.status.terminal for job in jobs):
        raise ValueError("finished holds a job that is not terminal")


@attrs.frozen(kw_only=True)
class Effects:
    """What follows a JobStore request once its transaction has committed."""

    #: Jobs may have become runnable: ring the Dispatcher.
    wake_dispatcher: bool = False
    #: Jobs that reached a terminal status in this request: they answer the
    #: WaitJob replies parked on them and are told to ``job_finished``.
    finished: tuple[Job, ...] = attrs.field(default=(), validator=_all_terminal)
    #: Ring the Router, which routes finished jobs and looks at the trees it waits
    #: on; by default whenever a job finished.
    wake_router: bool = attrs.field(
        default=attrs.Factory(lambda self: bool(self.finished), takes_self=True)
    )
    #: Park the reply until this job is terminal instead of answering now.
    wait_for: str | None = None
    #: Called on the trio thread once committed, whether or not the caller still
    #: waits: what must follow a write even when its reply is abandoned.
    then: Callable[[], None] | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def ending(cls, jobs: Iterable[Job], *, wake_dispatcher: bool = False) -> Effects:
        """The effects of a request that settled ``jobs``: the terminal ones finished here."""
        finished = tuple(job for job in jobs if job.status.terminal)
        return cls(wake_dispatcher=wake_dispatcher, finished=finished)


#: What a request that changes nothing others wait for leaves behind.
NO_EFFECTS = Effects()
#: What a request that may have created runnable jobs leaves behind.
RUNNABLE = Effects(wake_dispatcher=True)


@attrs.frozen(kw_only=True)
class StoreRequest(Generic[R]):
    """A request to the JobStore, answered with an ``R`` once its transaction committed."""

    def effects(self, result: R) -> Effects:
        """What follows once the transaction that produced ``result`` has committed.

        Nothing, unless the request says otherwise.
        """
        return NO_EFFECTS


@attrs.frozen(kw_only=True)
class Enqueue(StoreRequest[tuple[Enqueued, ...]]):
    """Create jobs; answered once they are committed."""

    jobs: tuple[NewJob, ...]
    reply: ReplyTo[tuple[Enqueued, ...]]

    def effects(self, result: tuple[Enqueued, ...]) -> Effects:
        """New jobs may be runnable."""
        return RUNNABLE


@attrs.frozen(kw_only=True)
class ClaimResult:
    """Jobs now marked running, and when the next future job falls due."""

    jobs: tuple[Claimed, ...]
    next_due: float | None


@attrs.frozen(kw_only=True)
class Claim(StoreRequest[ClaimResult]):
    """Mark due jobs running: at most ``limit`` in all and ``capacity[p]`` of plugin p."""

    capacity: Mapping[str, int]
    limit: int
    reply: ReplyTo[ClaimResult]


@attrs.frozen(kw_only=True)
class Settle(StoreRequest[Job | None]):
    """Record the outcome of an attempt; answered with the job, or None if stale."""

    job_id: str
    attempt: int
    outcome: Outcome
    policy: RetryPolicy
    reply: ReplyTo[Job | None]
    #: The plugin manifest's ``fact_outputs``.
    facts: tuple[FactOutput, ...] = ()
    #: How the job's worktree differs from its base now (a worktree job only).
    changes: Changes | None = None
    #: The pull request the job opened as it succeeded, or why it could not.
    pull_request: PullRequest | str | None = None

    def effects(self, result: Job | None) -> Effects:
        """The job finished, unless it was requeued (or the attempt was stale)."""
        # No Dispatcher ring for a requeue: the Runner's Released brings it back.
        return Effects.ending(() if result is None else (result,))


@attrs.frozen(kw_only=True)
class RecoverOrphans(StoreRequest[tuple[Job, ...]]):
    """Settle the plugin's jobs marked running with no process behind them."""

    plugin: str
    reply: ReplyTo[tuple[Job, ...]]

    def effects(self, result: tuple[Job, ...]) -> Effects:
        """Orphans given up finished; those requeued are runnable."""
        return Effects.ending(result, wake_dispatcher=True)


@attrs.frozen(kw_only=True)
class GetJob(StoreRequest[Job | None]):
    """One job by id (None when unknown)."""

    job_id: str
    reply: ReplyTo[Job | None]


@attrs.frozen(kw_only=True)
class ListJobs(StoreRequest[tuple[tuple[Job, ...], int]]):
    """Jobs matching a filter, newest first, with the total count."""

    filter: JobFilter
    reply: ReplyTo[tuple[tuple[Job, ...], int]]


@attrs.frozen(kw_only=True)
class QueueDepth(StoreRequest[int]):
    """How many jobs are queued."""

    reply: ReplyTo[int]


@attrs.frozen(kw_only=True)
class RunningJobs(StoreRequest[tuple[Job, ...]]):
    """Every job marked running (the Dispatcher rebuilds its books from this)."""

    reply: ReplyTo[tuple[Job, ...]]


@attrs.frozen(kw_only=True)
class WaitJob(StoreRequest[Job | None]):
    """Answered with the job once it is terminal (at once if it already is)."""

    job_id: str
    reply: ReplyTo[Job | None]

    def effects(self, result: Job | None) -> Effects:
        """Park the answer until the job finishes, unless it is unknown or has."""
        if result is None or result.status.terminal:
            return NO_EFFECTS
        return Effects(wait_for=result.id)


@attrs.frozen(kw_only=True)
class CancelQueued(StoreRequest[tuple[Job | None, bool]]):
    """Cancel a job that has not started; answered with the job as it now stands.

    ``cancelled`` is False when the job was not queued (unknown, running, or
    already terminal), in which case nothing changed.
    """

    job_id: str
    reason: str
    reply: ReplyTo[tuple[Job | None, bool]]

    def effects(self, result: tuple[Job | None, bool]) -> Effects:
        """The job finished if this request cancelled it."""
        job, cancelled = result
        return Effects.ending((job,) if cancelled and job is not None else ())


@attrs.frozen(kw_only=True)
class BuryQueued(StoreRequest[tuple[Job, ...]]):
    """Make the queued jobs of ``plugins`` dead with ``reason``: a reload removed
    those plugins, so nothing will run them.  Answered with the jobs it ended."""

    plugins: frozenset[str]
    reason: str
    reply: ReplyTo[tuple[Job, ...]]

    def effects(self, result: tuple[Job, ...]) -> Effects:
        """Every job it buried ended."""
        return Effects.ending(result)


@attrs.frozen(kw_only=True)
class RouteSettled(StoreRequest[int]):
    """Apply ``planner`` to up to ``limit`` ended, unrouted jobs (succeeded ones, and
    failed, timed-out and dead ones for their ``on-hook`` pipelines).

    Each job's plan (its events, the jobs they start) is stored in the same
    transaction that marks the job routed.  Answered with how many were routed.
    """

    planner: Callable[[Job, float], RoutePlan]
    limit: int
    reply: ReplyTo[int]

    def effects(self, result: int) -> Effects:
        """Routed jobs' plans may have started jobs.  The Router needs no ring: it asked."""
        return RUNNABLE if result else NO_EFFECTS


@attrs.frozen(kw_only=True)
class EnqueuePlan(StoreRequest[tuple[Enqueued, ...]]):
    """Store a plan's events and create its jobs in one transaction; ``paused``: the
    runs it starts start paused (``"start": "paused"``)."""

    plan: RoutePlan
    reply: ReplyTo[tuple[Enqueued, ...]]
    paused: bool = False

    def effects(self, result: tuple[Enqueued, ...]) -> Effects:
        """The plan's jobs may be runnable."""
        return RUNNABLE


@attrs.frozen(kw_only=True)
class TreePending(StoreRequest[dict[str, int]]):
    """For each root id: how many jobs of its tree are unfinished or unrouted."""

    root_ids: tuple[str, ...]
    reply: ReplyTo[dict[str, int]]


@attrs.frozen(kw_only=True)
class GetTree(StoreRequest[Tree | None]):
    """The whole tree ``job_id`` belongs to (None when the job is unknown)."""

    job_id: str
    reply: ReplyTo[Tree | None]


# -- job messages, queue view, callbacks (migration 0003) --------------------------------


@attrs.frozen(kw_only=True)
class RecordOutput(StoreRequest[int]):
    """Store output lines of a running job (within its cap); answered with how many were kept.

    ``lines`` are ``(time read, text, kind)``: stderr lines, and an interactive
    plugin's stdout lines; ``dropped`` counts lines the Runner could not buffer.
    ``final`` marks the attempt's last flush, which records the dropped-lines
    marker if any were dropped.
    """

    job_id: str
    lines: tuple[OutputLine, ...]
    dropped: int = 0
    final: bool = False
    reply: ReplyTo[int]


@attrs.frozen(kw_only=True)
class GetMessages(StoreRequest[tuple[JobMessage, ...]]):
    """A job's messages after ``after_seq``, in order, at most ``limit``."""

    job_id: str
    after_seq: int = 0
    limit: int
    reply: ReplyTo[tuple[JobMessage, ...]]


@attrs.frozen(kw_only=True)
class GetStatusChanges(StoreRequest[tuple[JobMessage, ...]]):
    """Status changes of all jobs after the global message id ``after_id``, filtered."""

    after_id: int
    plugin: str | None = None
    statuses: tuple[JobStatus, ...] = ()
    limit: int
    reply: ReplyTo[tuple[JobMessage, ...]]


@attrs.frozen(kw_only=True)
class GetQueue(StoreRequest[QueueView]):
    """The :class:`QueueView`, at most ``limit`` jobs in each list."""

    limit: int
    reply: ReplyTo[QueueView]


@attrs.frozen(kw_only=True)
class CallbackInfo:
    """A job's callback URL (None: it has none) and its deliveries so far."""

    url: str | None
    deliveries: tuple[CallbackDelivery, ...]


@attrs.frozen(kw_only=True)
class GetCallbacks(StoreRequest[CallbackInfo]):
    """The :class:`CallbackInfo` of a job."""

    job_id: str
    reply: ReplyTo[CallbackInfo]


@attrs.frozen(kw_only=True)
class DueCallbacks(StoreRequest[tuple[tuple[CallbackDelivery, ...], float | None]]):
    """Pending deliveries due now (not in ``busy``), and when the next one falls due."""

    limit: int
    busy: frozenset[str]
    reply: ReplyTo[tuple[tuple[CallbackDelivery, ...], float | None]]


@attrs.frozen(kw_only=True)
class RecordCallbackAttempt(StoreRequest[CallbackDelivery | None]):
    """Store the outcome of one delivery attempt; answered with the delivery."""

    delivery_id: str
    state: CallbackState
    next_attempt_at: float | None
    status_code: int | None
    error: str | None
    reply: ReplyTo[CallbackDelivery | None]


@attrs.frozen(kw_only=True)
class RecordInput(StoreRequest[bool]):
    """Keep a user's message to a running interactive attempt, before the plugin gets it.

    Stored as a ``user_input`` message (never dropped by the output cap) and the
    end of the attempt's wait for input; answered False, storing nothing, when that
    attempt is no longer running.
    """

    job_id: str
    attempt: int
    message_id: str
    message: str
    reply: ReplyTo[bool]


@attrs.frozen(kw_only=True)
class MarkSession(StoreRequest[bool]):
    """Record that a running interactive attempt waits for input, or is being completed.

    Answered False, changing nothing, when that attempt is no longer running.
    """

    job_id: str
    attempt: int
    #: The plugin said it waits for input (else: the user completed the session).
    waiting: bool
    reply: ReplyTo[bool]


@attrs.frozen(kw_only=True)
class GetTranscript(StoreRequest[tuple[UserInput, ...]]):
    """Every input a user sent the job, in order: the ``transcript`` of a retried attempt."""

    job_id: str
    reply: ReplyTo[tuple[UserInput, ...]]


@attrs.frozen(kw_only=True)
class SaveIteration(StoreRequest[bool | None]):
    """Keep one iteration of a running loop attempt, with a system message saying what
    happened; answered whether a stop was asked for (None: the attempt is stale)."""

    job_id: str
    attempt: int
    iteration: Iteration
    note: str
    reply: ReplyTo[bool | None]


@attrs.frozen(kw_only=True)
class GetIterations(StoreRequest[tuple[Iteration, ...]]):
    """A loop job's iterations so far, in order."""

    job_id: str
    reply: ReplyTo[tuple[Iteration, ...]]


@attrs.frozen(kw_only=True)
class StopLoop(StoreRequest[Job | None]):
    """Ask a loop job to stop after its current iteration; answered with the job."""

    job_id: str
    reply: ReplyTo[Job | None]


@attrs.frozen(kw_only=True)
class TouchWorkspace(StoreRequest[bool]):
    """Record a use of a kept workspace, and its size now (after an attempt)."""

    workspace_id: str
    size_bytes: int
    reply: ReplyTo[bool]


@attrs.frozen(kw_only=True)
class ListWorkspaces(StoreRequest[tuple[Workspace, ...]]):
    """Every kept workspace, the most recently used first."""

    reply: ReplyTo[tuple[Workspace, ...]]


@attrs.frozen(kw_only=True)
class GetWorkspace(StoreRequest[Workspace | None]):
    """One kept workspace (None when unknown)."""

    workspace_id: str
    reply: ReplyTo[Workspace | None]


@attrs.frozen(kw_only=True)
class WorkspaceUsage(StoreRequest[int]):
    """Bytes the kept workspaces hold, as last measured."""

    reply: ReplyTo[int]


@attrs.frozen(kw_only=True)
class DeleteWorkspace(StoreRequest[WorkspaceRefusal | None]):
    """Forget a kept workspace no job needs; answered why not, or None once forgotten
    (its directory is then removed by the caller)."""

    workspace_id: str
    reply: ReplyTo[WorkspaceRefusal | None]


@attrs.frozen(kw_only=True)
class BranchHolder(StoreRequest[str | None]):
    """The workspace that has ``branch`` of ``repository`` checked out, if any."""

    repository: str
    branch: str
    reply: ReplyTo[str | None]


@attrs.frozen(kw_only=True)
class RecordPullRequest(StoreRequest[None]):
    """Keep the pull request opened from a workspace's branch, on the workspace (so
    asking again returns it) and on the job that asked for it."""

    workspace_id: str
    job_id: str
    pull_request: PullRequest
    reply: ReplyTo[None]


@attrs.frozen(kw_only=True)
class AddRepository(StoreRequest[AddedRepository | None]):
    """Keep a repository added through the API; None when its name is taken."""

    name: str
    spec: Mapping[str, Any]
    reply: ReplyTo[AddedRepository | None]


@attrs.frozen(kw_only=True)
class ListAddedRepositories(StoreRequest[tuple[AddedRepository, ...]]):
    """Every repository added through the API, by name."""

    reply: ReplyTo[tuple[AddedRepository, ...]]


@attrs.frozen(kw_only=True)
class RemoveRepository(StoreRequest[RepositoryRefusal | None]):
    """Forget a repository added through the API that no workspace is a worktree of;
    answered why not, or None once forgotten (its mirror is then removed by the
    caller)."""

    name: str
    reply: ReplyTo[RepositoryRefusal | None]


@attrs.frozen(kw_only=True)
class GetRun(StoreRequest[PipelineRun | None]):
    """One run with its jobs (None when unknown)."""

    run_id: str
    reply: ReplyTo[PipelineRun | None]


@attrs.frozen(kw_only=True)
class ListRuns(StoreRequest[tuple[tuple[PipelineRun, ...], int]]):
    """A page of runs, the newest first, and how many match in all."""

    pipeline: str | None
    statuses: frozenset[RunStatus]
    limit: int
    offset: int
    reply: ReplyTo[tuple[tuple[PipelineRun, ...], int]]


@attrs.frozen(kw_only=True)
class RunControlled(Generic[R]):
    """What a run control request answered, and the jobs it ended (a cancel's, a
    reject's queued jobs) for those who wait on them."""

    answer: R
    finished: tuple[Job, ...] = ()
    #: The run's status once the request is done, read in its transaction (None: no
    #: such run).
    status: RunStatus | None = None


def _controlled(result: RunControlled[Any]) -> Effects:
    # Held jobs may have been released: the Dispatcher looks again.
    return Effects(wake_dispatcher=True, finished=result.finished)


@attrs.frozen(kw_only=True)
class ActOnRun(StoreRequest[RunControlled["ActOutcome | Refused | None"]]):
    """Carry out ``action`` on run ``run_id`` for ``actor`` (None: no such run)."""

    run_id: str
    action: RunAction
    actor: str
    stop_running: bool = False
    reply: ReplyTo[RunControlled[ActOutcome | Refused | None]]

    def effects(self, result: RunControlled[ActOutcome | Refused | None]) -> Effects:
        """Released jobs run; cancelled ones finished."""
        return _controlled(result)


@attrs.frozen(kw_only=True)
class DecideStep(StoreRequest[RunControlled["Approval | Unchanged | Refused | None"]]):
    """Give ``word`` (an approve or a reject) to step ``step_id`` of run ``run_id``."""

    run_id: str
    step_id: str
    word: Approval
    reply: ReplyTo[RunControlled[Approval | Unchanged | Refused | None]]

    def effects(self, result: RunControlled[Approval | Unchanged | Refused | None]) -> Effects:
        """An approved step's jobs run; a rejected one's finished."""
        return _controlled(result)


@attrs.frozen(kw_only=True)
class ReportCi(StoreRequest[RunControlled[tuple[CiMatch, ...]]]):
    """A CI report for the run steps waiting on its commit (or on run ``run_id``)."""

    signal: CiSignal
    run_id: str | None
    reply: ReplyTo[RunControlled[tuple[CiMatch, ...]]]

    def effects(self, result: RunControlled[tuple[CiMatch, ...]]) -> Effects:
        """The next steps of a passed step run; a failed one's finished."""
        return _controlled(result)


@attrs.frozen(kw_only=True)
class RunEvents(StoreRequest[tuple[JobMessage, ...]]):
    """Run ``run_id``'s events after ``after_id``, of ``kinds`` (all when empty)."""

    run_id: str
    kinds: frozenset[str]
    after_id: int
    limit: int
    reply: ReplyTo[tuple[JobMessage, ...]]


RunRequest = GetRun | ListRuns | ActOnRun | DecideStep | ReportCi | RunEvents


WorkspaceRequest = (
    TouchWorkspace
    | ListWorkspaces
    | GetWorkspace
    | WorkspaceUsage
    | DeleteWorkspace
    | BranchHolder
    | RecordPullRequest
    | AddRepository
    | ListAddedRepositories
    | RemoveRepository
)


JournalRequest = (
    RecordOutput
    | SaveIteration
    | GetIterations
    | StopLoop
    | RecordInput
    | MarkSession
    | GetTranscript
    | GetMessages
    | GetStatusChanges
    | GetQueue
    | GetCallbacks
    | DueCallbacks
    | RecordCallbackAttempt
)


@attrs.frozen(kw_only=True)
class EnqueueFollowUp(StoreRequest[Job | FollowUpRefusal]):
    """Create ``job``, the follow-up of the finished job ``follows``, in one transaction.

    Its ``follow_up`` gets the session the old job left (see
    :func:`chamberlain.plugins.conversation.inherited_session`).  Refused when the
    old job is unknown, not finished, or already followed up: a chain never forks.
    """

    job: NewJob
    reply: ReplyTo[Job | FollowUpRefusal]

    def effects(self, result: Job | FollowUpRefusal) -> Effects:
        """The new job is runnable."""
        return RUNNABLE if isinstance(result, Job) else NO_EFFECTS


@attrs.frozen(kw_only=True)
class EnqueueWebhook(StoreRequest[tuple[Job | None, bool]]):
    """Create an inbound webhook delivery's jobs, unless it is a replay.

    Answered with the first job (new, or the earlier delivery's) and whether this
    delivery was a replay of one seen within ``service.dedupe_ttl``.
    """

    endpoint: str
    delivery_id: str | None
    plan: RoutePlan
    reply: ReplyTo[tuple[Job | None, bool]]

    def effects(self, result: tuple[Job | None, bool]) -> Effects:
        """The delivery's jobs may be runnable."""
        return RUNNABLE


# -- the Scheduler's books (migration 0002) ------------------------------------------------


@attrs.frozen(kw_only=True)
class LoadSchedules(StoreRequest[StoredSchedules]):
    """Every schedule's book and every circuit breaker, as stored."""

    reply: ReplyTo[StoredSchedules]


@attrs.frozen(kw_only=True)
class OutstandingJobs(StoreRequest[Mapping[ScheduleKey, tuple[str, ...]]]):
    """For each schedule, the ids of its queued and running jobs, oldest first."""

    keys: tuple[ScheduleKey, ...]
    reply: ReplyTo[Mapping[ScheduleKey, tuple[str, ...]]]


@attrs.frozen(kw_only=True)
class CommitSchedules(StoreRequest[tuple[Enqueued, ...]]):
    """Enqueue scheduled jobs and write the books that record them, in one transaction.

    Together, so a crash can neither lose a fire the books say happened nor run
    one twice.  ``forget`` drops the books of schedules no longer configured.
    """

    jobs: tuple[NewJob, ...] = ()
    books: tuple[ScheduleBook, ...] = ()
    breakers: tuple[BreakerBook, ...] = ()
    forget: tuple[ScheduleKey, ...] = ()
    forget_breakers: tuple[BreakerKey, ...] = ()
    reply: ReplyTo[tuple[Enqueued, ...]]

    def effects(self, result: tuple[Enqueued, ...]) -> Effects:
        """The scheduled jobs may be runnable."""
        return RUNNABLE


@attrs.frozen(kw_only=True)
class JobStatuses(StoreRequest[Mapping[str, JobStatus]]):
    """The current status of each of these jobs (those pruned since are left out)."""

    job_ids: tuple[str, ...]
    reply: ReplyTo[Mapping[str, JobStatus]]


# -- secrets (migration 0008) -------------------------------------------------------------
# Values travel sealed: the Gateway seals before it sends, so no mailbox, log line or
# repr of a request ever holds one in the clear.


@attrs.frozen(kw_only=True)
class CreateSecret(StoreRequest[SecretInfo | None]):
    """Register a secret; answered with it, or None when the name is taken.

    ``check`` is the key check, stored with the first secret ever written.
    """

    name: str
    description: str | None
    sealed: bytes = attrs.field(repr=False)
    hint: str = attrs.field(repr=False)
    check: bytes = attrs.field(repr=False)
    #: Tells the daemon's vault, once committed (see :attr:`Effects.then`).
    committed: Callable[[], None] = attrs.field(default=lambda: None, eq=False, repr=False)
    reply: ReplyTo[SecretInfo | None]

    def effects(self, result: SecretInfo | None) -> Effects:
        """The vault learns the value once it is stored, even if the caller left."""
        return NO_EFFECTS if result is None else Effects(then=self.committed)


@attrs.frozen(kw_only=True)
class RotateSecret(StoreRequest[SecretInfo | None]):
    """Give a secret a new value, and a new description unless ``keep_description``;
    answered with it, or None when it is unknown."""

    name: str
    sealed: bytes = attrs.field(repr=False)
    hint: str = attrs.field(repr=False)
    check: bytes = attrs.field(repr=False)
    description: str | None = None
    keep_description: bool = True
    #: Tells the daemon's vault, once committed (see :attr:`Effects.then`).
    committed: Callable[[], None] = attrs.field(default=lambda: None, eq=False, repr=False)
    reply: ReplyTo[SecretInfo | None]

    def effects(self, result: SecretInfo | None) -> Effects:
        """The next job gets the new value once it is stored, even if the caller left."""
        return NO_EFFECTS if result is None else Effects(then=self.committed)


@attrs.frozen(kw_only=True)
class DeleteSecret(StoreRequest[bool]):
    """Forget a secret; answered False when it is unknown."""

    name: str
    #: Tells the daemon's vault, once committed (see :attr:`Effects.then`).
    committed: Callable[[], None] = attrs.field(default=lambda: None, eq=False, repr=False)
    reply: ReplyTo[bool]

    def effects(self, result: bool) -> Effects:
        """The vault forgets the value once the row is gone, even if the caller left."""
        return Effects(then=self.committed) if result else NO_EFFECTS


@attrs.frozen(kw_only=True)
class GetSecret(StoreRequest[SecretInfo | None]):
    """What the registry tells about one secret (None when unknown)."""

    name: str
    reply: ReplyTo[SecretInfo | None]


@attrs.frozen(kw_only=True)
class ListSecrets(StoreRequest[tuple[SecretInfo, ...]]):
    """What the registry tells about every secret, by name."""

    reply: ReplyTo[tuple[SecretInfo, ...]]


SecretRequest = CreateSecret | RotateSecret | DeleteSecret | GetSecret | ListSecrets


# -- MCP servers (migration 0009) ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class CreateMcpServer(StoreRequest[McpServer | None]):
    """Register an MCP server; answered with it, or None when the name is taken."""

    server: McpServer
    reply: ReplyTo[McpServer | None]


@attrs.frozen(kw_only=True)
class ListMcpServers(StoreRequest[tuple[McpServer, ...]]):
    """The MCP servers named that exist (every one when ``names`` is None), by name."""

    names: tuple[str, ...] | None = None
    reply: ReplyTo[tuple[McpServer, ...]]


@attrs.frozen(kw_only=True)
class DeleteMcpServer(StoreRequest[bool]):
    """Forget an MCP server; answered False when it is unknown."""

    name: str
    reply: ReplyTo[bool]


McpServerRequest = CreateMcpServer | ListMcpServers | DeleteMcpServer


@attrs.frozen(kw_only=True)
class ListFacts(StoreRequest[tuple[PluginFact, ...]]):
    """A plugin's newest facts (``fact_outputs``; migration 0011), newest first."""

    plugin: str
    fact_type: str | None = None
    limit: int
    reply: ReplyTo[tuple[PluginFact, ...]]


JobStoreRequest = (
    JournalRequest
    | EnqueueWebhook
    | RouteSettled
    | EnqueuePlan
    | TreePending
    | GetTree
    | CancelQueued
    | BuryQueued
    | Enqueue
    | EnqueueFollowUp
    | Claim
    | Settle
    | RecoverOrphans
    | GetJob
    | ListJobs
    | QueueDepth
    | RunningJobs
    | WaitJob
    | LoadSchedules
    | OutstandingJobs
    | CommitSchedules
    | JobStatuses
    | SecretRequest
    | McpServerRequest
    | ListFacts
    | WorkspaceRequest
    | RunRequest
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
class Limit:
    """New limits from a reload: ``max_workers``, and ``parallelism`` for every
    plugin jobs may start for (a plugin left out gets no new job started).

    Jobs in flight are left alone: a lower limit only holds back new starts."""

    max_workers: int
    parallelism: Mapping[str, int]
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
class CancelJob:
    """Cancel a job: a queued one at once, a running one by terminating its process."""

    job_id: str
    reply: ReplyTo[CancelResult]


@attrs.frozen(kw_only=True)
class Converse:
    """Hand a running interactive job a user's ``message``, or complete its session
    (``message`` None).  The Dispatcher passes it to the job's Runner; answered once
    the message is stored and on its way to the plugin."""

    job_id: str
    message: str | None
    reply: ReplyTo[SessionReply]


DispatcherRequest = Wake | Released | Drain | Statistics | CancelJob | Converse | Limit


@attrs.frozen(kw_only=True)
class Run:
    """Runner message: run this claimed job."""

    claimed: Claimed


# -- to the callback sender ------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CallbacksDue:
    """A delivery may have become due (one was recorded, or an attempt ended)."""


# -- to a Runner ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Terminate:
    """Stop running jobs for ``reason``: one job, or all of them when ``job_id`` is None."""

    reason: TerminationReason
    job_id: str | None = None


@attrs.frozen(kw_only=True)
class Retire:
    """Return once the jobs in flight are settled: a reload removed the plugin.

    Sent behind every ``Run`` the Dispatcher sent before it stopped starting the
    plugin's jobs, so none of them is left unread.  ``generation`` is the Runner's
    when the reload sent it; a later reload that gave the name back bumped it, and
    a Retire of an older generation is ignored.
    """

    generation: int


RunnerRequest = Run | Terminate | Converse | Retire


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


# -- to the Scheduler ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ListSchedules:
    """Every schedule, with its next run, last run and breaker."""

    reply: ReplyTo[tuple[ScheduleStatus, ...]]


@attrs.frozen(kw_only=True)
class ResetBreaker:
    """Close the breaker of the schedule's (plugin, command); answered with the schedule,
    or None when there is no such schedule.  ``by`` names who asked, for the record."""

    plugin: str
    schedule_id: str
    by: str
    reply: ReplyTo[ScheduleStatus | None]


@attrs.frozen(kw_only=True)
class ScheduledJobSettled:
    """A job a schedule enqueued reached a terminal status (sent by the JobStore)."""

    job: Job


@attrs.frozen(kw_only=True)
class CancelsSettled:
    """Jobs a schedule cancelled to make room are gone, or the wait for them ran out
    (sent by the Scheduler's own watcher task)."""

    plugin: str
    schedule_id: str
    job_ids: tuple[str, ...]


@attrs.frozen(kw_only=True)
class PauseScheduling:
    """Enqueue nothing more (the daemon is draining); answered once no fire is underway."""

    reply: ReplyTo[None]


@attrs.frozen(kw_only=True)
class ReplacePlans:
    """Run these schedules from now on (a configuration reload); those that stay keep
    their books and breakers.  Answered once the new books are saved."""

    plans: tuple[SchedulePlan, ...]
    reply: ReplyTo[None]


SchedulerRequest = (
    ListSchedules
    | ResetBreaker
    | ScheduledJobSettled
    | CancelsSettled
    | PauseScheduling
    | ReplacePlans
)
