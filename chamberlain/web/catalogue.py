"""``GET /plugins`` and ``GET /plugin/{name}``: what can be triggered, and how.

``GET /plugins`` answers as Ductile's gateway does (``internal/api/handlers.go``
``handleListPlugins``), because Ductile's ``ductile plugin list`` decodes each
command as a string: each plugin's name, version, description and command names.
With ``?detail=1``, and always in ``GET /plugin/{name}``, each command lists its
type (which decides the scope needed to trigger it), its input schema and the
longest it may run, so a client (or an LLM tool builder) can construct valid
triggers without reading manifests.  The module owns these two routes and their
schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chamberlain.plugins.binding import BoundPlugin
from chamberlain.web.auth import PLUGIN_RO, Scoped
from chamberlain.web.errors import not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import BAD_DETAIL, NO_QUERY
from chamberlain.web.spec import STRING, Param, ResponseSpec, Route, object_schema, ref

NAME_PARAM = Param(name="name", location="path", description="The plugin's name.", required=True)

DETAIL_PARAM = Param(
    name="detail",
    location="query",
    description=(
        "`1` (or `true`): each plugin as `GET /plugin/{name}` shows it, its commands"
        " with type, description, schemas and timeout. Without it (or `0`, `false`),"
        " each command is its name, as Ductile's `ductile plugin list` reads it."
    ),
    schema={"type": "boolean", "default": False},
)


def describe_plugin(plugin: BoundPlugin) -> dict[str, Any]:
    """The public JSON description of one plugin."""
    manifest = plugin.manifest
    return {
        "name": manifest.name,
        "version": manifest.version,
        "description": manifest.description,
        "parallelism": plugin.parallelism,
        "commands": [
            {
                "name": spec.name,
                "type": spec.type.value,
                "description": spec.description,
                "input_schema": _plain(spec.input_schema),
                "output_schema": _plain(spec.output_schema),
                "timeout": plugin.timeout_for(spec.name),
            }
            for spec in manifest.commands
        ],
    }


def summarize_plugin(plugin: BoundPlugin) -> dict[str, Any]:
    """One plugin as ``GET /plugins`` lists it by default: commands by name only."""
    manifest = plugin.manifest
    return {
        "name": manifest.name,
        "version": manifest.version,
        "description": manifest.description,
        "commands": [spec.name for spec in manifest.commands],
    }


def _plain(value: Any) -> Any:
    # Manifests may hold read-only mappings; JSON encoding wants dicts and lists.
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


async def list_plugins(call: Call) -> Reply:
    """``GET /plugins``: every loaded plugin, by name; ``?detail=1`` describes each command."""
    describe = describe_plugin if call.flag("detail") else summarize_plugin
    plugins = call.gateway.plugins
    return Reply({"plugins": [describe(plugins[name]) for name in sorted(plugins)]})


async def get_plugin(call: Call) -> Reply:
    """``GET /plugin/{name}``: one plugin, or 404."""
    name = call.path["name"]
    plugin = call.gateway.plugins.get(name)
    if plugin is None:
        raise not_found(f"unknown plugin {name!r}")
    return Reply(describe_plugin(plugin))


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listPlugins",
        method="GET",
        path="/plugins",
        handler=list_plugins,
        access=Scoped(PLUGIN_RO),
        summary="Loaded plugins and their commands",
        description=(
            "Plugins by name. Each command is its name (PluginSummary), unless"
            " `detail=1` describes it (Plugin)."
        ),
        tag="plugins",
        params=(DETAIL_PARAM,),
        responses=(
            ResponseSpec(status=200, description="Every loaded plugin.", schema="PluginList"),
            BAD_DETAIL,
        ),
    ),
    Route(
        operation_id="getPlugin",
        method="GET",
        path="/plugin/{name}",
        handler=get_plugin,
        access=Scoped(PLUGIN_RO),
        summary="One plugin and its commands",
        tag="plugins",
        params=(NAME_PARAM,),
        responses=(
            ResponseSpec(status=200, description="The plugin.", schema="Plugin"),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown plugin."),
        ),
    ),
)

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Command": object_schema(
        {
            "name": STRING,
            "type": {"type": "string", "enum": ["read", "write"]},
            "description": STRING,
            "input_schema": {"type": ["object", "null"]},
            "output_schema": {"type": ["object", "null"]},
            "timeout": {"type": "number", "description": "Seconds a job may run."},
        }
    ),
    "Plugin": object_schema(
        {
            "name": STRING,
            "version": STRING,
            "description": STRING,
            "parallelism": {"type": "integer", "minimum": 1},
            "commands": {"type": "array", "items": ref("Command")},
        }
    ),
    "PluginSummary": object_schema(
        {
            "name": STRING,
            "version": STRING,
            "description": STRING,
            "commands": {"type": "array", "items": STRING, "description": "Command names."},
        },
        closed=True,
    ),
    # anyOf, not oneOf: an empty list is both forms at once.
    "PluginList": {
        "anyOf": [
            object_schema({"plugins": {"type": "array", "items": ref("PluginSummary")}}),
            object_schema({"plugins": {"type": "array", "items": ref("Plugin")}}),
        ],
        "description": "PluginSummary items by default; Plugin items with `detail=1`.",
    },
}
