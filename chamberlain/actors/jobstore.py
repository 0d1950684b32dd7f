"""The JobStore actor: sole owner of the database connection.

Requests arrive on one mailbox.  The actor takes the first, then everything else
already waiting (up to :data:`MAX_BATCH`), and runs the lot in one transaction in a
worker thread: one thread hop and one commit (one fsync) for the whole group.  Each
request runs inside its own savepoint, so a request that fails is undone and
answered with its error while its neighbours still commit.  Answers go out only
after the commit, which is what makes "202 Accepted" mean "durable".

What follows a commit is each request's to say (its
:meth:`~chamberlain.actors.mail.StoreRequest.effects`): the JobStore folds the
batch's effects into at most one ring of the Dispatcher and one of the Router,
answers the WaitJob replies parked on the jobs that finished, and parks the
WaitJob replies whose job has not.

Reads need not wait for writes.  Given a second mailbox for them, it serves the
reads sent there (the API's) on a connection of their own: under WAL a reader sees
the last commit while the writer works, so a ``GET /job`` never queues behind a
batch of commits and their fsync.  A lookup by id is read on the event loop, which
costs less than the hop to a thread; every other read batch goes to the reader's
own thread.

A full or failing disk does not crash it (see
:mod:`chamberlain.actors.storage_faults`): the refused batch is rolled back, its
reads are served again on their own, clients' writes are answered
:class:`~chamberlain.actors.storage_faults.StorageFull`, the writes of actors that
cannot take an error are kept and tried again with backoff, and the store reports
itself degraded until a write commits again.  When writes stop for a moment the WAL
is checkpointed and truncated, so it never grows to fill a small disk by itself.

When it opens the database it recovers the jobs a dead daemon left running and
removes what they left behind (their processes, their workspaces), then tells the
Gateway which MCP servers are registered.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import trio

from chamberlain.actors.journal import Journal, News
from chamberlain.actors.mail import (
    ActOnRun,
    AddRepository,
    BranchHolder,
    BuryQueued,
    CancelQueued,
    Claim,
    ClaimResult,
    CommitSchedules,
    CreateMcpServer,
    CreateSecret,
    DecideStep,
    DeleteMcpServer,
    DeleteSecret,
    DeleteWorkspace,
    Enqueue,
    EnqueueFollowUp,
    EnqueuePlan,
    EnqueueWebhook,
    GetJob,
    GetRun,
    GetSecret,
    GetTree,
    GetWorkspace,
    JobStatuses,
    JobStoreRequest,
    JournalRequest,
    ListAddedRepositories,
    ListFacts,
    ListJobs,
    ListMcpServers,
    ListRuns,
    ListSecrets,
    ListWorkspaces,
    LoadSchedules,
    OutstandingJobs,
    QueueDepth,
    RecordPullRequest,
    RecoverOrphans,
    RemoveRepository,
    ReportCi,
    RotateSecret,
    RouteSettled,
    RunControlled,
    RunEvents,
    RunningJobs,
    Settle,
    TouchWorkspace,
    TreePending,
    WaitJob,
    WorkspaceUsage,
)
from chamberlain.actors.mailbox import Waiters
from chamberlain.actors.storage_faults import (
    Disposition,
    StorageFull,
    disposition,
    retry_delay,
    storage_failure,
)
from chamberlain.plugins.strays import kill_leftover_processes
from chamberlain.plugins.workspace import MCP_CONFIG_FILE, Workspaces, workspace_root
from chamberlain.records import (
    AddedRepository,
    Job,
    JobStatus,
    McpServer,
    PullRequest,
    RepositoryRefusal,
    RoutePlan,
    Tree,
)
from chamberlain.repositories import remove_workspace
from chamberlain.retry import settle
from chamberlain.routing.planner import Routing, routing_error
from chamberlain.store import (
    job_messages,
    mcp_rows,
    plugin_facts,
    repository_rows,
    run_control,
    run_rows,
    schedule_books,
    secret_rows,
    session_rows,
    workspace_rows,
)
from chamberlain.store.callback_queue import register_callbacks
from chamberlain.store.sqlite import SqliteStore

log = logging.getLogger("chamberlain.jobstore")

T = TypeVar("T")

MAX_BATCH = 512
#: Reads served on the event loop rather than in the reader's thread: a lookup by a
#: unique key reads a few pages, less than the thread hop costs under load (the
#: hop waits for the GIL while the event loop runs).
INLINE_READS: tuple[type, ...] = (GetJob,)
#: How often terminal jobs past ``service.job_retention`` are deleted.
PRUNE_INTERVAL = 3600.0
#: Seconds without a write after which the WAL is checkpointed and truncated.
IDLE_CHECKPOINT = 1.0


# -- the actor -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JobStoreStatistics:
    """What the JobStore has done, and what it holds for callers."""

    batches: int
    requests: int
    busy_seconds: float
    #: WaitJob replies parked on unfinished jobs (callers that gave up included,
    #: until they are swept out).
    waiters: int = 0
    #: Why writes are refused (the disk is full or failing); None while they commit.
    degraded: str | None = None
    #: Attempts the disk refused since the start, and requests kept for a retry now.
    storage_failures: int = 0
    held: int = 0
    #: Requests served off the writer's queue, on the reader connection.
    reads: int = 0


@attrs.define(eq=False)
class JobStore:
    """Owns the :class:`SqliteStore`; see the module docstring for the batching."""

    path: str
    #: Rung (without blocking) after a commit that made jobs runnable.
    wake_dispatcher: Callable[[], None]
    #: Rung (without blocking) after a commit that finished jobs: the Router routes
    #: their events and checks the trees it waits on.
    wake_router: Callable[[], None] = lambda: None
    #: Told (without blocking) of every job that reaches a terminal status here:
    #: settled by its Runner, cancelled while queued, or given up as an orphan.
    job_finished: Callable[[Job], None] = lambda job: None
    #: Told (on the trio thread, before the store serves anything) of every MCP
    #: server registered, each time the store opens: the Gateway's table of them.
    mcp_servers_loaded: Callable[[tuple[McpServer, ...]], None] = lambda servers: None
    #: Told the repositories added through the API, likewise.
    repositories_loaded: Callable[[tuple[AddedRepository, ...]], None] = lambda added: None
    dedupe_ttl: float = 86400.0
    job_retention: float = 30 * 86400.0
    #: How long a kept workspace no job needs stays after its last use.
    workspace_ttl: float = 7 * 86400.0
    now: Callable[[], float] = time.time
    #: Run SQL in a worker thread so an fsync never stalls the event loop.  Off only
    #: for tests on trio's autojump clock, which would jump ahead while a thread works.
    offload: bool = True
    #: Records job messages and callback deliveries in each transaction and
    #: announces them once it commits (see chamberlain.actors.journal).
    journal: Journal | None = None
    #: The pipelines, whose steps' run control (approvals, checks, CI) the store
    #: applies to their runs' jobs; None: a run's jobs run as they come.
    routing: Routing | None = None
    _store: SqliteStore | None = attrs.field(default=None, init=False)
    #: When (wall clock) the soonest approval timeout is due; None: none is.
    _approval_due: float | None = attrs.field(default=None, init=False)
    #: The reader connection; None without a reads mailbox or for ``:memory:``
    #: (which has no second connection: its reads share the writer's, in turn).
    _reader: SqliteStore | None = attrs.field(default=None, init=False)
    #: WaitJob replies parked until their job finishes, by job id.
    _waiters: Waiters[str, Any] = attrs.field(factory=Waiters, init=False)
    _limiter: trio.CapacityLimiter = attrs.field(
        factory=lambda: trio.CapacityLimiter(1), init=False
    )
    batches: int = attrs.field(default=0, init=False)
    requests: int = attrs.field(default=0, init=False)
    #: Seconds spent serving batches (thread hops and commits included): the share
    #: of the time the store was the one thing every request waited for.
    busy: float = attrs.field(default=0.0, init=False)
    storage_failures: int = attrs.field(default=0, init=False)
    reads: int = attrs.field(default=0, init=False)
    #: Serialises the reader connection's uses (the thread and the event loop).
    _read_limiter: trio.CapacityLimiter = attrs.field(
        factory=lambda: trio.CapacityLimiter(1), init=False
    )
    _degraded: str | None = attrs.field(default=None, init=False)
    #: Refused attempts in a row: what the backoff grows with.
    _failures: int = attrs.field(default=0, init=False)
    #: Writes refused by the disk whose senders cannot take an error (see Disposition).
    _held: list[JobStoreRequest] = attrs.field(factory=list, init=False)
    #: When (trio time) the held writes, or a probe write, are tried again.
    _retry_at: float = attrs.field(default=math.inf, init=False)
    #: When (trio time) the WAL is checkpointed if no write comes before.
    _checkpoint_at: float = attrs.field(default=math.inf, init=False)

    async def run(
        self,
        mailbox: trio.MemoryReceiveChannel[JobStoreRequest],
        reads: trio.MemoryReceiveChannel[JobStoreRequest] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the database, recover orphans, then serve requests until cancelled.

        ``reads``, when given, is a mailbox of reads only, served off the writer's
        queue (see the module docstring).
        """
        store = await self._call(SqliteStore, self.path)
        store.gates = self.routing
        self._store = store
        self._approval_due = run_control.next_timeout(store.conn)
        try:
            orphans = await self._in_thread(self._recover_all)
            for job in orphans:
                if job.status.terminal:
                    self._finished(job)
                log.warning(
                    "job found running at start-up: now %s (%s)",
                    job.status.value,
                    job.last_error,
                    extra={"component": "jobstore", "job_id": job.id, "plugin": job.plugin},
                )
            # Jobs that ended just before a crash may not have been routed yet.
            self.wake_router()
            # After a SIGKILL their processes may still be running: they must not
            # overlap the new attempt.  So may the escapees of our jobs that finished:
            # whatever a daemon that is gone left of this state's jobs goes.
            await self._call(
                lambda: kill_leftover_processes(
                    [j.id for j in orphans], known=lambda job: store.get_job(job) is not None
                )
            )
            await self._start_mcp()
            if orphans:
                self.wake_dispatcher()
            if reads is not None and self.path != ":memory:":
                self._reader = await self._call(
                    functools.partial(SqliteStore, reader=True), self.path
                )
            async with trio.open_nursery() as nursery:
                if reads is not None:
                    nursery.start_soon(self._serve_reads, reads)
                task_status.started()
                await self._serve_writes(mailbox)
        finally:
            reader, self._reader = self._reader, None
            if reader is not None:
                # First, so the writer's closing checkpoint has no reader to wait for.
                reader.conn.close()
            self._store = None
            # requests/batches is the mean group-commit size: the figure that says
            # whether batching works under load (bench/ reads this line).
            log.info(
                "served %d requests in %d transactions, busy %.3f s",
                self.requests,
                self.batches,
                self.busy,
                extra={
                    "component": "jobstore",
                    "requests": self.requests,
                    "batches": self.batches,
                    "busy_seconds": round(self.busy, 3),
                    "reads": self.reads,
                },
            )
            # Closing is quick (a WAL checkpoint); shield it so a cancelled daemon
            # still leaves a tidy file, but never wait on it forever.
            with trio.move_on_after(10) as cleanup:
                cleanup.shield = True
                try:
                    await self._call(store.close)
                except Exception as exc:
                    reason = storage_failure(exc)
                    if reason is None:
                        raise
                    # The WAL stays; the next start checkpoints it.
                    log.warning(
                        "closed without a checkpoint: %s",
                        reason,
                        extra={"component": "jobstore", "reason": reason},
                    )

    async def _serve_writes(self, mailbox: trio.MemoryReceiveChannel[JobStoreRequest]) -> None:
        """Serve the mailbox in group commits, and the timers between them, until cancelled."""
        next_prune = trio.current_time()
        while True:
            first: JobStoreRequest | None = None
            approvals = self._approvals_at()
            with trio.move_on_at(min(next_prune, self._retry_at, self._checkpoint_at, approvals)):
                first = await mailbox.receive()
            if first is None:
                clock = trio.current_time()
                if clock >= approvals:
                    await self._sweep_approvals()
                if clock >= self._retry_at:
                    await self._retry()
                if clock >= self._checkpoint_at:
                    await self._checkpoint()
                if clock >= next_prune:
                    self._waiters.prune()
                    await self._prune_old()
                    next_prune = trio.current_time() + PRUNE_INTERVAL
                continue
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(mailbox.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._serve(batch)
            # Steady traffic must not starve the held writes of their retry.
            if trio.current_time() >= self._retry_at:
                await self._retry()

    def use_routing(self, routing: Routing) -> None:
        """Apply ``routing``'s run control from the next batch on (a reload)."""
        self.routing = routing
        if self._store is not None:
            self._store.gates = routing

    def statistics(self) -> JobStoreStatistics:
        """A snapshot of the counters."""
        return JobStoreStatistics(
            batches=self.batches,
            requests=self.requests,
            busy_seconds=self.busy,
            waiters=len(self._waiters),
            degraded=self._degraded,
            storage_failures=self.storage_failures,
            held=len(self._held),
            reads=self.reads,
        )

    # -- internals -----------------------------------------------------------------

    async def _in_thread(self, fn: Callable[[SqliteStore, float], Any]) -> Any:
        """Run ``fn(store, now)`` in one transaction on the worker thread."""
        store = self._store
        assert store is not None
        # Read the clock here, not in the thread: the clock may be trio's.
        now = self.now()

        journal = self.journal

        def transaction() -> tuple[Any, News | None, bool]:
            # A rollback the disk refused leaves its transaction open: abandon it.
            store.rollback()
            store.begin()
            try:
                before = store.conn.total_changes
                mark = journal.mark(store) if journal is not None else 0
                value = fn(store, now)
                self._record_runs(store, now)
                news = journal.collect(store, mark, now) if journal is not None else None
                store.commit()
            except BaseException:
                store.rollback()
                raise
            return value, news, store.conn.total_changes != before

        value, news, wrote = await self._call(transaction)
        if wrote:
            self._writes_commit()
        if journal is not None and news is not None:
            journal.publish(news)
        return value

    def _record_runs(self, store: SqliteStore, now: float) -> None:
        """Record the events of the runs this transaction changed, in it (so they
        are committed, and announced, with what they tell of)."""
        touched, store.touched_runs = store.touched_runs, set()
        if not touched or store.gates is None:
            return
        store.savepoint()
        try:
            run_control.refresh(store.conn, touched, store.gates, now)
        except Exception as exc:
            if storage_failure(exc) is not None:
                raise
            # The log of a run must not cost the transaction it logs.
            store.undo()
            log.exception("a run's events could not be recorded", extra={"component": "jobstore"})
        else:
            store.release()
        self._approval_due = run_control.next_timeout(store.conn)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.offload:
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _serve_reads(self, reads: trio.MemoryReceiveChannel[JobStoreRequest]) -> None:
        """Answer the reads mailbox, a batch at a time, until cancelled."""
        while True:
            batch = [await reads.receive()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(reads.receive_nowait())
                except trio.WouldBlock:
                    break
            batch = [request for request in batch if self._servable_read(request)]
            if not batch:
                continue
            now = self.now()
            reader = self._reader
            if reader is None:
                # :memory: has one connection: between the writer's transactions.
                store = self._store
                assert store is not None
                outcomes = await self._call(self._read_all, store, batch, now)
            elif not self.offload or all(isinstance(r, INLINE_READS) for r in batch):
                async with self._read_limiter:
                    outcomes = self._read_all(reader, batch, now)
            else:
                outcomes = await trio.to_thread.run_sync(
                    self._read_all, reader, batch, now, limiter=self._read_limiter
                )
            self.reads += len(batch)
            for request, (result, error) in zip(batch, outcomes, strict=True):
                if error is None:
                    request.reply.send(result)
                    continue
                reason = storage_failure(error)
                if reason is not None:
                    error = StorageFull(f"the database could not be read ({reason})")
                else:
                    log.error(
                        "request %s failed",
                        type(request).__name__,
                        exc_info=error,
                        extra={"component": "jobstore"},
                    )
                request.reply.fail(error)

    @staticmethod
    def _servable_read(request: JobStoreRequest) -> bool:
        """Whether the reads mailbox may serve ``request``; it is refused if not.

        A write there would bypass the group commit and its effects, and a WaitJob
        parks its reply with the writer, which answers it when the job finishes.
        """
        if disposition(request) is Disposition.READ and not isinstance(request, WaitJob):
            return True
        request.reply.fail(TypeError(f"{type(request).__name__} is not a read"))
        return False

    def _read_all(
        self, store: SqliteStore, batch: list[JobStoreRequest], now: float
    ) -> list[tuple[Any, Exception | None]]:
        """Every read of a batch in one read transaction: one consistent snapshot."""
        outcomes: list[tuple[Any, Exception | None]] = []
        try:
            store.read()
        except Exception as exc:
            return [(None, exc)] * len(batch)
        try:
            for request in batch:
                try:
                    outcomes.append((self._apply(store, request, now), None))
                except Exception as exc:
                    outcomes.append((None, exc))
        finally:
            store.rollback()
        return outcomes

    def _recover_all(self, store: SqliteStore, now: float) -> list[Job]:
        return store.recover_orphans(now=now)

    async def _start_mcp(self) -> None:
        """Sweep the workspaces a dead daemon left, and announce the MCP servers."""
        # No job runs now (a restarted JobStore restarted every Runner too), so every
        # workspace left is a dead attempt's, with resolved secrets in its .mcp.json,
        # but the kept ones, which keep only their own files.
        workspaces = Workspaces(workspace_root(self.path))
        kept: list[str] = await self._in_thread(lambda store, now: workspace_rows.ids(store.conn))

        def sweep() -> list[str]:
            for workspace_id in kept:
                path = workspaces.kept_path(workspace_id)
                if path is not None and path.is_dir() and not path.is_symlink():
                    workspaces.lift(path, (MCP_CONFIG_FILE,))
            return workspaces.sweep(keep=kept)

        swept = await self._call(sweep)
        if swept:
            log.warning(
                "removed %d workspaces of jobs that are no longer running",
                len(swept),
                extra={"component": "jobstore", "job_ids": swept},
            )
        servers = await self._in_thread(lambda store, now: mcp_rows.list_servers(store.conn))
        self.mcp_servers_loaded(tuple(servers))
        added = await self._in_thread(lambda store, now: repository_rows.list_all(store.conn))
        self.repositories_loaded(tuple(added))

    def _approvals_at(self) -> float:
        """When (trio time) the soonest approval timeout is due."""
        if self._approval_due is None or self.routing is None:
            return math.inf
        return trio.current_time() + max(0.0, self._approval_due - self.now())

    async def _sweep_approvals(self) -> None:
        """Give the due approval timeouts their word (a transaction of their own)."""
        routing = self.routing
        assert routing is not None

        def sweep(store: SqliteStore, now: float) -> list[Job]:
            store.ended_here.clear()
            run_control.sweep_timeouts(store, routing, now)
            return run_control.take_ended(store)

        try:
            ended = await self._in_thread(sweep)
        except Exception as exc:
            reason = storage_failure(exc)
            if reason is None:
                raise
            self._degrade(reason)
            # Tried again with the next write, or at the next due time.
            self._approval_due = self.now() + retry_delay(self._failures)
            return
        for job in ended:
            self._finished(job)
        self.wake_dispatcher()
        if ended:
            # As after any request that finished jobs (Effects.wake_router): a job
            # the timeout's word failed is routed, and tree waiters are answered.
            self.wake_router()

    def _prune(self, store: SqliteStore, now: float) -> int:
        store.prune_deliveries(older_than=now - self.dedupe_ttl)
        plugin_facts.prune(store.conn, older_than=now - self.job_retention)
        return store.prune(older_than=now - self.job_retention)

    async def _prune_old(self) -> None:
        try:
            pruned = await self._in_thread(self._prune)
        except Exception as exc:
            reason = storage_failure(exc)
            if reason is None:
                raise
            self._degrade(reason)
            return
        if pruned:
            log.info("pruned %d old jobs", pruned, extra={"component": "jobstore"})
        await self._expire_workspaces()

    async def _expire_workspaces(self) -> None:
        """Remove the kept workspaces no job needs, ``workspace_ttl`` after their last use."""
        ttl = self.workspace_ttl
        try:
            expired: list[tuple[str, str | None]] = await self._in_thread(
                lambda store, now: workspace_rows.expire(store.conn, used_before=now - ttl)
            )
        except Exception as exc:
            reason = storage_failure(exc)
            if reason is None:
                raise
            self._degrade(reason)
            return
        if not expired:
            return
        workspaces = Workspaces(workspace_root(self.path))
        # The rows are gone (committed): a crash now leaves directories the next
        # start sweeps, never a row whose directory was removed.
        for workspace_id, repository in expired:
            await remove_workspace(workspaces, workspace_id, repository)
        log.info(
            "removed %d workspaces unused for %gs",
            len(expired),
            ttl,
            extra={"component": "jobstore", "workspace_ids": [id_ for id_, _ in expired]},
        )

    # -- a disk that refuses writes ------------------------------------------------

    def _degrade(self, reason: str) -> None:
        """Record a refused attempt and schedule the next one."""
        self.storage_failures += 1
        self._failures += 1
        if self._degraded is None:
            log.error(
                "the disk refused a write (%s): refusing new jobs, serving reads,"
                " retrying until space returns",
                reason,
                extra={"component": "jobstore", "reason": reason},
            )
        self._degraded = reason
        self._retry_at = trio.current_time() + retry_delay(self._failures)

    def _writes_commit(self) -> None:
        """A transaction that wrote has committed: the disk takes writes."""
        self._checkpoint_at = trio.current_time() + IDLE_CHECKPOINT
        if self._degraded is not None:
            log.warning(
                "writes commit again after %d refused attempts; %d held requests to retry",
                self._failures,
                len(self._held),
                extra={"component": "jobstore"},
            )
        self._degraded = None
        self._failures = 0
        self._retry_at = trio.current_time() if self._held else math.inf

    async def _retry(self) -> None:
        """Try the held writes again, or, with none held, prove the disk takes one."""
        held = [request for request in self._held if not request.reply.abandoned]
        self._held.clear()
        self._retry_at = math.inf
        if held:
            await self._serve(held)
            return
        if self._degraded is None:
            return
        store = self._store
        assert store is not None
        try:
            # Checkpointing first empties the WAL, so the probe's page needs fresh
            # space: a probe that fits in a WAL already allocated proves nothing.
            await self._call(store.checkpoint)
            await self._in_thread(lambda s, now: s.probe())
        except Exception as exc:
            reason = storage_failure(exc)
            if reason is None:
                raise
            self._degrade(reason)
            return
        self._writes_commit()

    async def _checkpoint(self) -> None:
        """Checkpoint and truncate the WAL now that writes have paused."""
        self._checkpoint_at = math.inf
        store = self._store
        assert store is not None
        try:
            await self._call(store.checkpoint)
        except Exception as exc:
            reason = storage_failure(exc)
            if reason is None:
                raise
            # Not degraded: commits may still fit.  The next write tries again.
            log.warning(
                "WAL checkpoint refused by the disk (%s)",
                reason,
                extra={"component": "jobstore", "reason": reason},
            )

    async def _refused(self, batch: list[JobStoreRequest], reason: str, *, again: bool) -> None:
        """Answer a batch the disk refused, each request by its disposition.

        ``again`` is False for a batch of reads already served again once: their
        second failure is their answer.
        """
        self._degrade(reason)
        refusal = StorageFull(
            f"the database could not be written ({reason}); nothing of this request"
            " was stored, try again once space is freed"
        )
        log.warning(
            "a batch of %d requests was refused by the disk (%s)",
            len(batch),
            reason,
            extra={"component": "jobstore", "reason": reason},
        )
        reads: list[JobStoreRequest] = []
        for request in batch:
            match disposition(request):
                case Disposition.READ if again:
                    reads.append(request)
                case Disposition.HOLD:
                    self._held.append(request)
                case Disposition.POSTPONE:
                    assert isinstance(request, Claim)
                    next_due = self.now() + retry_delay(self._failures)
                    request.reply.send(ClaimResult(jobs=(), next_due=next_due))
                case _:
                    request.reply.fail(refusal)
        if reads:
            await self._serve(reads, again=False)

    async def _serve(self, batch: list[JobStoreRequest], *, again: bool = True) -> None:
        started = time.perf_counter()
        refused: str | None = None
        try:
            outcomes = await self._in_thread(lambda store, now: self._execute(store, batch, now))
        except Exception as exc:
            refused = storage_failure(exc)
            if refused is None:
                raise
        self.busy += time.perf_counter() - started
        self.batches += 1
        self.requests += len(batch)
        if refused is not None:
            await self._refused(batch, refused, again=again)
            return
        wake_dispatcher = wake_router = False
        for request, (result, error) in zip(batch, outcomes, strict=True):
            if error is not None:
                log.error(
                    "request %s failed",
                    type(request).__name__,
                    exc_info=error,
                    extra={"component": "jobstore"},
                )
                request.reply.fail(error)
                continue
            effects = request.effects(result)
            if effects.wait_for is None:
                request.reply.send(result)
            else:
                self._waiters.add(effects.wait_for, request.reply)
            for job in effects.finished:
                self._finished(job)
            if effects.then is not None:
                effects.then()
            wake_dispatcher = wake_dispatcher or effects.wake_dispatcher
            wake_router = wake_router or effects.wake_router
        if wake_dispatcher:
            self.wake_dispatcher()
        if wake_router:
            self.wake_router()

    def _finished(self, job: Job) -> None:
        for reply in self._waiters.pop(job.id):
            reply.send(job)
        self.job_finished(job)

    def _execute(
        self, store: SqliteStore, batch: list[JobStoreRequest], now: float
    ) -> list[tuple[Any, Exception | None]]:
        """Run every request of a batch in the open transaction (worker thread).

        Each request gets its result, or the error that undid it.
        """
        outcomes: list[tuple[Any, Exception | None]] = []
        for request in batch:
            store.savepoint()
            try:
                outcomes.append((self._apply(store, request, now), None))
            except Exception as exc:
                if storage_failure(exc) is not None:
                    # The disk refused the batch, not this request (SQLite may
                    # have rolled the whole transaction back already).
                    raise
                store.undo()
                outcomes.append((None, exc))
            else:
                store.release()
        return outcomes

    def _route(
        self, store: SqliteStore, planner: Callable[[Job, float], RoutePlan], limit: int, now: float
    ) -> int:
        routed = 0
        for job in store.unrouted(limit):
            store.savepoint()
            try:
                if store.gates is not None:
                    run_control.route(store, job, planner, store.gates, now, self.dedupe_ttl)
                else:
                    store.apply_plan(planner(job, now), now=now, dedupe_ttl=self.dedupe_ttl)
            except Exception as exc:
                if storage_failure(exc) is not None:
                    raise  # the disk's refusal, not the plan's: the batch is retried
                # A plan that cannot be applied must not block every job behind it:
                # record why, and move on.
                store.undo()
                log.exception("routing failed", extra={"component": "router", "job_id": job.id})
                store.insert_event(routing_error(job, exc, now))
            else:
                store.release()
            store.mark_routed(job.id)
            routed += 1
        return routed

    @staticmethod
    def _controlled(
        store: SqliteStore,
        control: Callable[[Routing], T],
        *,
        run_id: str | None = None,
        empty: Any = None,
    ) -> RunControlled[Any]:
        """Run a run control request, with the jobs it ended and ``run_id``'s status after."""
        if store.gates is None:
            # No pipelines (a store opened without them): no run to control.
            return RunControlled(answer=empty)
        store.ended_here.clear()
        answer = control(store.gates)
        run = run_rows.get(store.conn, run_id) if run_id is not None else None
        return RunControlled(
            answer=answer,
            finished=tuple(run_control.take_ended(store)),
            status=None if run is None else run.status,
        )

    def _apply(self, store: SqliteStore, request: JobStoreRequest, now: float) -> Any:
        if isinstance(request, JournalRequest) and self.journal is not None:
            return self.journal.apply(store, request, now)
        match request:
            case Enqueue(jobs=jobs):
                done = tuple(store.enqueue(j, now=now, dedupe_ttl=self.dedupe_ttl) for j in jobs)
                register_callbacks(
                    store.conn, ((j, e.duplicate) for j, e in zip(jobs, done, strict=True))
                )
                return done
            case EnqueueFollowUp(job=new):
                made = session_rows.enqueue_follow_up(
                    store, new, now=now, dedupe_ttl=self.dedupe_ttl
                )
                if isinstance(made, Job):
                    register_callbacks(store.conn, ((new, False),))
                return made
            case Claim(capacity=capacity, limit=limit):
                claimed, next_due = store.claim(capacity, limit, now=now)
                return ClaimResult(jobs=tuple(claimed), next_due=next_due)
            case Settle(
                job_id=job_id,
                attempt=attempt,
                outcome=outcome,
                policy=policy,
                facts=facts,
                changes=changes,
                pull_request=pull_request,
            ):
                job = store.get_job(job_id)
                if job is None or job.attempt != attempt or job.status is not JobStatus.RUNNING:
                    return None
                if self.journal is not None and outcome.response is not None:
                    # Before the status change, so a stream shows them in the order
                    # they happened: said during the run, then the end of the run.
                    self.journal.record_logs(store, job_id, outcome.response.logs, now)
                state = store.get_states([job.plugin]).get(job.plugin, {})
                settlement = settle(job, outcome, now=now, policy=policy, state=state, facts=facts)
                if isinstance(pull_request, PullRequest) and job.workspace_id is not None:
                    workspace_rows.record_pull_request(
                        store.conn, job.workspace_id, job_id, pull_request
                    )
                return store.settle(
                    job_id,
                    attempt,
                    settlement,
                    now=now,
                    changes=changes,
                    pull_request=(
                        {"error": pull_request}
                        if isinstance(pull_request, str)
                        else None
                        if pull_request is None
                        else pull_request.to_json()
                    ),
                )
            case RouteSettled(planner=planner, limit=limit):
                return self._route(store, planner, limit, now)
            case EnqueueWebhook(endpoint=endpoint, delivery_id=delivery_id, plan=plan):
                return store.enqueue_webhook(
                    endpoint,
                    delivery_id,
                    plan,
                    now=now,
                    replay_ttl=self.dedupe_ttl,
                    dedupe_ttl=self.dedupe_ttl,
                )
            case EnqueuePlan(plan=plan, paused=paused):
                if paused:
                    run_control.start_paused(store.conn, plan, now=now)
                return tuple(store.apply_plan(plan, now=now, dedupe_ttl=self.dedupe_ttl))
            case TreePending(root_ids=root_ids):
                return {root: store.tree_pending(root) for root in root_ids}
            case GetTree(job_id=job_id):
                root = store.root_of(job_id)
                if root is None:
                    return None
                members, notes = store.tree(root)
                return Tree(root_job_id=root, jobs=tuple(members), notes=tuple(notes))
            case CancelQueued(job_id=job_id, reason=reason):
                return store.cancel_queued(job_id, now=now, reason=reason)
            case BuryQueued(plugins=plugins, reason=reason):
                return tuple(store.bury_queued(plugins, now=now, reason=reason))
            case RecoverOrphans(plugin=plugin):
                return tuple(store.recover_orphans(now=now, plugin=plugin))
            case GetJob(job_id=job_id) | WaitJob(job_id=job_id):
                return store.get_job(job_id)
            case ListJobs(filter=flt):
                found, total = store.list_jobs(flt)
                return tuple(found), total
            case QueueDepth():
                return store.queue_depth()
            case LoadSchedules():
                return schedule_books.load(store.conn)
            case OutstandingJobs(keys=keys):
                return schedule_books.outstanding(store.conn, keys)
            case CommitSchedules(jobs=jobs):
                done = tuple(store.enqueue(j, now=now, dedupe_ttl=self.dedupe_ttl) for j in jobs)
                schedule_books.save(
                    store.conn,
                    books=request.books,
                    breakers=request.breakers,
                    forget=request.forget,
                    forget_breakers=request.forget_breakers,
                    now=now,
                )
                return done
            case JobStatuses(job_ids=job_ids):
                return schedule_books.statuses(store.conn, job_ids)
            case RunningJobs():
                return tuple(store.running_jobs())
            # -- secrets ------------------------------------------------------------
            case CreateSecret():
                return secret_rows.create(
                    store.conn,
                    name=request.name,
                    description=request.description,
                    sealed=request.sealed,
                    hint=request.hint,
                    check=request.check,
                    now=now,
                )
            case RotateSecret():
                return secret_rows.rotate(
                    store.conn,
                    name=request.name,
                    sealed=request.sealed,
                    hint=request.hint,
                    check=request.check,
                    now=now,
                    description=request.description,
                    keep_description=request.keep_description,
                )
            case DeleteSecret(name=name):
                return secret_rows.delete(store.conn, name)
            case GetSecret(name=name):
                return secret_rows.get(store.conn, name)
            case ListSecrets():
                return secret_rows.list_all(store.conn)
            # -- MCP servers ----------------------------------------------------------
            case CreateMcpServer(server=server):
                return mcp_rows.create(store.conn, server)
            case ListMcpServers(names=names):
                return tuple(mcp_rows.list_servers(store.conn, names))
            case DeleteMcpServer(name=name):
                return mcp_rows.delete(store.conn, name)
            # -- workspaces -------------------------------------------------------------
            case TouchWorkspace(workspace_id=workspace_id, size_bytes=size_bytes):
                return workspace_rows.touch(
                    store.conn, workspace_id, size_bytes=size_bytes, now=now
                )
            case ListWorkspaces():
                return tuple(workspace_rows.list_all(store.conn))
            case GetWorkspace(workspace_id=workspace_id):
                return workspace_rows.get(store.conn, workspace_id)
            case WorkspaceUsage():
                return workspace_rows.usage(store.conn)
            case DeleteWorkspace(workspace_id=workspace_id):
                return workspace_rows.delete(store.conn, workspace_id)
            case BranchHolder(repository=repository, branch=branch):
                return workspace_rows.holding_branch(store.conn, repository, branch)
            case RecordPullRequest(
                workspace_id=workspace_id, job_id=job_id, pull_request=pull_request
            ):
                workspace_rows.record_pull_request(store.conn, workspace_id, job_id, pull_request)
                return None
            # -- runs -------------------------------------------------------------------
            case GetRun(run_id=run_id):
                return run_rows.get(store.conn, run_id)
            case ListRuns(pipeline=pipeline, statuses=statuses, limit=limit, offset=offset):
                runs, total = run_rows.page(
                    store.conn, pipeline=pipeline, statuses=statuses, limit=limit, offset=offset
                )
                return tuple(runs), total
            case ActOnRun(run_id=run_id, action=action, actor=actor, stop_running=stop):
                return self._controlled(
                    store,
                    lambda gates: run_control.act(
                        store,
                        run_id,
                        action,
                        actor=actor,
                        gates=gates,
                        now=now,
                        dedupe_ttl=self.dedupe_ttl,
                        stop_running=stop,
                    ),
                    run_id=run_id,
                )
            case DecideStep(run_id=run_id, step_id=step_id, word=word):
                return self._controlled(
                    store,
                    lambda gates: run_control.approve(
                        store, run_id, step_id, word, gates=gates, now=now
                    ),
                    run_id=run_id,
                )
            case ReportCi(signal=signal, run_id=for_run):
                return self._controlled(
                    store,
                    lambda gates: run_control.ci_report(
                        store,
                        signal,
                        run_id=for_run,
                        gates=gates,
                        now=now,
                        dedupe_ttl=self.dedupe_ttl,
                    ),
                    empty=(),
                )
            case RunEvents(run_id=run_id, kinds=kinds, after_id=after_id, limit=limit):
                return tuple(
                    job_messages.run_events(
                        store.conn, run_id, kinds=kinds, after_id=after_id, limit=limit
                    )
                )
            # -- repositories added through the API ------------------------------------
            case AddRepository(name=name, spec=spec):
                return repository_rows.create(store.conn, name, spec, now=now)
            case ListAddedRepositories():
                return tuple(repository_rows.list_all(store.conn))
            case RemoveRepository(name=name):
                if workspace_rows.using_repository(store.conn, name):
                    return RepositoryRefusal.IN_USE
                if not repository_rows.delete(store.conn, name):
                    return RepositoryRefusal.UNKNOWN
                return None
            case ListFacts(plugin=plugin, fact_type=fact_type, limit=limit):
                return tuple(
                    plugin_facts.newest(store.conn, plugin, fact_type=fact_type, limit=limit)
                )
        raise TypeError(f"unknown request {request!r}")
