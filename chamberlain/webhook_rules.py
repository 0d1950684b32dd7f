"""Inbound webhooks: checking a delivery's signature and turning it into an event.

Pure decisions, no I/O: :func:`verify_delivery` says whether a request is a genuine
delivery (constant-time comparisons only) and what it is; :func:`delivery_event`
builds the event the job receives, from a body that is JSON by the rules every
JSON body follows (:func:`chamberlain.jsoncodec.loads`), or else text.  The HTTP
edge lives in :mod:`chamberlain.web.webhooks`.

Kinds:

``github``
    ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``; the event
    type is ``github.<X-GitHub-Event>``; the delivery id is ``X-GitHub-Delivery``.
``gitlab``
    ``X-Gitlab-Token`` must equal the secret; the event type is ``gitlab.<event>``
    from ``X-Gitlab-Event`` (``Push Hook`` -> ``gitlab.push_hook``); the delivery id
    is ``X-Gitlab-Event-UUID`` (or ``Idempotency-Key``).
``hmac``
    the configured header holds the hex HMAC-SHA256, ``sha256=`` prefix optional;
    the event type comes from ``event_type_header`` when configured, else
    ``webhook.<last path segment>``; the delivery id from ``delivery_header``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs

from chamberlain.callback_rules import sign
from chamberlain.config import WebhookEndpointConfig
from chamberlain.jsoncodec import MAX_JSON_DEPTH, JsonRefused, loads
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.records import rfc3339

_PREFIX = "sha256="
_HEX = re.compile(r"[0-9a-fA-F]{64}")
#: Headers worth handing to the plugin with the event (lower case).
_INTERESTING = (
    "content-type",
    "user-agent",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-gitlab-event",
    "x-gitlab-event-uuid",
    "x-gitlab-instance",
    "idempotency-key",
)


class Forbidden(Exception):
    """Not a genuine delivery: a missing, malformed or wrong signature or token.

    The reason is for the log only; the sender is told nothing but "forbidden".
    """


@attrs.frozen(kw_only=True)
class WebhookDelivery:
    """A verified delivery: what it is, and which one."""

    event_type: str
    delivery_id: str | None
    headers: Mapping[str, str]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # HTTP header names are case-insensitive; Mapping lookups are not.
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _hmac_ok(secret: str, body: bytes, given: str | None, *, prefix_required: bool) -> bool:
    if given is None:
        return False
    given = given.strip()
    if given.lower().startswith(_PREFIX):
        given = given[len(_PREFIX) :]
    elif prefix_required:
        return False
    if not _HEX.fullmatch(given):
        return False
    expected = sign(secret, body)[len(_PREFIX) :]
    return hmac.compare_digest(expected, given.lower())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_") or "unknown"


def verify_delivery(
    endpoint: WebhookEndpointConfig, headers: Mapping[str, str], body: bytes
) -> WebhookDelivery:
    """The delivery ``headers`` and ``body`` make, or :class:`Forbidden`."""
    kind = endpoint.kind
    if kind == "github":
        if not _hmac_ok(
            endpoint.secret, body, _header(headers, "X-Hub-Signature-256"), prefix_required=True
        ):
            raise Forbidden("X-Hub-Signature-256 is missing or does not sign the body")
        event = _header(headers, endpoint.event_type_header or "X-GitHub-Event") or "unknown"
        event_type = f"github.{_slug(event)}"
        delivery_id = _header(headers, "X-GitHub-Delivery")
    elif kind == "gitlab":
        token = _header(headers, "X-Gitlab-Token")
        if token is None or not hmac.compare_digest(
            token.encode("utf-8"), endpoint.secret.encode("utf-8")
        ):
            raise Forbidden("X-Gitlab-Token is missing or wrong")
        event = _header(headers, endpoint.event_type_header or "X-Gitlab-Event") or "unknown"
        event_type = f"gitlab.{_slug(event)}"
        delivery_id = _header(headers, "X-Gitlab-Event-UUID") or _header(headers, "Idempotency-Key")
    else:
        if not _hmac_ok(
            endpoint.secret,
            body,
            _header(headers, endpoint.signature_header),
            prefix_required=False,
        ):
            raise Forbidden(f"{endpoint.signature_header} is missing or does not sign the body")
        given = _header(headers, endpoint.event_type_header) if endpoint.event_type_header else None
        event_type = (
            given.strip()
            if given and given.strip()
            else (f"webhook.{_slug(endpoint.path.rsplit('/', 1)[-1])}")
        )
        delivery_id = _header(headers, endpoint.delivery_header)
    kept = {name: value for name in _INTERESTING if (value := _header(headers, name)) is not None}
    return WebhookDelivery(
        event_type=event_type,
        delivery_id=delivery_id.strip() if delivery_id and delivery_id.strip() else None,
        headers=kept,
    )


def parse_body(body: bytes) -> Any:
    """The body as JSON when it is JSON, else its text (undecodable bytes replaced).

    JSON that :func:`~chamberlain.jsoncodec.loads` refuses (a lone surrogate, a
    duplicate key, nesting deeper than ``MAX_JSON_DEPTH`` ...) raises its
    :class:`~chamberlain.jsoncodec.JsonRefused`: kept as text, it would reach the
    plugin as a different document than the one sent.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        return loads(text, max_depth=MAX_JSON_DEPTH)
    except JsonRefused:
        raise
    except ValueError:
        return text


