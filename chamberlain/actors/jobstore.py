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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import trio

from chamberlain.actors.journal import Journal, News
from chamberlain.actors.mail import (
    CancelQueued,
    Claim,
    ClaimResult,
    CommitSchedules,
    Enqueue,
    EnqueuePlan,
    EnqueueWebhook,
    GetJob,
    GetTree,
    JobStatuses,
    JobStoreRequest,
    JournalRequest,
    ListJobs,
    LoadSchedules,
    OutstandingJobs,
    QueueDepth,
    RecoverOrphans,
    RouteSettled,
    RunningJobs,
    Settle,
    TreePending,
    WaitJob,
)
from chamberlain.actors.mailbox import Waiters
from chamberlain.plugins.strays import kill_job_processes
from chamberlain.records import Job, RoutePlan, Tree
from chamberlain.retry import settle
from chamberlain.routing.planner import routing_error
from chamberlain.store import schedule_books
from chamberlain.store.callback_queue import register_callbacks
from chamberlain.store.sqlite import SqliteStore

log = logging.getLogger("chamberlain.jobstore")

T = TypeVar("T")

MAX_BATCH = 512
#: How often terminal jobs past ``service.job_retention`` are deleted.
PRUNE_INTERVAL = 3600.0


# -- the actor -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JobStoreStatistics:
    """What the JobStore has done, and what it holds for callers."""

    batches: int
    requests: int
    busy_seconds: float
    #: WaitJob replies parked on unfinished jobs (callers that gave up included,
    #: until they are swept out).
    waiters: int


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
    dedupe_ttl: float = 86400.0
    job_retention: float = 30 * 86400.0
    now: Callable[[], float] = time.time
    #: Run SQL in a worker thread so an fsync never stalls the event loop.  Off only
    #: for tests on trio's autojump clock, which would jump ahead while a thread works.
    offload: bool = True
    #: Records job messages and callback deliveries in each transaction and
    #: announces them once it commits (see chamberlain.actors.journal).
    journal: Journal | None = None
    _store: SqliteStore | None = attrs.field(default=None, init=False)
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

    async def run(
        self,
        mailbox: trio.MemoryReceiveChannel[JobStoreRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the database, recover orphans, then serve requests until cancelled."""
        store = await self._call(SqliteStore, self.path)
        self._store = store
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
            # Jobs that succeeded just before a crash may not have been routed yet.
            self.wake_router()
            if orphans:
                # After a SIGKILL their processes may still be running: they must not
                # overlap the new attempt.
                await self._call(kill_job_processes, [j.id for j in orphans])
                self.wake_dispatcher()
            task_status.started()
            next_prune = trio.current_time()
            while True:
                first: JobStoreRequest | None = None
                with trio.move_on_at(next_prune):
                    first = await mailbox.receive()
                if first is None:
                    self._waiters.prune()
                    pruned = await self._in_thread(self._prune)
                    if pruned:
                        log.info("pruned %d old jobs", pruned, extra={"component": "jobstore"})
                    next_prune = trio.current_time() + PRUNE_INTERVAL
                    continue
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(mailbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._serve(batch)
        finally:
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
                },
            )
            # Closing is quick (a WAL checkpoint); shield it so a cancelled daemon
            # still leaves a tidy file, but never wait on it forever.
            with trio.move_on_after(10) as cleanup:
                cleanup.shield = True
                await self._call(store.close)

    def statistics(self) -> JobStoreStatistics:
        """A snapshot of the counters."""
        return JobStoreStatistics(
            batches=self.batches,
            requests=self.requests,
            busy_seconds=self.busy,
            waiters=len(self._waiters),
        )

    # -- internals -----------------------------------------------------------------

    async def _in_thread(self, fn: Callable[[SqliteStore, float], Any]) -> Any:
        """Run ``fn(store, now)`` in one transaction on the worker thread."""
        store = self._store
        assert store is not None
        # Read the clock here, not in the thread: the clock may be trio's.
        now = self.now()

        journal = self.journal

        def transaction() -> tuple[Any, News | None]:
            store.begin()
            try:
                mark = journal.mark(store) if journal is not None else 0
                value = fn(store, now)
                news = journal.collect(store, mark, now) if journal is not None else None
                store.commit()
            except BaseException:
                store.rollback()
                raise
            return value, news

        value, news = await self._call(transaction)
        if journal is not None and news is not None:
            journal.publish(news)
        return value

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.offload:
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _recover_all(self, store: SqliteStore, now: float) -> list[Job]:
        return store.recover_orphans(now=now)

    def _prune(self, store: SqliteStore, now: float) -> int:
        store.prune_deliveries(older_than=now - self.dedupe_ttl)
        return store.prune(older_than=now - self.job_retention)

    async def _serve(self, batch: list[JobStoreRequest]) -> None:
        started = time.perf_counter()
        outcomes = await self._in_thread(lambda store, now: self._execute(store, batch, now))
        self.busy += time.perf_counter() - started
        self.batches += 1
        self.requests += len(batch)
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
                store.apply_plan(planner(job, now), now=now, dedupe_ttl=self.dedupe_ttl)
            except Exception as exc:
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
            case Claim(capacity=capacity, limit=limit):
                claimed, next_due = store.claim(capacity, limit, now=now)
                return ClaimResult(jobs=tuple(claimed), next_due=next_due)
            case Settle(job_id=job_id, attempt=attempt, outcome=outcome, policy=policy):
                job = store.get_job(job_id)
                if job is None or job.attempt != attempt:
                    return None
                state = store.get_states([job.plugin]).get(job.plugin, {})
                settlement = settle(job, outcome, now=now, policy=policy, state=state)
                return store.settle(job_id, attempt, settlement, now=now)
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
            case EnqueuePlan(plan=plan):
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
        raise TypeError(f"unknown request {request!r}")
