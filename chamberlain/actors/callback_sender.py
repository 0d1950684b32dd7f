"""The callback sender: delivers the deliveries the JobStore recorded.

Like the Dispatcher it never polls and keeps no state the store cannot rebuild.
It asks the JobStore for the deliveries that are due (``DueCallbacks``), attempts
each in its own task with httpx, records every attempt's outcome
(``RecordCallbackAttempt``), and then sleeps until the next message (a job with a
callback ended, or an attempt finished) or until the next retry falls due.

Every attempt of one delivery sends the same stored body with the same
``X-Chamberlain-Delivery`` id, so a receiver can drop repeats.  An attempt cut off
by a crash is simply made again after the restart: delivery is at least once.

``callbacks.secret`` may be a ``${secret:name}`` reference; it is resolved from the
vault for each attempt, so a rotated secret signs the next attempt.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING

import attrs
import trio

from chamberlain.actors.mail import (
    CallbacksDue,
    DueCallbacks,
    JobStoreRequest,
    RecordCallbackAttempt,
)
from chamberlain.actors.mailbox import call
from chamberlain.callback_rules import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    AllowList,
    CallbackDelivery,
    CallbackPolicy,
    CallbackState,
    Verdict,
    check_callback_url,
    judge,
    sign,
)
from chamberlain.config import CallbacksConfig
from chamberlain.instruments import Metrics
from chamberlain.vault import UnknownSecret, Vault

if TYPE_CHECKING:
    # Imported when the first delivery is due (see CallbackSender.run): httpx and
    # what it pulls in are about 5 MB of RSS, and many daemons never send a callback.
    import httpx

log = logging.getLogger("chamberlain.callback_rules")

#: Deliveries attempted at once: receivers are often small services; a burst of
#: finished jobs should queue here rather than hammer them.
MAX_CONCURRENT = 8


def _user_agent() -> str:
    try:
        return f"chamberlain/{metadata.version('chamberlain')}"
    except metadata.PackageNotFoundError:
        return "chamberlain"


def policy_of(config: CallbacksConfig) -> CallbackPolicy:
    """The delivery policy ``callbacks:`` configures."""
    return CallbackPolicy(
        max_attempts=config.max_attempts,
        backoff_base=config.backoff_base,
        backoff_max=config.backoff_max,
        timeout=config.timeout,
    )


@attrs.define(eq=False)
class CallbackSender:
    """Attempts due deliveries; see the module docstring."""

    store: trio.MemorySendChannel[JobStoreRequest]
    config: CallbacksConfig
    #: Rings this actor's own mailbox (without blocking) when an attempt is over.
    wake: Callable[[], None]
    metrics: Metrics | None = None
    now: Callable[[], float] = time.time
    #: Resolves a ``${secret:name}`` in ``callbacks.secret``.
    vault: Vault = attrs.field(factory=Vault)
    #: Tests hand in an in-process transport; None sends over the network.
    transport: httpx.AsyncBaseTransport | None = None
    max_concurrent: int = MAX_CONCURRENT
    _busy: set[str] = attrs.field(factory=set, init=False)
    attempts: int = attrs.field(default=0, init=False)

    async def run(
        self,
        mailbox: trio.MemoryReceiveChannel[CallbacksDue],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver until cancelled, starting with whatever was pending at start-up."""
        configured = self.config
        policy = policy_of(configured)
        allow = AllowList.from_entries(configured.allowed_hosts)
        self._busy.clear()
        clients: list[httpx.AsyncClient] = []

        def client() -> httpx.AsyncClient:
            # Made at the first due delivery, closed when the actor stops (after
            # the nursery, so after every attempt using it).
            if not clients:
                import httpx

                made = httpx.AsyncClient(
                    timeout=policy.timeout,
                    follow_redirects=False,
                    # The allow-list decides where bodies go: no proxy from the
                    # environment.
                    trust_env=False,
                    transport=self.transport,
                    headers={"User-Agent": _user_agent()},
                )
                stack.push_async_callback(made.aclose)
                clients.append(made)
            return clients[0]

        async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                if self.config is not configured:
                    # A reload replaced the section: the next attempts follow it.
                    configured = self.config
                    policy = policy_of(configured)
                    allow = AllowList.from_entries(configured.allowed_hosts)
                next_due = await self._start_due(nursery, client, policy, allow)
                deadline = math.inf
                if next_due is not None:
                    deadline = trio.current_time() + max(0.0, next_due - self.now())
                with trio.move_on_at(deadline):
                    await mailbox.receive()
                while True:
                    try:
                        mailbox.receive_nowait()
                    except trio.WouldBlock:
                        break

    async def _start_due(
        self,
        nursery: trio.Nursery,
        client: Callable[[], httpx.AsyncClient],
        policy: CallbackPolicy,
        allow: AllowList,
    ) -> float | None:
        room = self.max_concurrent - len(self._busy)
        if room <= 0:
            return None  # an attempt ending will wake us
        busy = frozenset(self._busy)
        answer: tuple[tuple[CallbackDelivery, ...], float | None] = await call(
            self.store, lambda r: DueCallbacks(limit=room, busy=busy, reply=r)
        )
        due, next_due = answer
        for delivery in due:
            self._busy.add(delivery.id)
            nursery.start_soon(self._deliver, client(), delivery, policy, allow)
        return next_due

    async def _deliver(
        self,
        client: httpx.AsyncClient,
        delivery: CallbackDelivery,
        policy: CallbackPolicy,
        allow: AllowList,
    ) -> None:
        try:
            verdict, status_code, error = await self._attempt(client, delivery, allow)
            self.attempts += 1
            attempts = delivery.attempts + 1
            next_at = policy.next_attempt(attempts, verdict, now=self.now())
            if verdict is Verdict.DELIVERED:
                state = CallbackState.DELIVERED
            elif next_at is not None:
                state = CallbackState.PENDING
            else:
                state = CallbackState.FAILED
            if self.metrics is not None:
                self.metrics.callback_attempts.labels(verdict.value).inc()
            await call(
                self.store,
                lambda r: RecordCallbackAttempt(
                    delivery_id=delivery.id,
                    state=state,
                    next_attempt_at=next_at,
                    status_code=status_code,
                    error=error,
                    reply=r,
                ),
            )
            extra = {
                "component": "callbacks",
                "job_id": delivery.job_id,
                "delivery_id": delivery.id,
                "status_code": status_code,
            }
            if state is CallbackState.DELIVERED:
                log.info("callback delivered (attempt %d)", attempts, extra=extra)
            elif state is CallbackState.PENDING:
                log.warning(
                    "callback attempt %d failed (%s); next in %.1fs",
                    attempts,
                    error or f"HTTP {status_code}",
                    (next_at or 0.0) - self.now(),
                    extra=extra,
                )
            else:
                log.error(
                    "callback given up after %d attempts (%s)",
                    attempts,
                    error or f"HTTP {status_code}",
                    extra=extra,
                )
        finally:
            self._busy.discard(delivery.id)
            self.wake()

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: CallbackDelivery, allow: AllowList
    ) -> tuple[Verdict, int | None, str | None]:
        """Make one attempt: the verdict, the HTTP status (if any) and an error text."""
        configured = self.config.secret
        if configured is None:
            return Verdict.FINAL, None, "callbacks.secret is not configured; nothing was sent"
        try:
            secret = self.vault.resolve(configured)
        except UnknownSecret as missing:
            # Deleted since start-up: worth trying again once it is registered again.
            return Verdict.RETRY, None, f"callbacks.secret: {missing}; nothing was sent"
        try:
            check_callback_url(delivery.url, allow)
        except ValueError as exc:
            # The configuration changed since the trigger was accepted.
            return Verdict.FINAL, None, f"{exc}; nothing was sent"
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: delivery.id,
            SIGNATURE_HEADER: sign(secret, delivery.body),
        }
        import httpx  # loaded by now: ``client`` is one

        try:
            response = await client.post(
                delivery.url,
                content=delivery.body,
                headers=headers,
                # The section's now: a reload may have changed it since the client was made.
                timeout=self.config.timeout,
            )
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            return Verdict.RETRY, None, f"{reason}: {exc}" if str(exc) else reason
        verdict = judge(response.status_code)
        error = None
        if verdict is not Verdict.DELIVERED:
            error = f"HTTP {response.status_code}"
            if 300 <= response.status_code < 400:
                error += " (redirects are not followed)"
        return verdict, response.status_code, error
