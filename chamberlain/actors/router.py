"""The Router actor: finished jobs' events -> stored events, routes, pipeline steps.

The JobStore rings it after every commit that finished jobs.  It then asks the
store to apply the :class:`~chamberlain.routing.planner.Routing` plan of every
ended job not yet routed (a succeeded one's events, next steps and hooks; a failed,
timed-out or dead one's ``on-hook`` pipelines), in the transaction that marks the
job routed: a crash between "job ended" and "next step enqueued" is recovered by
the next ring (one is rung at every start), never lost and never doubled.

It also answers synchronous callers waiting for a whole tree: a tree is finished
when none of its jobs is queued, running, or succeeded-but-not-yet-routed.  The
trees it looks at are those of callers still waiting: replies whose caller gave
up are dropped at every ring (and as more are parked), so abandoned waits cost
nothing for long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs
import trio

from chamberlain.actors.mail import (
    GetTree,
    JobStoreRequest,
    RouterRequest,
    RouteSettled,
    TreePending,
    WaitTree,
    WakeRouter,
)
from chamberlain.actors.mailbox import Waiters, call
from chamberlain.records import Tree
from chamberlain.routing.planner import Routing

log = logging.getLogger("chamberlain.router")

#: Jobs routed per store request; more are taken in further requests at once.
BATCH = 256


@attrs.frozen(kw_only=True)
class RouterStatistics:
    """What the Router has done, and what it holds for callers."""

    routed: int
    #: WaitTree replies parked on unfinished trees.
    waiters: int


@attrs.define(eq=False)
class Router:
    """Routes finished jobs and reports finished trees; see the module docstring."""

    store: trio.MemorySendChannel[JobStoreRequest]
    routing: Routing
    now: Callable[[], float] = time.time
    #: WaitTree replies parked until their tree finishes, by root job id.
    _waiters: Waiters[str, Tree | None] = attrs.field(factory=Waiters, init=False)
    routed: int = attrs.field(default=0, init=False)

    async def run(
        self,
        mailbox: trio.MemoryReceiveChannel[RouterRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Route what a previous run left, then serve rings and waiters until cancelled."""
        task_status.started()
        ring = True
        fresh: set[str] = set()
        while True:
            if ring:
                await self._route_all()
                # Every tree is looked at on a ring: the moment to forget those
                # nobody waits for any more.
                self._waiters.prune()
                fresh |= self._waiters.keys()
            if fresh:
                await self._answer_finished(fresh)
            ring, fresh = False, set()
            message = await mailbox.receive()
            while True:
                match message:
                    case WakeRouter():
                        ring = True
                    case WaitTree(root_job_id=root, reply=reply):
                        self._waiters.add(root, reply)
                        fresh.add(root)
                try:
                    message = mailbox.receive_nowait()
                except trio.WouldBlock:
                    break

    def statistics(self) -> RouterStatistics:
        """A snapshot of the counters."""
        return RouterStatistics(routed=self.routed, waiters=len(self._waiters))

    async def _route_all(self) -> None:
        planner = self.routing.plan
        while True:
            count: int = await call(
                self.store, lambda r: RouteSettled(planner=planner, limit=BATCH, reply=r)
            )
            self.routed += count
            if count < BATCH:
                return

    async def _tree(self, root: str) -> Tree | None:
        tree: Tree | None = await call(self.store, lambda r: GetTree(job_id=root, reply=r))
        return tree

    async def _answer_finished(self, roots: set[str]) -> None:
        ordered = tuple(sorted(roots))
        pending: dict[str, int] = await call(
            self.store, lambda r: TreePending(root_ids=ordered, reply=r)
        )
        for root, count in pending.items():
            if count:
                continue
            tree = await self._tree(root)
            for reply in self._waiters.pop(root):
                reply.send(tree)
