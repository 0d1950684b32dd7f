"""What every route that takes work shares: decoding its JSON body, and refusing work.

:func:`decode_json_object` turns a request body into the JSON object it must be
(400 for anything else: bad UTF-8, malformed JSON, and whatever
:func:`chamberlain.jsoncodec.loads` refuses: NaN or a number that overflows, a
duplicate key, a lone surrogate, an integer too long, nesting deeper than
:data:`MAX_JSON_DEPTH`; then a non-object), worded by :func:`json_refusal`, which
the webhook routes share.  :func:`not_accepting` words the 503
of a daemon that is starting or draining.  :data:`UNAVAILABLE` and
:data:`NOT_ACCEPTING_RESPONSE` document the two kinds of 503 in the route table,
:data:`NO_QUERY` and :data:`BAD_DETAIL` two kinds of 400 of the routes that read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from chamberlain.actors.gateway import Lifecycle, Phase
from chamberlain.jsoncodec import MAX_JSON_DEPTH, json_kind, loads
from chamberlain.web.errors import ApiError, bad_request, unavailable
from chamberlain.web.spec import ResponseSpec

__all__ = [
    "BAD_DETAIL",
    "DISK_FULL",
    "MAX_JSON_DEPTH",
    "NOT_ACCEPTING_RESPONSE",
    "NO_QUERY",
    "TOO_LARGE",
    "UNAVAILABLE",
    "decode_json_object",
    "json_refusal",
    "limit_param",
    "not_accepting",
]

#: The 503 of any route that asks an actor: it did not answer in time.
UNAVAILABLE = ResponseSpec(
    status=503,
    description="The daemon did not answer in time (an actor is restarting or overloaded).",
    headers={"Retry-After": "Seconds to wait before trying again."},
)

#: The 503 of a route that creates work: refused while starting or draining, too.
NOT_ACCEPTING_RESPONSE = ResponseSpec(
    status=503,
    description="The daemon is starting or draining, or the store did not answer in time.",
    optional_headers={"Retry-After": "Seconds to wait; absent while draining."},
)

#: The 400 of a route that takes no query parameters, when one is given anyway.
NO_QUERY = ResponseSpec(status=400, description="A query parameter was given.")

#: The 400 of a route whose only query parameter is the ``detail`` flag.
BAD_DETAIL = ResponseSpec(
    status=400, description="An unknown or repeated query parameter, or `detail` not a boolean."
)

#: The 413 of a route with a JSON body, refused (unread) over ``api.max_body_size``.
TOO_LARGE = ResponseSpec(status=413, description="The body is larger than api.max_body_size.")

#: The 507 of a route that writes: the disk under the store is full or failing, and
#: nothing of the request was stored (see docs/RELIABILITY.md).
DISK_FULL = ResponseSpec(
    status=507,
    description=(
        "The disk under the store is full or failing: nothing was stored. Retry after"
        " Retry-After seconds; /healthz says degraded meanwhile."
    ),
    headers={"Retry-After": "Seconds to wait before trying again."},
)


def limit_param(query: Mapping[str, Sequence[str]], *, default: int, maximum: int) -> int:
    """The ``limit`` query parameter: ``default`` when absent, else an integer from 1
    to ``maximum``; 400 naming the range otherwise."""
    values = query.get("limit") or ()
    if not values:
        return default
    text = values[0]
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        raise bad_request(f"query parameter 'limit' must be an integer from 1 to {maximum}")
    return int(text)


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; an empty body counts as ``{}``.  400 otherwise.

    The 400 of a value :func:`~chamberlain.jsoncodec.loads` refuses names where it
    is (``payload.items[3]``), so a client can find it.
    """
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    try:
        data = loads(text, max_depth=MAX_JSON_DEPTH)
    except ValueError as exc:
        raise json_refusal(exc) from None
    if not isinstance(data, dict):
        raise bad_request(f"request body must be a JSON object, not {json_kind(data)}")
    return data


def refuse_unknown_fields(
    body: Mapping[str, Any], allowed: Collection[str], *, where: str = "the request body"
) -> None:
    """400 naming the first field of ``body`` that is not one of ``allowed``."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        expected = ", ".join(sorted(allowed)) or "nothing"
        raise bad_request(f"unknown field {unknown[0]!r} in {where}; expected: {expected}")


def json_refusal(reason: ValueError) -> ApiError:
    """The 400 for a body that is not JSON, or JSON that :func:`loads` refuses."""
    return bad_request(f"malformed JSON in request body: {reason}")


def not_accepting(lifecycle: Lifecycle) -> ApiError | None:
    """The 503 to answer while the daemon takes no new work; None when it does."""
    if lifecycle.accepting:
        return None
    if lifecycle.phase is Phase.DRAINING:
        return unavailable("chamberlain is draining (shutting down); not accepting new jobs")
    return unavailable(
        f"chamberlain is {lifecycle.phase.value}; not accepting jobs yet", retry_after=1
    )
