"""Remote event relay: Ductile's gateway-to-gateway delivery, as pure decisions.

A pipeline's ``relay:`` step delivers an event to a named instance (``instances:``)
over HTTP; the receiver (``remote_ingress:``) checks it and accepts it as a fresh
root event of its own. This module holds everything about that exchange that needs
no I/O, written to match Ductile's ``internal/relay`` on the wire:

* the **envelope** a relay step sends (:func:`build_envelope`, Ductile's
  ``relayEnvelopeFromNode``): the step's input payload, or only the keys its
  ``with:`` names; the input's dedupe key, or the one its ``dedupe_key`` renders;
  and the claims of its ``baggage:``;
* its **bytes** (:func:`encode_envelope`) and the **signature** over method, path,
  timestamp and body (:func:`sign`, Ductile's ``hmac.go``), sent in the
  ``X-Ductile-*`` headers (:func:`signed_headers`);
* the **receiver's checks**, in Ductile's order and with its status codes and
  messages (:func:`verify_request`): known and enabled peer, matching peer header,
  timestamp within ``allowed_clock_skew``, key id, signature, envelope, origin,
  the peer's ``accept`` list; and what an accepted envelope becomes
  (:func:`local_event`), with the key that makes a redelivery run once;
* what the **sender** makes of the receiver's answer (:func:`delivery_verdict`).

The built-in ``core.relay`` plugin whose jobs carry the deliveries is described by
:func:`relay_plugin`; :mod:`chamberlain.actors.relay_sender` does the HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from chamberlain.config import Config, RelayInstanceConfig, RelayPeerConfig, RemoteIngressConfig
from chamberlain.config.sections import RELAY_CLOCK_SKEW, RELAY_TIMEOUT
from chamberlain.jsoncodec import MAX_JSON_DEPTH, loads
from chamberlain.plugins.binding import RELAY_PLUGIN as RELAY_PLUGIN
from chamberlain.plugins.binding import BoundPlugin, builtin_plugin
from chamberlain.records import rfc3339
from chamberlain.routing.templates import TemplateError, claim_baggage, evaluate

#: The command of the ``core.relay`` jobs (:data:`RELAY_PLUGIN`), Ductile's names both.
RELAY_COMMAND: Final = "handle"

HEADER_PEER: Final = "X-Ductile-Peer"
HEADER_KEY_ID: Final = "X-Ductile-Key-Id"
HEADER_TIMESTAMP: Final = "X-Ductile-Timestamp"
HEADER_SIGNATURE: Final = "X-Ductile-Signature"

#: Ductile's ``eventTypePattern``: lower-case dotted (``backup.ready``).
EVENT_TYPE: Final = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
#: Ductile's ``relayInstanceNamePattern``: lower-case hyphenated (``home-primary``).
INSTANCE_NAME: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


def _json(body: bytes) -> Any:
    """``body`` as JSON by the rules every JSON body follows, or None when it is not."""
    try:
        return loads(body.decode("utf-8"), max_depth=MAX_JSON_DEPTH)
    except ValueError:  # not UTF-8, not JSON, or JSON every body is refused for
        return None


class RelayRefused(Exception):
    """A relay request the receiver refuses: the status and the error it answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- the sender ----------------------------------------------------------------------------


