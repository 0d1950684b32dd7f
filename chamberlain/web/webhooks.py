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

import hashlib
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

import attrs

from chamberlain.config import WebhookEndpointConfig, WebhooksConfig
from chamberlain.jsoncodec import JsonRefused
from chamberlain.records import NewJob, RoutePlan
from chamberlain.runs import ci_signal
from chamberlain.vault import UnknownSecret
from chamberlain.web.auth import PUBLIC
from chamberlain.web.errors import ApiError, unavailable
from chamberlain.web.handler import Call, Handler, Reply
from chamberlain.web.intake import DISK_FULL, NOT_ACCEPTING_RESPONSE, json_refusal, not_accepting
from chamberlain.web.spec import BodySpec, Param, ResponseSpec, Route
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
    "CiReportAccepted": {
        "type": "object",
        "properties": {
            "matched": {"type": "boolean"},
            "reason": {"type": "string"},
            "sha": {"type": "string"},
            "state": {"enum": ["success", "failure", "pending"]},
            "runs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"run_id": {"type": "string"}, "step_id": {"type": "string"}},
                    "required": ["run_id", "step_id"],
                },
            },
        },
        "required": ["matched"],
    },
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
        if endpoint.ci:
            return await _ci_report(call, endpoint, event)
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


#: The header naming a delivery's event, by endpoint kind, as the forges send it.
_EVENT_HEADERS: Final = {"github": "X-GitHub-Event", "gitlab": "X-Gitlab-Event"}


async def _ci_report(
    call: Call, endpoint: WebhookEndpointConfig, event: Mapping[str, Any]
) -> Reply:
    """A ``ci: true`` endpoint's delivery: a CI report for the runs waiting on its
    commit (or on ``?run_id=``); 202 whether or not it matched, so the forge does
    not retry a report nobody waits for."""
    header = endpoint.event_type_header or _EVENT_HEADERS.get(endpoint.kind, "X-Event-Type")
    name = call.header(header) or ""
    payload = event.get("payload")
    signal = ci_signal(name, payload) if isinstance(payload, Mapping) else None
    extra = {"component": "webhooks", "path": endpoint.path}
    if signal is None:
        log.info("webhook %s: %r is no CI report for a commit", endpoint.path, name, extra=extra)
        return Reply({"matched": False, "reason": f"{name or 'the delivery'} is no CI report"}, 202)
    values = call.query.get("run_id", ())
    run_id = values[-1] if values else None
    matches = await call.gateway.report_ci(signal, run_id)
    log.info(
        "webhook %s: CI %s for %s matched %d run step(s)",
        endpoint.path,
        signal.state.value,
        signal.sha,
        len(matches),
        extra=extra,
    )
    return Reply(
        {
            "matched": bool(matches),
            "sha": signal.sha,
            "state": signal.state.value,
            "runs": [{"run_id": m.run_id, "step_id": m.step_id} for m in matches],
        },
        202,
    )


def operation_id(path: str) -> str:
    """The endpoint's route id: from its path alone, so it names the same endpoint
    across reloads whatever the others do; the digest keeps ``/a-b`` and ``/a/b`` apart."""
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"webhook_{words}_{hashlib.sha256(path.encode()).hexdigest()[:6]}"


def webhook_routes(webhooks: WebhooksConfig) -> tuple[Route, ...]:
    """The routes of the configured endpoints."""
    routes = []
    for endpoint in webhooks.endpoints:
        if endpoint.ci:
            routes.append(_ci_route(endpoint))
            continue
        target = (
            f"pipeline {endpoint.pipeline}"
            if endpoint.pipeline
            else f"{endpoint.plugin}/{endpoint.command}"
        )
        routes.append(
            Route(
                operation_id=operation_id(endpoint.path),
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


def _ci_route(endpoint: WebhookEndpointConfig) -> Route:
    return Route(
        operation_id=operation_id(endpoint.path),
        method="POST",
        path=endpoint.path,
        handler=_handler(endpoint),
        access=PUBLIC,
        summary=f"{endpoint.kind} webhook: CI reports for runs waiting on CI",
        description=(
            "No bearer token: the delivery's signature is checked instead"
            f" ({endpoint.kind}). A CI report (GitHub check_suite, workflow_run, status;"
            " GitLab Pipeline Hook) goes to the run steps waiting for CI on its commit, or"
            " on run_id. Answers 202 whether or not it matched. See docs/RUNS.md."
        ),
        tag="webhooks",
        params=(
            Param(
                name="run_id",
                location="query",
                description="The run the report is for (else matched by its commit).",
            ),
        ),
        body=BodySpec(schema="WebhookBody", description="The forge's payload."),
        responses=(
            ResponseSpec(
                status=202,
                description="Received; matched says whether a run step waited for it.",
                schema="CiReportAccepted",
            ),
            *_RESPONSES[2:],
        ),
        body_limit=endpoint.max_body_size,
    )
