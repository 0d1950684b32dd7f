"""The Router actor: finished jobs' events -> stored events, routes, pipeline steps.

The JobStore rings it after every commit that finished jobs.  It then asks the
store to apply the :class:`~chamberlain.pipelines.routing.Routing` plan of every
succeeded job not yet routed, in the transaction that marks the job routed: a
crash between "job succeeded" and "next step enqueued" is recovered by the next
ring (one is rung at every start), never lost and never doubled.

It also answers synchronous callers waiting for a whole tree: a tree is finished
when none of its jobs is queued, running, or succeeded-but-not-yet-routed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs
import trio

from chamberlain.actors.mailbox import ReplyTo, call
from chamberlain.actors.messages import (
    GetTree,
    JobStoreRequest,
    RouterRequest,
    RouteSettled,
    Tree,
    TreePending,
    WaitTree,
    WakeRouter,
)
from chamberlain.pipelines.routing import Routing

log = logging.getLogger("chamberlain.router")

#: Jobs routed per store request; more are taken in further requests at once.
BATCH = 256


@attrs.define(eq=False)
class Router:
    """Routes finished jobs and reports finished trees; see the module docstring."""

    store: trio.MemorySendChannel[JobStoreRequest]
    routing: Routing
    now: Callable[[], float] = time.time
    _waiters: dict[str, list[ReplyTo[Tree | None]]] = attrs.field(factory=dict, init=False)
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
        fresh: set[str] = set(self._waiters)
        while True:
            if ring:
                await self._route_all()
                fresh |= set(self._waiters)
            if fresh:
                await self._answer_finished(fresh)
            ring, fresh = False, set()
            message = await mailbox.receive()
            while True:
                match message:
                    case WakeRouter():
                        ring = True
                    case WaitTree(root_job_id=root, reply=reply):
                        self._waiters.setdefault(root, []).append(reply)
                        fresh.add(root)
                try:
                    message = mailbox.receive_nowait()
                except trio.WouldBlock:
                    break

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
            for reply in self._waiters.pop(root, ()):
                reply.send(tree)
