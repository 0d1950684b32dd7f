"""What the web layer may ask of the actor tree, as one small client.

HTTP handlers never touch the database or actor internals: they call these
methods, which send a message and wait for the reply with a deadline.  An actor
that does not answer in time surfaces as :class:`ActorUnavailable` (HTTP 503); a
request the JobStore's disk refused, as :class:`StorageFull` (HTTP 507).

The table of registered MCP servers is kept here, in step with the store (loaded
when the JobStore opens the database, changed after each write of it commits), so
a trigger's ``mcp_servers`` are checked, and the vault learns which secrets the
servers use, without a message.
"""

from __future__ import annotations

import enum
import functools
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import trio

from chamberlain.actors.hub import Hub
from chamberlain.actors.mail import (
    ActOnRun,
    AddRepository,
    BranchHolder,
    CallbackInfo,
    CancelJob,
    Converse,
    CreateMcpServer,
    CreateSecret,
    DecideStep,
    DeleteMcpServer,
    DeleteSecret,
    DeleteWorkspace,
    DispatcherRequest,
    DispatcherStatistics,
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
    GetTree,
    GetWorkspace,
    JobStatuses,
    JobStoreRequest,
    ListFacts,
    ListJobs,
    ListMcpServers,
    ListRuns,
    ListSchedules,
    ListSecrets,
    ListWorkspaces,
    QueueDepth,
    RemoveRepository,
    ReportCi,
    ResetBreaker,
    RotateSecret,
    RouterRequest,
    RunControlled,
    RunEvents,
    SchedulerRequest,
    Statistics,
    StopLoop,
    WaitJob,
    WaitTree,
    WorkspaceUsage,
)
from chamberlain.actors.mailbox import ReplyTo, RequestFailed, call
from chamberlain.actors.pull_request_opener import PullRequestOpener
from chamberlain.actors.repository_book import RepositoryBook, forge_of
from chamberlain.actors.repository_sync import sync_job
from chamberlain.actors.storage_faults import StorageFull as StorageFull
from chamberlain.config import ConfigError, RepositoryConfig, parse_repository
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.mcp_servers import mcp_references
from chamberlain.plugins.workspace import Workspaces, size_of
from chamberlain.records import (
    AddedRepository,
    CancelResult,
    Enqueued,
    FollowUpRefusal,
    Iteration,
    Job,
    JobFilter,
    JobMessage,
    JobStatus,
    LoadedConfig,
    McpServer,
    NewJob,
    PluginFact,
    PullRequest,
    PullRequestAsk,
    PullRequestRefusal,
    QueueView,
    ReloadReport,
    RepositoryRefusal,
    RepositoryView,
    RoutePlan,
    SessionReply,
    Tree,
    Workspace,
    WorkspaceRefusal,
)
from chamberlain.repositories import display_url, remove_workspace
from chamberlain.routing.planner import Routing
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
from chamberlain.schedule.books import ScheduleStatus
from chamberlain.schedule.breaker import BreakerState
from chamberlain.sealing import Sealer, SecretInfo, hint
from chamberlain.supervision import SupervisorStatistics
from chamberlain.vault import Vault

T = TypeVar("T")
M = TypeVar("M")

log = logging.getLogger("chamberlain.gateway")


class Phase(enum.Enum):
    """Where the daemon is in its life; only READY accepts new work."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


@attrs.define(eq=False)
class Lifecycle:
    """The daemon's phase.  Written only by the root; read by the web layer."""

    phase: Phase = Phase.STARTING
    started_at: float = attrs.field(factory=time.time)
    started_monotonic: float = attrs.field(factory=time.monotonic)

    @property
    def accepting(self) -> bool:
        """True when new jobs may be submitted."""
        return self.phase is Phase.READY

    def uptime(self) -> float:
        """Seconds since the daemon started."""
        return time.monotonic() - self.started_monotonic


