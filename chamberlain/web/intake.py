"""What every route that takes work shares: decoding its JSON body, and refusing work.

:func:`decode_json_object` turns a request body into the JSON object it must be
(400 for anything else: bad UTF-8, malformed JSON, NaN, nesting deeper than
:data:`MAX_JSON_DEPTH`, a non-object).  :func:`not_accepting` words the 503 of a
daemon that is starting or draining.  :data:`UNAVAILABLE` and
:data:`NOT_ACCEPTING_RESPONSE` document the two kinds of 503 in the route table.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from chamberlain.actors.gateway import Lifecycle, Phase
from chamberlain.jsoncodec import json_kind
from chamberlain.web.errors import ApiError, bad_request, unavailable
from chamberlain.web.spec import ResponseSpec

#: Bodies nested deeper are refused.  Every layer a payload passes through (the
#: store, the plugin's request, the API's answers) encodes it recursively, so a bound
#: at the door keeps all of them far from Python's recursion limit.
MAX_JSON_DEPTH = 64

#: The 503 of any route that asks an actor: it did not answer in time.
UNAVAILABLE = ResponseSpec(
    status=503,
    description="The daemon did not answer in time (an actor is restarting or overloaded).",
)

#: The 503 of a route that creates work: refused while starting or draining, too.
NOT_ACCEPTING_RESPONSE = ResponseSpec(
    status=503,
    description="The daemon is starting or draining, or the store did not answer in time.",
)


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; Python accepts them unless told not to, and
    # they would be stored as text no other JSON reader can parse.
    raise ValueError(f"{name} is not valid JSON")


def exceeds_depth(value: object, limit: int) -> bool:
    """True when ``value`` nests arrays and objects more than ``limit`` levels deep.

    Iterative on purpose: a recursive walk would fail on the very input it checks.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; an empty body counts as ``{}``.  400 otherwise."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    too_deep = bad_request(f"request body is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise bad_request(f"malformed JSON in request body: {exc}") from None
    except RecursionError:
        raise too_deep from None
    if exceeds_depth(data, MAX_JSON_DEPTH):
        raise too_deep
    if not isinstance(data, dict):
        raise bad_request(f"request body must be a JSON object, not {json_kind(data)}")
    return data


def not_accepting(lifecycle: Lifecycle) -> ApiError | None:
    """The 503 to answer while the daemon takes no new work; None when it does."""
    if lifecycle.accepting:
        return None
    if lifecycle.phase is Phase.DRAINING:
        return unavailable("chamberlain is draining (shutting down); not accepting new jobs")
    return unavailable(
        f"chamberlain is {lifecycle.phase.value}; not accepting jobs yet", retry_after=1
    )