def _text(value: object) -> str:
    """A rendered ``dedupe_key`` as text, as Go's ``fmt.Sprint`` writes JSON values."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def build_envelope(
    *,
    event: str,
    with_: Mapping[str, str] | None,
    dedupe_key: str | None,
    baggage: Mapping[str, Any],
    scope: Mapping[str, Any],
    input_dedupe_key: str | None,
    instance: str,
    job_id: str,
    event_id: str | None,
) -> dict[str, Any]:
    """The envelope a relay step sends, as Ductile's ``relayEnvelopeFromNode`` builds it.

    ``scope`` is the step's (``payload``, ``event``, ``context``). Without ``with_``
    the payload is the input's; with it, only the keys it names, each a bare path
    (the value with its type) or a template. ``dedupe_key`` renders the same way and
    replaces the input's; ``baggage`` claims values as a ``uses`` step's does. The
    origin names this gateway (``instance``), the relay job and the input event.
    Raises :class:`~chamberlain.routing.templates.TemplateError` for a path the
    input lacks.
    """
    payload = dict(scope.get("payload") or {})
    if with_:
        payload = {}
        for key in sorted(with_):
            try:
                payload[key] = evaluate(with_[key], scope)
            except TemplateError as exc:
                raise TemplateError(f"relay.with.{key}: {exc}") from None
    key = (input_dedupe_key or "").strip()
    if dedupe_key is not None and dedupe_key.strip():
        try:
            rendered = evaluate(dedupe_key.strip(), scope)
        except TemplateError as exc:
            raise TemplateError(f"relay.dedupe_key: {exc}") from None
        key = "" if rendered is None else _text(rendered)
    try:
        claims = claim_baggage(baggage, scope) if baggage else {}
    except TemplateError as exc:
        raise TemplateError(f"relay.baggage: {exc}") from None
    body: dict[str, Any] = {"type": event, "payload": payload}
    if key:
        body["dedupe_key"] = key
    origin = {"instance": instance, "plugin": RELAY_PLUGIN, "job_id": job_id}
    if event_id:
        origin["event_id"] = event_id
    envelope: dict[str, Any] = {"event": body, "origin": origin}
    if claims:
        envelope["baggage"] = claims
    return envelope


def encode_envelope(envelope: Mapping[str, Any]) -> bytes:
    """The body sent and signed: compact JSON, keys in the envelope's order.

    The receiver verifies the bytes it got, so any faithful encoding interoperates;
    compact UTF-8 is what Ductile's ``json.Marshal`` sends too.
    """
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(method: str, path: str, timestamp: str, body: bytes, secret: str) -> str:
    """The hex HMAC-SHA256 of ``METHOD\\npath\\ntimestamp\\nbody`` (Ductile's ``sign``).

    The method is upper-cased and it and the timestamp trimmed, as Ductile does; the
    path is the request's path, without scheme, host or query.
    """
    if not secret.strip():
        raise ValueError("relay signing failed: the secret is empty")
    message = b"\n".join(
        (method.strip().upper().encode(), path.encode(), timestamp.strip().encode(), body)
    )
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def timestamp_of(now: float) -> str:
    """``now`` as the RFC 3339 UTC text sent in ``X-Ductile-Timestamp``."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def endpoint_of(instance: RelayInstanceConfig) -> str:
    """The URL a delivery to ``instance`` is posted to: ``base_url`` + ``ingress_path``."""
    return instance.base_url.strip().rstrip("/") + instance.ingress_path.strip()


def request_path(url: str) -> str:
    """The path part of ``url``: what the signature covers (Ductile's ``req.URL.Path``)."""
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    path = "/" if slash < 0 else rest[slash:]
    return path.split("?", 1)[0].split("#", 1)[0]


def signed_headers(
    *, service: str, instance: RelayInstanceConfig, secret: str, body: bytes, now: float
) -> dict[str, str]:
    """The headers of one delivery of ``body`` to ``instance``, signed with ``secret``."""
    timestamp = timestamp_of(now)
    headers = {
        "Content-Type": "application/json",
        HEADER_PEER: service,
        HEADER_TIMESTAMP: timestamp,
        HEADER_SIGNATURE: sign(
            "POST", request_path(endpoint_of(instance)), timestamp, body, secret
        ),
    }
    if instance.key_id.strip():
        headers[HEADER_KEY_ID] = instance.key_id.strip()
    return headers


def timeout_of(instance: RelayInstanceConfig) -> float:
    """How long one delivery to ``instance`` may take (0 in the config: Ductile's 10s)."""
    return instance.timeout or RELAY_TIMEOUT


def check_allowed(instance: RelayInstanceConfig, event_type: str) -> str | None:
    """Why ``instance`` may not be sent ``event_type`` (its ``allow`` list), or None."""
    if instance.allow and event_type.strip() not in instance.allow:
        return f"relay instance {instance.name!r} does not allow event type {event_type!r}"
    return None


@attrs.frozen(kw_only=True)
class Verdict:
    """What one delivery attempt came to, in the terms of a plugin's response."""

    ok: bool
    #: The job's result when ``ok``: Ductile's ``{"status": "relayed", ...}``.
    result: Mapping[str, Any] | None = None
    #: The event the relay step hands its successors when ``ok``.
    events: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None
    retry: bool = True

    def response(self) -> dict[str, Any]:
        """The verdict as a protocol v2 response document."""
        if self.ok:
            return {"status": "ok", "result": self.result, "events": list(self.events)}
        return {"status": "error", "error": self.error, "retry": self.retry}


#: Answers after which the same request could succeed: a timeout, too many requests.
_TRANSIENT: Final = frozenset({408, 425, 429})


def delivery_verdict(*, to: str, event_type: str, status: int, body: bytes) -> Verdict:
    """What the receiver's answer means for the delivery.

    202 is acceptance (Ductile's sender accepts nothing else): the result names what
    was delivered and the receiver's answer, and a ``ductile.step.succeeded`` event
    with the ``relay_*`` keys goes on to the next steps, as Ductile routes it. A 5xx
    or 408/425/429 is retried; any other answer is a refusal that a retry of the
    same signed envelope would meet again, so it is not.
    """
    answer = _json(body)
    if status == 202 and isinstance(answer, Mapping):
        accepted = {
            key: answer.get(key, "")
            for key in ("status", "peer", "event_type", "receiver_event_id", "job_id")
        }
        succeeded = {
            "type": "ductile.step.succeeded",
            "payload": {
                "relay_to": to,
                "relay_event_type": event_type,
                "relay_receiver_event_id": accepted["receiver_event_id"],
                "relay_receiver_peer": accepted["peer"],
                "relay_receiver_job_id": accepted["job_id"],
                "relay_acceptance_status": accepted["status"],
                "relay_acceptance_event_id": accepted["receiver_event_id"],
            },
        }
        return Verdict(
            ok=True,
            result={"status": "relayed", "to": to, "event": event_type, "accepted": accepted},
            events=(succeeded,),
        )
    if status == 202:
        return Verdict(ok=False, error="relay receiver answered 202 without a JSON object")
    reason = answer.get("error") if isinstance(answer, Mapping) else None
    if isinstance(reason, str) and reason.strip():
        error = f"relay receiver rejected request ({status}): {reason}"
    else:
        error = f"relay receiver returned status {status}"
    return Verdict(ok=False, error=error, retry=status >= 500 or status in _TRANSIENT)


def relay_plugin(config: Config) -> BoundPlugin | None:
    """The built-in ``core.relay`` plugin, when an instance is enabled; else None.

    Its jobs run in the daemon (:mod:`chamberlain.actors.relay_sender`), not as a
    process; ``plugins.core.relay`` tunes them like any plugin (``retry``,
    ``parallelism``, ``timeouts.handle``).
    """
    if not any(instance.enabled for instance in config.instances):
        return None
    # Deliveries are concurrency safe: as many at once as the daemon runs jobs.
    return builtin_plugin(
        config,
        RELAY_PLUGIN,
        RELAY_COMMAND,
        description="Delivers a relay step's event to another gateway instance.",
        parallelism=config.service.max_workers,
    )


def with_relay_plugin(config: Config, plugins: Mapping[str, BoundPlugin]) -> dict[str, BoundPlugin]:
    """``plugins`` and, when an instance is enabled, ``core.relay``: what the router
    plans jobs for and the daemon runs (the API lists and triggers ``plugins`` only)."""
    relay = relay_plugin(config)
    return dict(plugins) if relay is None else {**plugins, RELAY_PLUGIN: relay}


# -- the receiver ----------------------------------------------------------------------------


def parse_timestamp(raw: str) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp or of unix seconds (Ductile accepts both)."""
    text = raw.strip()
    if re.fullmatch(r"-?\d+", text):
        return float(int(text))
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    offset = 0
    if zone not in ("Z", "z"):
        sign_ = -1 if zone[0] == "-" else 1
        offset = sign_ * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    seconds = moment.replace(tzinfo=UTC).timestamp() - offset
    return seconds + (float(fraction) if fraction else 0.0)


@attrs.frozen(kw_only=True)
class Accepted:
    """A verified relay request: who sent it and the envelope's parts."""

    peer: RelayPeerConfig
    event_type: str
    payload: Mapping[str, Any]
    #: The key under which a redelivery of the same envelope is recognised (None:
    #: the sender gave neither a dedupe key nor an origin event id).
    dedupe_key: str | None
    origin: Mapping[str, Any]
    #: The envelope's baggage, only the keys the peer's ``baggage.allow`` lists.
    baggage: Mapping[str, Any]


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value.strip()
    return ""


def verify_request(
    ingress: RemoteIngressConfig,
    peer_name: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    path: str,
    secret_of: Mapping[str, str],
    now: float,
) -> Accepted:
    """Check one request to ``{listen_path}/{peer_name}`` as Ductile's receiver does.

    ``secret_of`` gives each peer's resolved secret by name. Raises
    :class:`RelayRefused` with Ductile's status and message for the first check that
    fails; the signature is compared in constant time. The body's size is the web
    layer's to enforce, before it is read.
    """
    peers = {peer.name: peer for peer in ingress.peers if peer.enabled}
    peer = peers.get(peer_name.strip())
    if peer is None:
        raise RelayRefused(403, "unknown relay peer")
    if _header(headers, HEADER_PEER) != peer.name:
        raise RelayRefused(403, "peer identity mismatch")
    stamp = _header(headers, HEADER_TIMESTAMP)
    if not stamp:
        raise RelayRefused(403, "missing relay timestamp")
    sent = parse_timestamp(stamp)
    if sent is None:
        raise RelayRefused(403, "invalid relay timestamp")
    if abs(now - sent) > (ingress.allowed_clock_skew or RELAY_CLOCK_SKEW):
        raise RelayRefused(403, "relay timestamp outside allowed clock skew")
    key_id = _header(headers, HEADER_KEY_ID)
    if ingress.require_key_id and not key_id:
        raise RelayRefused(403, "missing relay key id")
    if peer.key_id.strip() and key_id != peer.key_id.strip():
        raise RelayRefused(403, "relay key id mismatch")
    signature = _header(headers, HEADER_SIGNATURE)
    if not signature:
        raise RelayRefused(403, "missing relay signature")
    given = signature.removeprefix("sha256=")
    expected = sign("POST", path, stamp, body, secret_of[peer.name])
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise RelayRefused(403, "forbidden")
    envelope = _envelope(body)
    origin = envelope.get("origin")
    origin = dict(origin) if isinstance(origin, Mapping) else {}
    origin_instance = str(origin.get("instance") or "").strip()
    if origin_instance and origin_instance != peer.name:
        raise RelayRefused(403, "origin instance mismatch")
    event = envelope["event"]
    event_type = event["type"]
    if peer.accept and event_type not in peer.accept:
        raise RelayRefused(422, "event type not allowed for peer")
    dedupe_key = str(event.get("dedupe_key") or "").strip() or None
    origin_event = str(origin.get("event_id") or "").strip()
    if dedupe_key is None and origin_event:
        # Ductile's replay guard: an envelope without a dedupe key is known by origin.
        dedupe_key = f"relay:{peer.name}:{origin_instance}:{origin_event}"
    baggage = envelope.get("baggage")
    admitted = {
        key: value
        for key, value in (baggage.items() if isinstance(baggage, Mapping) else ())
        if key in peer.baggage.allow
    }
    return Accepted(
        peer=peer,
        event_type=event_type,
        payload=event["payload"],
        dedupe_key=dedupe_key,
        origin=origin,
        baggage=admitted,
    )


def _envelope(body: bytes) -> dict[str, Any]:
    """The envelope in ``body``, checked as Ductile's ``validateEnvelope`` checks it."""
    envelope = _json(body)
    if not isinstance(envelope, dict):
        raise RelayRefused(400, "invalid JSON body")
    event = envelope.get("event")
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise RelayRefused(400, "invalid JSON body")
    kind = event.get("type")
    if kind is not None and not isinstance(kind, str):
        raise RelayRefused(400, "invalid JSON body")
    kind = (kind or "").strip()
    if not kind:
        raise RelayRefused(400, "event.type is required")
    if not EVENT_TYPE.fullmatch(kind):
        raise RelayRefused(400, "event.type must use lower-case dotted form")
    payload = event.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise RelayRefused(400, "invalid JSON body")
    dedupe_key = event.get("dedupe_key")
    if dedupe_key is not None and not isinstance(dedupe_key, str):
        raise RelayRefused(400, "invalid JSON body")
    origin = envelope.get("origin")
    if origin is not None and not isinstance(origin, dict):
        raise RelayRefused(400, "invalid JSON body")
    if isinstance(origin, dict) and any(
        origin.get(key) is not None and not isinstance(origin.get(key), str)
        for key in ("instance", "plugin", "job_id", "event_id")
    ):
        raise RelayRefused(400, "invalid JSON body")
    baggage = envelope.get("baggage")
    if baggage is not None and not isinstance(baggage, dict):
        raise RelayRefused(400, "invalid JSON body")
    return {**envelope, "event": {**event, "type": kind, "payload": payload}}


def local_event(accepted: Accepted, *, event_id: str, now: float) -> dict[str, Any]:
    """The root event an accepted envelope becomes: its type and payload, from
    ``relay:<peer>``, with the dedupe key (Ductile's local ``protocol.Event``)."""
    event: dict[str, Any] = {
        "type": accepted.event_type,
        "payload": dict(accepted.payload),
        "source": f"relay:{accepted.peer.name}",
        "timestamp": rfc3339(now),
        "event_id": event_id,
    }
    if accepted.dedupe_key is not None:
        event["dedupe_key"] = accepted.dedupe_key
    return event


def acceptance(accepted: Accepted, *, event_id: str, job_id: str | None) -> dict[str, Any]:
    """The 202 body, as Ductile's ``AcceptanceResponse`` (``job_id`` left out when no
    pipeline took the event)."""
    body: dict[str, Any] = {
        "status": "accepted",
        "peer": accepted.peer.name,
        "event_type": accepted.event_type,
        "receiver_event_id": event_id,
    }
    if job_id:
        body["job_id"] = job_id
    return body