@attrs.frozen(kw_only=True)
class Health:
    """Everything ``/healthz`` reports."""

    phase: Phase
    uptime_seconds: float
    queue_depth: int
    running: int
    max_workers: int
    plugins_loaded: int
    restarts: Mapping[str, int]
    restarts_total: int
    #: Why the JobStore refuses writes (the disk is full or failing); None while
    #: writes commit.
    degraded: str | None = None
    #: How many plugins have a schedule whose circuit breaker is not closed.
    plugins_circuit_open: int = 0
    #: The configuration running: when it was loaded, its file's hash.
    config: LoadedConfig | None = None


class ReloadUnavailable(Exception):
    """There is no configuration file to reload from."""


@attrs.define(eq=False)
class Gateway:
    """The web layer's handle on the daemon."""

    store: trio.MemorySendChannel[JobStoreRequest]
    dispatcher: trio.MemorySendChannel[DispatcherRequest]
    plugins: Mapping[str, BoundPlugin]
    lifecycle: Lifecycle
    supervisor_statistics: Callable[[], SupervisorStatistics]
    router: trio.MemorySendChannel[RouterRequest]
    routing: Routing
    #: The JobStore's mailbox of reads, served off the writer's queue; None sends
    #: reads to ``store`` with the writes.
    reads: trio.MemorySendChannel[JobStoreRequest] | None = None
    #: How long a request waits for an actor before it is answered 503.
    timeout: float = 5.0
    #: Synchronous calls (waiting for a whole pipeline) allowed at once.
    max_concurrent_sync: int = 16
    #: Committed job messages, for the event streams.
    hub: Hub = attrs.field(factory=Hub)
    #: The Scheduler; None for a daemon that runs no schedules.
    scheduler: trio.MemorySendChannel[SchedulerRequest] | None = None
    #: Why the JobStore refuses writes now (its statistics' ``degraded``), None
    #: while they commit; read without a message, so it answers even when the
    #: store is busy.
    storage_problem: Callable[[], str | None] = lambda: None
    #: Where kept workspaces live (a root of None: the state is in memory, and jobs
    #: cannot ask for one), and the bytes they may hold in all.
    workspaces: Workspaces = attrs.field(factory=Workspaces)
    workspace_budget: int = 10 * 1024**3
    #: The repositories jobs may have worktrees of: the config's and those added
    #: through the API (shared with the Runners).
    repositories: RepositoryBook = attrs.field(factory=RepositoryBook)
    #: Opens the pull requests of worktree jobs (shared with the Runners, which open
    #: the automatic ones); None for a daemon that opens none.
    pull_requests: PullRequestOpener | None = None
    #: One lock per repository's mirror: a fetch, a new worktree or the mirror's
    #: removal at a time (shared with the Runners and the syncs).
    mirror_locks: dict[str, trio.Lock] = attrs.field(factory=dict)
    #: The registry's values in the clear, and the redactor that hides them; the
    #: JobStore updates it as each secret write commits (see the methods below).
    vault: Vault = attrs.field(factory=Vault, repr=False)
    #: Seals the values the registry is given (the state's key; see sealing.py).
    sealer: Sealer = attrs.field(factory=Sealer.random)
    #: Reloads the configuration (``POST /system/reload``); None where the daemon
    #: has no file to reload from.  Raises :class:`ReloadRefused`.
    reloader: Callable[[], Awaitable[ReloadReport]] | None = None
    #: Which configuration runs now.
    loaded_config: Callable[[], LoadedConfig | None] = lambda: None
    sync_limiter: trio.CapacityLimiter = attrs.field(init=False)
    #: The MCP servers registered, by name, kept in step with the store (see the MCP
    #: servers section below).
    _mcp: dict[str, McpServer] = attrs.field(factory=dict, init=False)
    _mcp_writes: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _repository_writes: trio.Lock = attrs.field(factory=trio.Lock, init=False)

    def __attrs_post_init__(self) -> None:
        self.sync_limiter = trio.CapacityLimiter(self.max_concurrent_sync)
        # A secret a server's env names is in use: DELETE /secrets/{name} says where.
        self.vault.add_reference_source(self._mcp_references)
        self.vault.add_reference_source(self.repositories.references)

    async def _ask_store(
        self,
        build: Callable[[ReplyTo[T]], JobStoreRequest],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (see mailbox.call)
        read: bool = False,
    ) -> T:
        """``call`` the JobStore; a request its disk refused raises :class:`StorageFull`.

        A ``read`` goes to the reads mailbox, when there is one: it is answered
        from the last commit without waiting behind the writes.
        """
        mailbox = self.reads if read and self.reads is not None else self.store
        return await self._ask(mailbox, build, timeout=timeout)

    async def _ask(
        self,
        mailbox: trio.MemorySendChannel[M],
        build: Callable[[ReplyTo[T]], M],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (see mailbox.call)
    ) -> T:
        """``call`` an actor; a request the store's disk refused raises :class:`StorageFull`."""
        try:
            answer: T = await call(mailbox, build, timeout=timeout)
        except RequestFailed as failed:
            if isinstance(failed.__cause__, StorageFull):
                raise StorageFull(str(failed.__cause__)) from failed
            raise
        return answer

    async def enqueue(self, jobs: Sequence[NewJob]) -> tuple[Enqueued, ...]:
        """Create jobs; returns once they are committed."""
        batch = tuple(jobs)
        return await self._ask_store(lambda r: Enqueue(jobs=batch, reply=r), timeout=self.timeout)

    async def get_job(self, job_id: str) -> Job | None:
        """One job, or None when unknown."""
        return await self._ask_store(
            lambda r: GetJob(job_id=job_id, reply=r), timeout=self.timeout, read=True
        )

    async def list_jobs(self, flt: JobFilter) -> tuple[tuple[Job, ...], int]:
        """Jobs matching ``flt``, newest first, and the total count."""
        return await self._ask_store(
            lambda r: ListJobs(filter=flt, reply=r), timeout=self.timeout, read=True
        )

    async def wait_job(self, job_id: str) -> Job | None:
        """The job once it is terminal (None if unknown).  Bound it with a cancel scope."""
        return await self._ask_store(lambda r: WaitJob(job_id=job_id, reply=r))

    async def enqueue_plan(self, plan: RoutePlan, *, paused: bool = False) -> tuple[Enqueued, ...]:
        """Store a plan's events and create its jobs; returns once committed.
        ``paused``: the runs it starts start paused."""
        return await self._ask_store(
            lambda r: EnqueuePlan(plan=plan, reply=r, paused=paused), timeout=self.timeout
        )

    async def enqueue_webhook(
        self, endpoint: str, delivery_id: str | None, plan: RoutePlan
    ) -> tuple[Job | None, bool]:
        """Create a webhook delivery's jobs unless it is a replay; see EnqueueWebhook."""
        return await self._ask_store(
            lambda r: EnqueueWebhook(
                endpoint=endpoint, delivery_id=delivery_id, plan=plan, reply=r
            ),
            timeout=self.timeout,
        )

    async def get_tree(self, job_id: str) -> Tree | None:
        """The whole tree ``job_id`` belongs to, None when the job is unknown."""
        return await self._ask_store(
            lambda r: GetTree(job_id=job_id, reply=r), timeout=self.timeout, read=True
        )

    async def wait_tree(self, root_job_id: str) -> Tree | None:
        """The tree once it has finished.  Bound it with a cancel scope."""
        return await call(self.router, lambda r: WaitTree(root_job_id=root_job_id, reply=r))

    async def cancel_job(self, job_id: str) -> CancelResult:
        """Cancel a queued job, or start terminating a running one.

        A running job becomes ``cancelled`` once its process group is gone; follow
        with :meth:`wait_job` to see it settle.
        """
        return await self._ask(
            self.dispatcher, lambda r: CancelJob(job_id=job_id, reply=r), timeout=self.timeout
        )

    # -- interactive sessions and follow-ups ------------------------------------------------

    async def converse(self, job_id: str, message: str | None) -> SessionReply:
        """Hand a running interactive job ``message``, or complete its session (None).

        Answered once a message is stored and on its way to the plugin, or with why
        the session did not take it.
        """
        return await self._ask(
            self.dispatcher,
            lambda r: Converse(job_id=job_id, message=message, reply=r),
            timeout=self.timeout,
        )

    async def follow_up(self, job: NewJob) -> Job | FollowUpRefusal:
        """Create ``job``, the follow-up of the finished job it ``follows``."""
        return await self._ask_store(
            lambda r: EnqueueFollowUp(job=job, reply=r), timeout=self.timeout
        )

    # -- workspaces ---------------------------------------------------------------------

    async def list_workspaces(self) -> tuple[Workspace, ...]:
        """Every kept workspace, the most recently used first."""
        return await self._ask_store(
            lambda r: ListWorkspaces(reply=r), timeout=self.timeout, read=True
        )

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        """One kept workspace, or None."""
        return await self._ask_store(
            lambda r: GetWorkspace(workspace_id=workspace_id, reply=r),
            timeout=self.timeout,
            read=True,
        )

    async def repository(self, name: str) -> RepositoryView | None:
        """A repository as the API shows it, its mirror looked at."""
        config = self.repositories.get(name)
        source = self.repositories.source(name)
        if config is None or source is None:
            return None
        mirror = self.workspaces.mirror_path(name)

        def look() -> tuple[float | None, int]:
            if mirror is None or not mirror.is_dir():
                return None, 0
            fetched = mirror / "FETCH_HEAD"
            synced = (fetched if fetched.exists() else mirror).stat().st_mtime
            return synced, size_of(mirror)

        synced, size = await trio.to_thread.run_sync(look)
        forge, forge_repo, api_url = forge_of(config)
        return RepositoryView(
            name=name,
            url=display_url(config.url),
            default_branch=config.default_branch,
            forge=forge,
            forge_repo=forge_repo,
            api_url=api_url,
            last_sync_at=synced,
            mirror_bytes=size,
            source=source,
        )

    # The repositories added through the API are loaded when the JobStore opens the
    # database and changed here after each write commits (shielded, as the MCP
    # servers below), so the Runners find a new one at once.

    def repositories_loaded(self, added: Sequence[AddedRepository]) -> None:
        """The JobStore opened the database: these are the repositories added through the API."""
        usable: list[tuple[str, RepositoryConfig]] = []
        for entry in added:
            try:
                usable.append((entry.name, parse_repository(entry.name, entry.spec)))
            except ConfigError as exc:
                # Kept by an older release whose rules were looser: shown in the log,
                # left in the store, usable again once the rules allow it.
                log.error(
                    "repository %s added through the API is not usable: %s",
                    entry.name,
                    "; ".join(exc.problems),
                    extra={"component": "gateway", "repository": entry.name},
                )
        shadowed = sorted(name for name, _ in usable if name in self.repositories.configured)
        if shadowed:
            log.warning(
                "repositories added through the API are shadowed by the config's: %s",
                ", ".join(shadowed),
                extra={"component": "gateway"},
            )
        self.repositories.loaded(usable)

    async def add_repository(
        self, name: str, config: RepositoryConfig, spec: Mapping[str, Any]
    ) -> RepositoryView | None:
        """Keep repository ``name`` (``spec`` as given, ``config`` as read); None when
        the name is taken (by the config or by an earlier addition)."""
        if name in self.repositories:
            return None
        async with self._repository_writes:
            with trio.CancelScope(shield=True):
                added: AddedRepository | None = await self._ask_store(
                    lambda r: AddRepository(name=name, spec=spec, reply=r), timeout=self.timeout
                )
                if added is None:
                    return None
                self.repositories.add(name, config)
        return await self.repository(name)

    async def remove_repository(self, name: str) -> RepositoryRefusal | None:
        """Forget a repository added through the API, then remove its mirror.

        Refused for the config's repositories (the file says what they are) and while
        a workspace is a worktree of it (its branch would lose its mirror).
        """
        source = self.repositories.source(name)
        if source is None:
            return RepositoryRefusal.UNKNOWN
        if source == "config":
            return RepositoryRefusal.CONFIGURED
        lock = self.mirror_locks.setdefault(name, trio.Lock())
        async with self._repository_writes, lock:
            with trio.CancelScope(shield=True):
                refused: RepositoryRefusal | None = await self._ask_store(
                    lambda r: RemoveRepository(name=name, reply=r), timeout=self.timeout
                )
                if refused is not None:
                    return refused
                self.repositories.remove(name)
            mirror = self.workspaces.mirror_path(name)
            if mirror is not None:
                # Its row is gone: a new repository of the name starts from a new clone.
                await trio.to_thread.run_sync(
                    functools.partial(shutil.rmtree, mirror, ignore_errors=True)
                )
        return None

    async def sync_repositories(
        self, names: Sequence[str], *, submitted_by: str
    ) -> tuple[Enqueued, ...]:
        """One ``core.repository`` job per name, to fetch its mirror; committed at once."""
        return await self.enqueue([sync_job(name, submitted_by=submitted_by) for name in names])

    async def open_pull_request(
        self, job: Job, ask: PullRequestAsk
    ) -> PullRequest | PullRequestRefusal:
        """Commit, push and open the pull request of ``job``'s worktree (or the one open)."""
        if self.pull_requests is None:
            return PullRequestRefusal.NO_REPOSITORY
        return await self.pull_requests.open_for(job, ask)

    async def branch_holder(self, repository: str, branch: str) -> str | None:
        """The workspace that has ``branch`` of ``repository`` checked out, if any."""
        return await self._ask_store(
            lambda r: BranchHolder(repository=repository, branch=branch, reply=r),
            timeout=self.timeout,
            read=True,
        )

    async def workspace_usage(self) -> int:
        """Bytes the kept workspaces hold, as last measured."""
        return await self._ask_store(
            lambda r: WorkspaceUsage(reply=r), timeout=self.timeout, read=True
        )

    async def delete_workspace(self, workspace: Workspace) -> WorkspaceRefusal | None:
        """Forget a kept workspace no job needs, then remove its worktree and directory."""
        refused: WorkspaceRefusal | None = await self._ask_store(
            lambda r: DeleteWorkspace(workspace_id=workspace.id, reply=r), timeout=self.timeout
        )
        if refused is None:
            # Its row is gone (committed): a crash now leaves a directory the next
            # start sweeps, never a row without its directory.
            await remove_workspace(self.workspaces, workspace.id, workspace.repository)
        return refused

    # -- runs ---------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> PipelineRun | None:
        """One run with its jobs, or None."""
        return await self._ask_store(
            lambda r: GetRun(run_id=run_id, reply=r), timeout=self.timeout, read=True
        )

    async def list_runs(
        self, *, pipeline: str | None, statuses: frozenset[RunStatus], limit: int, offset: int
    ) -> tuple[tuple[PipelineRun, ...], int]:
        """A page of runs, the newest first, and how many match in all."""
        return await self._ask_store(
            lambda r: ListRuns(
                pipeline=pipeline, statuses=statuses, limit=limit, offset=offset, reply=r
            ),
            timeout=self.timeout,
            read=True,
        )

    async def act_on_run(
        self, run_id: str, action: RunAction, *, actor: str, stop_running: bool = False
    ) -> RunControlled[ActOutcome | Refused | None]:
        """Carry out ``action`` on a run (answer None: unknown), then terminate the
        running jobs it stops: their process groups, as ``POST /job/{id}/cancel`` does."""
        done: RunControlled[ActOutcome | Refused | None] = await self._ask_store(
            lambda r: ActOnRun(
                run_id=run_id, action=action, actor=actor, stop_running=stop_running, reply=r
            ),
            timeout=self.timeout,
        )
        if isinstance(done.answer, ActOutcome):
            for job_id in done.answer.stop:
                await self.cancel_job(job_id)
        return done

    async def decide_step(
        self, run_id: str, step_id: str, word: Approval
    ) -> RunControlled[Approval | Unchanged | Refused | None]:
        """Approve or reject a step of a run (answer None: unknown run or step)."""
        done: RunControlled[Approval | Unchanged | Refused | None] = await self._ask_store(
            lambda r: DecideStep(run_id=run_id, step_id=step_id, word=word, reply=r),
            timeout=self.timeout,
        )
        return done

    async def report_ci(self, signal: CiSignal, run_id: str | None) -> tuple[CiMatch, ...]:
        """Hand a CI report to the run steps waiting for it; which it matched."""
        done: RunControlled[tuple[CiMatch, ...]] = await self._ask_store(
            lambda r: ReportCi(signal=signal, run_id=run_id, reply=r), timeout=self.timeout
        )
        return done.answer

    async def run_events(
        self, run_id: str, *, kinds: frozenset[str], after_id: int, limit: int
    ) -> tuple[JobMessage, ...]:
        """A run's events after ``after_id``, oldest first."""
        return await self._ask_store(
            lambda r: RunEvents(
                run_id=run_id, kinds=kinds, after_id=after_id, limit=limit, reply=r
            ),
            timeout=self.timeout,
            read=True,
        )

    # -- loop jobs ----------------------------------------------------------------------

    async def iterations(self, job_id: str) -> tuple[Iteration, ...]:
        """A loop job's iterations so far, in order."""
        return await self._ask_store(
            lambda r: GetIterations(job_id=job_id, reply=r), timeout=self.timeout, read=True
        )

    async def stop_loop(self, job_id: str) -> Job | None:
        """Ask a loop job to stop after its current iteration; the job as it stands."""
        return await self._ask_store(
            lambda r: StopLoop(job_id=job_id, reply=r), timeout=self.timeout
        )

    # -- job messages, the queue, callbacks ------------------------------------------------

    async def job_messages(
        self, job_id: str, *, after_seq: int = 0, limit: int = 10_000
    ) -> tuple[JobMessage, ...]:
        """A job's messages after ``after_seq``, in order."""
        return await self._ask_store(
            lambda r: GetMessages(job_id=job_id, after_seq=after_seq, limit=limit, reply=r),
            timeout=self.timeout,
            read=True,
        )

    async def status_changes(
        self,
        *,
        after_id: int,
        plugin: str | None = None,
        statuses: tuple[JobStatus, ...] = (),
        limit: int = 500,
    ) -> tuple[JobMessage, ...]:
        """Status changes of all jobs after the message id ``after_id``, filtered."""
        return await self._ask_store(
            lambda r: GetStatusChanges(
                after_id=after_id, plugin=plugin, statuses=statuses, limit=limit, reply=r
            ),
            timeout=self.timeout,
            read=True,
        )

    async def queue(self, limit: int) -> QueueView:
        """Running and queued jobs, at most ``limit`` of each."""
        return await self._ask_store(
            lambda r: GetQueue(limit=limit, reply=r), timeout=self.timeout, read=True
        )

    async def callbacks(self, job_id: str) -> CallbackInfo:
        """A job's callback URL and its deliveries."""
        return await self._ask_store(
            lambda r: GetCallbacks(job_id=job_id, reply=r), timeout=self.timeout, read=True
        )

    # -- schedules ---------------------------------------------------------------------

    async def list_schedules(self) -> tuple[ScheduleStatus, ...]:
        """Every schedule; the last job's status is read live when it is not final."""
        if self.scheduler is None:
            return ()
        found: tuple[ScheduleStatus, ...] = await call(
            self.scheduler, lambda r: ListSchedules(reply=r), timeout=self.timeout
        )
        # The Scheduler hears about finished jobs only; "running" is the store's to say.
        ids = tuple(
            s.book.last_job_id
            for s in found
            if s.book.last_job_id is not None
            and s.book.last_status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
        )
        if not ids:
            return found
        live: Mapping[str, JobStatus] = await self._ask_store(
            lambda r: JobStatuses(job_ids=ids, reply=r), timeout=self.timeout, read=True
        )
        return tuple(_with_live_status(s, live) for s in found)

    async def reset_breaker(
        self, plugin: str, schedule_id: str, *, by: str
    ) -> ScheduleStatus | None:
        """Close the circuit breaker a schedule answers to; None for an unknown schedule."""
        if self.scheduler is None:
            return None
        return await call(
            self.scheduler,
            lambda r: ResetBreaker(plugin=plugin, schedule_id=schedule_id, by=by, reply=r),
            timeout=self.timeout,
        )

    # -- secrets ---------------------------------------------------------------------
    # A write is sealed here, committed by the JobStore, and only then put in the
    # vault.  It is shielded from the caller's cancellation (within the timeout), so
    # a client that hangs up cannot leave the vault behind what the store holds.

    async def list_secrets(self) -> tuple[SecretInfo, ...]:
        """What the registry tells about every secret, by name."""
        return await self._ask_store(
            lambda r: ListSecrets(reply=r), timeout=self.timeout, read=True
        )

    async def get_secret(self, name: str) -> SecretInfo | None:
        """What the registry tells about secret ``name``, or None."""
        return await self._ask_store(
            lambda r: GetSecret(name=name, reply=r), timeout=self.timeout, read=True
        )

    async def create_secret(
        self, name: str, value: str, *, description: str | None
    ) -> SecretInfo | None:
        """Register a secret; None when the name is taken (nothing changes then).

        The vault learns the value from the JobStore, right after the commit, even if
        this caller has gone by then (:attr:`~chamberlain.actors.mail.Effects.then`):
        the store and the vault cannot disagree, and they change in the store's order.
        """
        sealed, shown, check = self.sealer.seal(name, value), hint(value), self.sealer.check_blob()
        created: SecretInfo | None = await self._ask_store(
            lambda r: CreateSecret(
                name=name,
                description=description,
                sealed=sealed,
                hint=shown,
                check=check,
                committed=functools.partial(self.vault.put, name, value),
                reply=r,
            ),
            timeout=self.timeout,
        )
        return created

    async def rotate_secret(
        self,
        name: str,
        value: str,
        *,
        description: str | None = None,
        keep_description: bool = True,
    ) -> SecretInfo | None:
        """Give a secret a new value (the next job gets it); None when it is unknown."""
        sealed, shown, check = self.sealer.seal(name, value), hint(value), self.sealer.check_blob()
        rotated: SecretInfo | None = await self._ask_store(
            lambda r: RotateSecret(
                name=name,
                sealed=sealed,
                hint=shown,
                check=check,
                description=description,
                keep_description=keep_description,
                committed=functools.partial(self.vault.put, name, value),
                reply=r,
            ),
            timeout=self.timeout,
        )
        return rotated

    async def delete_secret(self, name: str) -> bool:
        """Forget a secret; False when it is unknown."""
        deleted: bool = await self._ask_store(
            lambda r: DeleteSecret(
                name=name, committed=functools.partial(self.vault.remove, name), reply=r
            ),
            timeout=self.timeout,
        )
        return deleted

    # -- MCP servers -----------------------------------------------------------------
    # The table of servers is loaded when the JobStore opens the database and changed
    # here after each write commits (shielded, like the secrets), so a trigger's
    # mcp_servers are checked, and the vault told where a secret is used, without a
    # round trip.  Reads of the registry itself ask the store.

    def mcp_servers_loaded(self, servers: Sequence[McpServer]) -> None:
        """The JobStore opened the database: these are the servers registered."""
        self._mcp = {server.name: server for server in servers}

    def unknown_mcp_servers(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` that name no registered MCP server, in order."""
        return [name for name in names if name not in self._mcp]

    def _mcp_references(self, secret: str) -> list[str]:
        return mcp_references(sorted(self._mcp.values(), key=lambda s: s.name), secret)

    async def plugin_facts(
        self, plugin: str, *, fact_type: str | None, limit: int
    ) -> tuple[PluginFact, ...]:
        """The newest ``limit`` facts of ``plugin`` (of ``fact_type``), newest first."""
        return await self._ask_store(
            lambda r: ListFacts(plugin=plugin, fact_type=fact_type, limit=limit, reply=r),
            timeout=self.timeout,
            read=True,
        )

    async def list_mcp_servers(self) -> tuple[McpServer, ...]:
        """Every registered MCP server, by name."""
        return await self._ask_store(
            lambda r: ListMcpServers(reply=r), timeout=self.timeout, read=True
        )

    async def get_mcp_server(self, name: str) -> McpServer | None:
        """The MCP server ``name``, or None."""
        found: tuple[McpServer, ...] = await self._ask_store(
            lambda r: ListMcpServers(names=(name,), reply=r), timeout=self.timeout, read=True
        )
        return found[0] if found else None

    async def create_mcp_server(self, server: McpServer) -> McpServer | None:
        """Register ``server``; None when its name is taken (nothing changes then)."""
        async with self._mcp_writes:
            with trio.CancelScope(shield=True):
                created: McpServer | None = await self._ask_store(
                    lambda r: CreateMcpServer(server=server, reply=r), timeout=self.timeout
                )
                if created is not None:
                    self._mcp[created.name] = created
        return created

    async def delete_mcp_server(self, name: str) -> bool:
        """Forget MCP server ``name``; False when it is unknown."""
        async with self._mcp_writes:
            with trio.CancelScope(shield=True):
                deleted: bool = await self._ask_store(
                    lambda r: DeleteMcpServer(name=name, reply=r), timeout=self.timeout
                )
                if deleted:
                    self._mcp.pop(name, None)
        return deleted

    async def health(self) -> Health:
        """Queue, workers and supervisor figures in one snapshot."""
        depth: int = await self._ask_store(
            lambda r: QueueDepth(reply=r), timeout=self.timeout, read=True
        )
        stats: DispatcherStatistics = await call(
            self.dispatcher, lambda r: Statistics(reply=r), timeout=self.timeout
        )
        sup = self.supervisor_statistics()
        schedules: tuple[ScheduleStatus, ...] = ()
        if self.scheduler is not None:
            schedules = await call(
                self.scheduler, lambda r: ListSchedules(reply=r), timeout=self.timeout
            )
        return Health(
            phase=self.lifecycle.phase,
            uptime_seconds=self.lifecycle.uptime(),
            queue_depth=depth,
            running=stats.running,
            max_workers=stats.max_workers,
            plugins_loaded=len(self.plugins),
            restarts=sup.restart_counts(),
            restarts_total=sup.restarts_total,
            degraded=self.storage_problem(),
            plugins_circuit_open=plugins_circuit_open(schedules),
            config=self.loaded_config(),
        )

    async def reload(self) -> ReloadReport:
        """Reload the configuration from its file; see :mod:`chamberlain.reloading`.

        Raises :class:`ReloadRefused` with every problem of a file that fails its
        checks (the old configuration runs on), and :class:`ReloadUnavailable` for
        a daemon started without a file.
        """
        if self.reloader is None:
            raise ReloadUnavailable("this daemon was started without a config file")
        return await self.reloader()


def plugins_circuit_open(schedules: Iterable[ScheduleStatus]) -> int:
    """How many plugins have a breaker that is open or half open.

    A half-open breaker still holds runs back until its probe succeeds, so it
    counts as open; a plugin with several such schedules counts once.
    """
    return len({s.plugin for s in schedules if s.breaker.breaker.state is not BreakerState.CLOSED})


def _with_live_status(status: ScheduleStatus, live: Mapping[str, JobStatus]) -> ScheduleStatus:
    job_id = status.book.last_job_id
    if job_id is None or job_id not in live:
        return status
    return attrs.evolve(status, book=attrs.evolve(status.book, last_status=live[job_id].value))
