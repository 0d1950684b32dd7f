"""Inbound webhook endpoints: one route per ``webhooks.endpoints`` entry.

The routes are public in the route-table sense (no bearer token: senders like
GitHub cannot send one) and guarded by the delivery's signature instead, checked
in constant time before anything is enqueued.  Order of checks: the body's size
while reading (413, the rest is never read), the signature (403, nothing else
said), the body's JSON (400: JSON that breaks the rules every JSON body follows;
a body that is not JSON is kept as text), the daemon's state (503), then the
replay check and the enqueue, answered
202 at once (GitHub gives up on slow answers) or 200 for a replayed delivery.  The
event a delivery becomes is stamped by the daemon's clock.

An endpoint's ``secret`` may be a ``${secret:name}`` reference: it is resolved from
the daemon's vault for each delivery, so a rotated secret checks the next one.  A
reference the registry no longer holds answers 503 and logs why: the delivery may
be genuine, and the sender's retry can succeed once the secret is back.

The routes depend on the configuration, so :func:`webhook_routes` builds them;
:data:`SCHEMAS` holds what they refer to.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import attrs

from chamberlain.config import WebhookEndpointConfig, WebhooksConfig
from chamberlain.jsoncodec import JsonRefused
from chamberlain.records import NewJob, RoutePlan
from chamberlain.vault import UnknownSecret
from chamberlain.web.auth import PUBLIC
from chamberlain.web.errors import ApiError, unavailable
from chamberlain.web.handler import Call, Handler, Reply
from chamberlain.web.intake import DISK_FULL, NOT_ACCEPTING_RESPONSE, json_refusal, not_accepting
from chamberlain.web.spec import BodySpec, ResponseSpec, Route
from chamberlain.webhook_rules import Forbidden, delivery_event, verify_delivery

log = logging.getLogger("chamberlain.web")

_RESPONSES = (
    ResponseSpec(
        status=202, description="Accepted: the job is committed.", schema="WebhookAccepted"
    ),
    ResponseSpec(
        status=200,
        description="A replay of a delivery seen within service.dedupe_ttl: nothing enqueued.",
        schema="WebhookAccepted",
    ),
    ResponseSpec(
        status=400,
        description=(
            "JSON that every JSON body is refused for: a lone surrogate, a duplicate key,"
            " a number out of range, an integer too long, nesting deeper than 64 levels."
        ),
    ),
    ResponseSpec(status=413, description="The body is larger than the endpoint's max_body_size."),
    ResponseSpec(status=403, description="Missing, malformed or wrong signature."),
    attrs.evolve(
        NOT_ACCEPTING_RESPONSE,
        description=(
            f"{NOT_ACCEPTING_RESPONSE.description} Also when the endpoint's secret is a"
            " ${secret:name} the registry does not hold (the daemon logs which)."
        ),
    ),
    DISK_FULL,
)

SCHEMAS: dict[str, Any] = {
    "WebhookAccepted": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": "string"},
            "duplicate": {"type": "boolean"},
        },
        "required": ["job_id", "status"],
    },
    "WebhookBody": {"description": "Whatever the sender posts; JSON is parsed, other text kept."},
}


def _handler(endpoint: WebhookEndpointConfig) -> Handler:
    target = endpoint.pipeline or f"{endpoint.plugin}.{endpoint.command}"

    async def receive(call: Call) -> Reply:
        body = await call.read_body()
        try:
            secret = call.gateway.vault.resolve(endpoint.secret)
        except UnknownSecret as missing:
            log.error(
                "webhook %s cannot check deliveries: %s",
                endpoint.path,
                missing,
                extra={"component": "webhooks", "path": endpoint.path},
            )
            raise unavailable("the endpoint's secret is not available") from None
        checked = endpoint if secret is endpoint.secret else attrs.evolve(endpoint, secret=secret)
        try:
            delivery = verify_delivery(checked, call.headers, body)
        except Forbidden as refused:
            log.warning(
                "webhook %s refused: %s",
                endpoint.path,
                refused,
                extra={"component": "webhooks", "path": endpoint.path},
            )
            raise ApiError(403, "forbidden") from None
        now = call.site.now()
        try:
            event = delivery_event(endpoint, delivery, body, event_id=str(uuid.uuid4()), now=now)
        except JsonRefused as exc:
            raise json_refusal(exc) from None
        refusal = not_accepting(call.gateway.lifecycle)
        if refusal is not None:
            raise refusal
        submitted_by = f"webhook:{endpoint.path}"
        if endpoint.pipeline is not None:
            pipeline = call.gateway.routing.pipeline(endpoint.pipeline)
            assert pipeline is not None, "checked at start-up"
            plan = call.gateway.routing.start(
                pipeline, event["payload"], submitted_by=submitted_by, now=now, event=event
            )
        else:
            assert endpoint.plugin is not None
            plugin = call.gateway.plugins[endpoint.plugin]
            plan = RoutePlan(
                jobs=(
                    NewJob(
                        plugin=endpoint.plugin,
                        command=endpoint.command,
                        payload=event["payload"],
                        event=event,
                        submitted_by=submitted_by,
                        max_attempts=plugin.max_attempts,
                        source_event_id=event["event_id"],
                        # Stored failed, not refused: the sender cannot change what it
                        # sends, and the delivery stays on record with the reason.
                        error=plugin.payload_problem(endpoint.command, event["payload"]),
                    ),
                )
            )
        job, replay = await call.gateway.enqueue_webhook(endpoint.path, delivery.delivery_id, plan)
        if job is None:
            return Reply({"status": "skipped", "message": "every step's if: was false"}, 200)
        extra = {"component": "webhooks", "path": endpoint.path, "job_id": job.id}
        if replay:
            log.info(
                "webhook %s: replayed delivery %s", endpoint.path, delivery.delivery_id, extra=extra
            )
            return Reply({"job_id": job.id, "status": job.status.value, "duplicate": True}, 200)
        log.info("webhook %s: %s -> %s", endpoint.path, delivery.event_type, target, extra=extra)
        return Reply({"job_id": job.id, "status": job.status.value}, 202)

    return receive


def webhook_routes(webhooks: WebhooksConfig) -> tuple[Route, ...]:
    """The routes of the configured endpoints."""
    routes = []
    for index, endpoint in enumerate(webhooks.endpoints):
        target = (
            f"pipeline {endpoint.pipeline}"
            if endpoint.pipeline
            else f"{endpoint.plugin}/{endpoint.command}"
        )
        routes.append(
            Route(
                operation_id=f"webhook{index}",
                method="POST",
                path=endpoint.path,
                handler=_handler(endpoint),
                access=PUBLIC,
                summary=f"{endpoint.kind} webhook: starts {target}",
                description=(
                    "No bearer token: the delivery's signature is checked instead"
                    f" ({endpoint.kind}). Answers 202 with the job id at once."
                ),
                tag="webhooks",
                body=BodySpec(schema="WebhookBody", description="The sender's payload."),
                responses=_RESPONSES,
                body_limit=endpoint.max_body_size,
            )
        )
    return tuple(routes)
