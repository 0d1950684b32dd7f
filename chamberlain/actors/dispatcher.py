"""The Dispatcher actor: decides which queued jobs run now, and hands them to Runners.

It never scans the table and never polls.  It claims jobs from the JobStore only
when something changed (jobs were enqueued, a job finished, a retry fell due) and
then sleeps until the next message or until the earliest future ``run_at`` the
claim reported.  Its books (which jobs are in flight) can always be rebuilt from
the store, which is exactly what a restarted Dispatcher does.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping

import attrs
import trio

from chamberlain.actors.mail import (
    CancelJob,
    CancelQueued,
    Claim,
    ClaimResult,
    Converse,
    DispatcherRequest,
    DispatcherStatistics,
    Drain,
    JobStoreRequest,
    Limit,
    Released,
    Run,
    RunnerRequest,
    RunningJobs,
    Statistics,
    Terminate,
    Wake,
)
from chamberlain.actors.mailbox import ReplyTo, RequestFailed, call
from chamberlain.plugins.protocol import TerminationReason
from chamberlain.records import CancelResult, Job, SessionRefusal, SessionReply

log = logging.getLogger("chamberlain.dispatcher")


# -- decisions -------------------------------------------------------------------------


@attrs.define(eq=False)
class InFlight:
    """Which jobs are in flight, and the room left under each limit.  Pure logic."""

    max_workers: int
    parallelism: Mapping[str, int]
    inflight: dict[str, str] = attrs.field(factory=dict)  # job id -> plugin

    def capacity(self) -> tuple[dict[str, int], int]:
        """Room per plugin and in all; a claim asks for no more than this."""
        per_plugin = Counter(self.inflight.values())
        room = {p: n - per_plugin[p] for p, n in self.parallelism.items() if n > per_plugin[p]}
        return room, max(0, self.max_workers - len(self.inflight))

    def started(self, job_id: str, plugin: str) -> None:
        """Count a claimed job as in flight."""
        self.inflight[job_id] = plugin

    def released(self, job_id: str) -> bool:
        """Stop counting a job; False when it was not counted (a stale report)."""
        return self.inflight.pop(job_id, None) is not None


# -- the actor -------------------------------------------------------------------------


@attrs.define(eq=False)
class Dispatcher:
    """FIFO, due-time aware dispatch under ``max_workers`` and per-plugin parallelism."""

    store: trio.MemorySendChannel[JobStoreRequest]
    runners: Mapping[str, trio.MemorySendChannel[RunnerRequest]]
    max_workers: int
    parallelism: Mapping[str, int]
    now: Callable[[], float] = time.time
    _books: InFlight | None = attrs.field(default=None, init=False)
    _draining: list[ReplyTo[None]] | None = attrs.field(default=None, init=False)
    #: Cancel requests for jobs not in flight: they need the store, so they wait
    #: until the messages already received have been applied.
    _cancels: list[CancelJob] = attrs.field(factory=list, init=False)
    #: Running jobs already told to stop, so repeated cancels send one Terminate.
    _terminating: set[str] = attrs.field(factory=set, init=False)
    claims: int = attrs.field(default=0, init=False)

    async def run(
        self,
        mailbox: trio.MemoryReceiveChannel[DispatcherRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Rebuild the books from the store, then dispatch until cancelled."""
        books = InFlight(max_workers=self.max_workers, parallelism=self.parallelism)
        running: tuple[Job, ...] = await call(self.store, lambda r: RunningJobs(reply=r))
        for job in running:
            if job.plugin in self.parallelism:
                books.started(job.id, job.plugin)
        self._books = books
        task_status.started()
        claim_needed = True
        next_due: float | None = None
        while True:
            if claim_needed and self._draining is None:
                next_due = await self._claim(books)
                claim_needed = False
            deadline = math.inf
            if next_due is not None:
                deadline = trio.current_time() + max(0.0, next_due - self.now())
            message: DispatcherRequest | None = None
            with trio.move_on_at(deadline):
                message = await mailbox.receive()
            if message is None:  # a future job fell due
                claim_needed = True
                continue
            claim_needed |= self._handle(message, books)
            # Take everything else already waiting before claiming once for all.
            while True:
                try:
                    claim_needed |= self._handle(mailbox.receive_nowait(), books)
                except trio.WouldBlock:
                    break
            while self._cancels:
                await self._cancel_queued(self._cancels.pop(0))

    def _handle(self, message: DispatcherRequest, books: InFlight) -> bool:
        """Apply one message; True when it may have made room or work."""
        match message:
            case Wake():
                return True
            case Released(job_id=job_id):
                books.released(job_id)
                self._terminating.discard(job_id)
                self._answer_drain(books)
                return True
            case CancelJob(job_id=job_id, reply=reply):
                plugin = books.inflight.get(job_id)
                runner = None if plugin is None else self.runners.get(plugin)
                if runner is None:
                    # Not in flight; or its Runner, retired by a reload, is gone and
                    # its Released is still on the way: the store knows how it ended.
                    self._cancels.append(message)
                    return False
                if job_id not in self._terminating:
                    self._terminating.add(job_id)
                    # The Run for this job went into the same mailbox earlier, so the
                    # Runner knows the job by the time it reads this.
                    runner.send_nowait(Terminate(reason=TerminationReason.CANCELLED, job_id=job_id))
                reply.send(CancelResult(job=None, was_running=True, accepted=True))
                return False
            case Converse(job_id=job_id, reply=reply):
                plugin = books.inflight.get(job_id)
                runner = None if plugin is None else self.runners.get(plugin)
                if runner is None:
                    reply.send(SessionReply(job_id=job_id, refused=SessionRefusal.NOT_RUNNING))
                else:
                    # Behind the job's Run in the Runner's mailbox, as a Terminate is.
                    runner.send_nowait(message)
                return False
            case Drain(reply=reply):
                if self._draining is None:
                    self._draining = []
                    log.info(
                        "draining: no new jobs start; %d in flight",
                        len(books.inflight),
                        extra={"component": "dispatcher"},
                    )
                self._draining.append(reply)
                self._answer_drain(books)
                return False
            case Statistics(reply=reply):
                reply.send(self.statistics())
                return False
            case Limit(max_workers=max_workers, parallelism=parallelism, reply=reply):
                self.max_workers = books.max_workers = max_workers
                self.parallelism = books.parallelism = dict(parallelism)
                reply.send(None)
                # More room, or a new plugin: its queued jobs may start now.
                return True
        raise TypeError(f"unknown message {message!r}")

    async def _cancel_queued(self, request: CancelJob) -> None:
        try:
            answer: tuple[Job | None, bool] = await call(
                self.store,
                lambda r: CancelQueued(job_id=request.job_id, reason="cancelled", reply=r),
            )
        except RequestFailed as failed:
            # The store refused it (a full disk): the caller hears why; nothing changed.
            cause = failed.__cause__
            request.reply.fail(cause if isinstance(cause, Exception) else failed)
            return
        job, cancelled = answer
        request.reply.send(CancelResult(job=job, was_running=False, accepted=cancelled))

    def _answer_drain(self, books: InFlight) -> None:
        if self._draining and not books.inflight:
            for reply in self._draining:
                reply.send(None)
            self._draining.clear()

    async def _claim(self, books: InFlight) -> float | None:
        room, limit = books.capacity()
        if limit == 0 or not room:
            # Nothing can start; a Released message will bring us back.  We still
            # want to know when future jobs fall due, but a full house makes that moot.
            return None
        result: ClaimResult = await call(
            self.store, lambda r: Claim(capacity=room, limit=limit, reply=r)
        )
        self.claims += 1
        for claimed in result.jobs:
            job = claimed.job
            books.started(job.id, job.plugin)
            # Runners' mailboxes are unbounded: this cannot block.  A Runner exists for
            # every plugin in ``parallelism``, the only ones the store is asked for.
            self.runners[job.plugin].send_nowait(Run(claimed=claimed))
        return result.next_due

    def statistics(self) -> DispatcherStatistics:
        """A snapshot of the books."""
        books = self._books
        inflight = books.inflight if books else {}
        return DispatcherStatistics(
            running=len(inflight),
            running_by_plugin=dict(Counter(inflight.values())),
            max_workers=self.max_workers,
            draining=self._draining is not None,
            claims=self.claims,
        )
