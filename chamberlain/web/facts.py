"""``GET /plugins/{name}/facts``: the facts a plugin recorded through ``fact_outputs``.

A manifest rule (docs/DUCTILE.md, "The request envelope") makes a command's
``state_updates`` an append-only fact instead of a change to the plugin's state;
this lists the newest of them, which Ductile shows with ``system plugin-facts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chamberlain.web.auth import PLUGIN_RO, Scoped
from chamberlain.web.catalogue import NAME_PARAM
from chamberlain.web.errors import not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import UNAVAILABLE, limit_param
from chamberlain.web.spec import STRING, Param, ResponseSpec, Route, object_schema, ref

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


async def list_facts(call: Call) -> Reply:
    """``GET /plugins/{name}/facts``: the plugin's newest facts, newest first."""
    name = call.path["name"]
    if name not in call.gateway.plugins:
        raise not_found(f"unknown plugin {name!r}")
    fact_type = (call.query.get("fact_type") or (None,))[0] or None
    limit = limit_param(call.query, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    found = await call.gateway.plugin_facts(name, fact_type=fact_type, limit=limit)
    return Reply({"plugin": name, "facts": [fact.to_json() for fact in found]})


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listPluginFacts",
        method="GET",
        path="/plugins/{name}/facts",
        handler=list_facts,
        access=Scoped(PLUGIN_RO),
        summary="The facts a plugin recorded (fact_outputs), newest first",
        description=(
            "Each fact is the `state_updates` of one successful job of a command the"
            " plugin's manifest names in `fact_outputs`. Facts are kept as long as jobs"
            " (`service.job_retention`)."
        ),
        tag="plugins",
        params=(
            NAME_PARAM,
            Param(name="fact_type", location="query", description="Only facts of this type."),
            Param(
                name="limit",
                location="query",
                description=f"How many facts (1 to {MAX_LIMIT}; default {DEFAULT_LIMIT}).",
                schema={"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            ),
        ),
        responses=(
            ResponseSpec(status=200, description="The newest facts.", schema="PluginFacts"),
            ResponseSpec(
                status=400, description="An unknown or repeated query parameter, or a bad limit."
            ),
            ResponseSpec(status=404, description="Unknown plugin."),
            UNAVAILABLE,
        ),
    ),
)

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "PluginFact": object_schema(
        {
            "seq": {"type": "integer"},
            "plugin": STRING,
            "fact_type": STRING,
            "job_id": STRING,
            "command": STRING,
            "fact": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
        }
    ),
    "PluginFacts": object_schema(
        {"plugin": STRING, "facts": {"type": "array", "items": ref("PluginFact")}}
    ),
}
