"""Relayed events from other gateways: ``POST {remote_ingress.listen_path}/{peer}``.

Ductile's receiver (``internal/relay/receiver.go``) on the API listener. The route
is public in the route-table sense (no bearer token) and guarded by the request's
HMAC signature instead; every check, in Ductile's order and with its answers, is
:func:`chamberlain.relay_rules.verify_request`. The body's size is enforced while
it is read (413). An accepted envelope becomes a root event, typed as the
envelope's event, from ``relay:<peer>``, that starts every pipeline whose ``on`` is
that type, with the baggage the peer may seed; it is answered 202 with Ductile's
acceptance body. A redelivery of an envelope (the same dedupe key, or the same
origin event when it has none) within ``service.dedupe_ttl`` starts nothing and is
answered 202 with the first delivery's job, as Ductile answers it. Every refusal is
``{"error": ...}``.

A peer's ``secret`` may be a ``${secret:name}`` reference, resolved from the vault
for each request; one the registry does not hold answers 503 and logs why.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from chamberlain.config import RemoteIngressConfig
from chamberlain.records import NewJob, RoutePlan, StoredEvent
from chamberlain.relay_rules import (
    RelayRefused,
    acceptance,
    local_event,
    verify_request,
)
from chamberlain.vault import UnknownSecret
from chamberlain.web.auth import PUBLIC
from chamberlain.web.errors import ApiError, unavailable
from chamberlain.web.handler import Call, Handler, Reply
from chamberlain.web.intake import DISK_FULL, NOT_ACCEPTING_RESPONSE, not_accepting
from chamberlain.web.spec import BodySpec, Param, ResponseSpec, Route

log = logging.getLogger("chamberlain.web")

SCHEMAS: dict[str, Any] = {
    "RelayAccepted": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["accepted"]},
            "peer": {"type": "string"},
            "event_type": {"type": "string"},
            "receiver_event_id": {"type": "string"},
            "job_id": {"type": "string"},
        },
        "required": ["status", "peer", "event_type", "receiver_event_id"],
    },
    "RelayEnvelope": {
        "description": (
            "Ductile's relay envelope: {event: {type, payload, dedupe_key}, origin:"
            " {instance, plugin, job_id, event_id}, baggage}. Signed, so read as bytes."
        ),
    },
}

_RESPONSES = (
    ResponseSpec(
        status=202,
        description=(
            "Accepted: the jobs of the pipelines it starts are committed (job_id is the"
            " first; absent when no pipeline's on is its type). A redelivery is answered"
            " the same, with the first delivery's job."
        ),
        schema="RelayAccepted",
    ),
    ResponseSpec(status=400, description="The body is no valid envelope."),
    ResponseSpec(
        status=403,
        description=(
            "Unknown or disabled peer, peer header mismatch, missing or skewed timestamp,"
            " missing or wrong key id, missing or wrong signature, origin mismatch."
        ),
    ),
    ResponseSpec(status=413, description="The body is larger than remote_ingress.max_body_size."),
    ResponseSpec(status=422, description="The peer's accept list does not take the event type."),
    NOT_ACCEPTING_RESPONSE,
    DISK_FULL,
)


def _handler(ingress: RemoteIngressConfig) -> Handler:
    async def receive(call: Call) -> Reply:
        peer_name = call.path["peer"]
        body = await call.read_body()
        secrets: dict[str, str] = {}
        for peer in ingress.peers:
            if peer.enabled and peer.name == peer_name:
                try:
                    secrets[peer.name] = call.gateway.vault.resolve(peer.secret)
                except UnknownSecret as missing:
                    log.error(
                        "relay peer %s cannot be checked: %s",
                        peer.name,
                        missing,
                        extra={"component": "relay", "peer": peer.name},
                    )
                    raise unavailable("the peer's secret is not available") from None
        now = call.site.now()
        try:
            accepted = verify_request(
                ingress,
                peer_name,
                headers=call.headers,
                body=body,
                path=f"{ingress.listen_path}/{peer_name}",
                secret_of=secrets,
                now=now,
            )
        except RelayRefused as refused:
            log.warning(
                "relay request from %s refused: %s",
                peer_name,
                refused.message,
                extra={"component": "relay", "peer": peer_name},
            )
            raise ApiError(refused.status, refused.message) from None
        refusal = not_accepting(call.gateway.lifecycle)
        if refusal is not None:
            raise refusal
        event_id = str(uuid.uuid4())
        event = local_event(accepted, event_id=event_id, now=now)
        routing = call.gateway.routing
        jobs: list[NewJob] = []
        notes: list[StoredEvent] = []
        for pipeline in routing.pipelines_on(accepted.event_type):
            started = routing.start(
                pipeline,
                event["payload"],
                submitted_by=f"relay:{accepted.peer.name}",
                now=now,
                event=event,
                context=accepted.baggage,
            )
            jobs.extend(started.jobs)
            notes.extend(started.events)
        plan = RoutePlan(events=tuple(notes), jobs=tuple(jobs))
        job, replay = await call.gateway.enqueue_webhook(
            f"relay:{accepted.peer.name}", accepted.dedupe_key, plan
        )
        extra = {
            "component": "relay",
            "peer": accepted.peer.name,
            "event_type": accepted.event_type,
            "receiver_event_id": event_id,
            "origin_instance": accepted.origin.get("instance", ""),
            "origin_job_id": accepted.origin.get("job_id", ""),
            "origin_event_id": accepted.origin.get("event_id", ""),
        }
        if job is not None:
            extra["job_id"] = job.id
        if replay:
            log.info("relay request from %s: a redelivery, nothing started", peer_name, extra=extra)
        else:
            log.info("relay request from %s accepted", peer_name, extra=extra)
        return Reply(
            acceptance(accepted, event_id=event_id, job_id=None if job is None else job.id), 202
        )

    return receive


def relay_routes(ingress: RemoteIngressConfig | None) -> tuple[Route, ...]:
    """The ingress route, when ``remote_ingress`` is configured."""
    if ingress is None:
        return ()
    return (
        Route(
            operation_id="relayIngress",
            method="POST",
            path=f"{ingress.listen_path}/{{peer}}",
            handler=_handler(ingress),
            access=PUBLIC,
            summary="A relayed event from another gateway (Ductile's remote event relay)",
            description=(
                "No bearer token: the X-Ductile-Peer, X-Ductile-Timestamp,"
                " X-Ductile-Key-Id and X-Ductile-Signature headers are checked instead."
                " An accepted event starts the pipelines whose on is its type."
            ),
            tag="relay",
            params=(
                Param(
                    name="peer",
                    location="path",
                    description="The sending gateway's name (a remote_ingress.peers entry).",
                    required=True,
                ),
            ),
            body=BodySpec(schema="RelayEnvelope", description="The signed envelope."),
            responses=_RESPONSES,
            body_limit=ingress.max_body_size,
        ),
    )