def delivery_event(
    endpoint: WebhookEndpointConfig,
    delivery: WebhookDelivery,
    body: bytes,
    *,
    event_id: str,
    now: float,
) -> dict[str, Any]:
    """The event a delivery becomes: the parsed body as its payload, plus context.

    Raises :class:`~chamberlain.jsoncodec.JsonRefused` as :func:`parse_body` does.
    """
    parsed = parse_body(body)
    return {
        "type": delivery.event_type,
        "payload": parsed if isinstance(parsed, dict) else {"body": parsed},
        "event_id": event_id,
        "source": f"webhook:{endpoint.path}",
        "timestamp": rfc3339(now),
        "delivery_id": delivery.delivery_id,
        "headers": dict(delivery.headers),
    }


def api_route_at(path: str, taken_paths: Collection[str]) -> str | None:
    """The API route (a template such as ``/pipeline/{name}``) that a request to
    ``path`` could also reach, if any.

    ``{...}`` segments, in a route's template or in ``path`` (itself a template, such
    as ``/ingest/peer/{peer}``), match any one segment. Two such paths would shadow
    one another, depending on the router's preferences: refused at start-up
    instead.
    """

    def variable(segment: str) -> bool:
        return segment.startswith("{") and segment.endswith("}")

    parts = path.strip("/").split("/")
    for template in sorted(taken_paths):
        pattern = template.strip("/").split("/")
        if len(pattern) == len(parts) and all(
            p == s or variable(p) or variable(s) for p, s in zip(pattern, parts, strict=True)
        ):
            return template
    return None


def check_endpoints(
    endpoints: Sequence[WebhookEndpointConfig],
    plugins: Mapping[str, BoundPlugin],
    pipelines: Collection[str],
    taken_paths: Collection[str],
) -> list[str]:
    """Problems with the endpoints' targets and paths, each naming its YAML path;
    ``taken_paths`` are the API's route templates on the same listener."""
    problems: list[str] = []
    for index, endpoint in enumerate(endpoints):
        where = f"webhooks.endpoints[{index}]"
        if endpoint.plugin is not None:
            plugin = plugins.get(endpoint.plugin)
            if plugin is None:
                problems.append(f"{where}.plugin: no loaded plugin named {endpoint.plugin!r}")
            elif plugin.command(endpoint.command) is None:
                problems.append(
                    f"{where}.command: plugin {endpoint.plugin!r} has no command"
                    f" {endpoint.command!r}"
                )
        if endpoint.pipeline is not None and endpoint.pipeline not in pipelines:
            problems.append(f"{where}.pipeline: no pipeline named {endpoint.pipeline!r}")
        route = api_route_at(endpoint.path, taken_paths)
        if route is not None:
            problems.append(f"{where}.path: {endpoint.path!r} is taken by the API route {route}")
    return problems
