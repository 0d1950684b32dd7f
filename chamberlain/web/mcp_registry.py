"""The MCP server registry: ``/mcp-servers`` and ``/mcp-servers/{name}``.

``POST /mcp-servers`` registers a server an agent plugin may be given: a command
(argv, with ``env``) or an http ``url`` (with ``headers``).  Values of ``env`` and
``headers`` may name secrets of the registry (``${secret:name}``); each must exist
when the server is registered, and the server then holds the secret in use
(``DELETE /secrets/{name}`` answers 409 naming ``mcp-servers[<name>].env.<VAR>``).
``GET`` shows a server exactly as it was registered, references as references, so
no answer holds a secret.  ``DELETE`` forgets it; a job already triggered with it
then fails when it starts, saying so.  There is no update: delete and register again.

A trigger names servers in ``"mcp_servers": [...]`` (:func:`require_mcp_servers`
checks them); the Runner writes their ``.mcp.json`` into the job's workspace
(:mod:`chamberlain.plugins.workspace`).  The rules are
:mod:`chamberlain.plugins.mcp_servers`'; writing needs ``mcp:rw``, reading
``mcp:ro`` (which ``read:*`` grants).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chamberlain.actors.gateway import Gateway
from chamberlain.plugins.mcp_servers import (
    MAX_ARGS,
    MAX_ENTRIES,
    MAX_PER_JOB,
    parse_mcp_server,
    secret_references,
    server_name_problem,
)
from chamberlain.sealing import NAME_PATTERN
from chamberlain.web.auth import MCP_RO, MCP_RW, Scoped
from chamberlain.web.errors import ApiError, bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import DISK_FULL, NO_QUERY, TOO_LARGE, UNAVAILABLE, decode_json_object
from chamberlain.web.spec import (
    NULLABLE_STRING,
    STRING,
    BodySpec,
    Param,
    ResponseSpec,
    Route,
    object_schema,
    ref,
)


def require_mcp_servers(
    gateway: Gateway, names: Sequence[str], *, path: str = "mcp_servers"
) -> None:
    """400 naming the first of ``names`` that is no registered MCP server."""
    unknown = gateway.unknown_mcp_servers(names) if names else []
    if unknown:
        name = unknown[0]
        raise bad_request(
            f"{path}[{names.index(name)}]: unknown MCP server {name!r}; GET /mcp-servers"
            " lists them, POST /mcp-servers registers one"
        )


def _path_name(call: Call) -> str:
    name = call.path["name"]
    problem = server_name_problem(name)
    if problem is not None:
        raise bad_request(problem)
    return name


async def list_mcp_servers(call: Call) -> Reply:
    """``GET /mcp-servers``: every server, by name, as registered."""
    found = await call.gateway.list_mcp_servers()
    return Reply({"mcp_servers": [server.to_json() for server in found]})


async def get_mcp_server(call: Call) -> Reply:
    """``GET /mcp-servers/{name}``: one server, as registered."""
    name = _path_name(call)
    server = await call.gateway.get_mcp_server(name)
    if server is None:
        raise not_found(f"unknown MCP server {name!r}")
    return Reply(server.to_json())


async def create_mcp_server(call: Call) -> Reply:
    """``POST /mcp-servers``: register a server."""
    body = decode_json_object(await call.read_body())
    try:
        server = parse_mcp_server(body, now=call.site.now())
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    vault = call.gateway.vault
    for where, secret in secret_references(server):
        if vault.get(secret) is None:
            raise bad_request(
                f"{where}: unknown secret {secret!r}; register it first with POST /secrets"
            )
    created = await call.gateway.create_mcp_server(server)
    if created is None:
        raise ApiError(
            409,
            f"MCP server {server.name!r} exists already; DELETE /mcp-servers/{server.name}"
            " first to register it anew",
        )
    return Reply(created.to_json(), 201, headers={"Location": f"/mcp-servers/{created.name}"})


async def delete_mcp_server(call: Call) -> Reply:
    """``DELETE /mcp-servers/{name}``: forget a server."""
    name = _path_name(call)
    if not await call.gateway.delete_mcp_server(name):
        raise not_found(f"unknown MCP server {name!r}")
    return Reply(b"", 204, media_type="text/plain")


_NAME = Param(
    name="name",
    location="path",
    description="The server's name (the key of `mcpServers` in `.mcp.json`).",
    schema={"type": "string", "pattern": NAME_PATTERN},
    required=True,
)
_BAD_NAME = "A name that breaks the rule (a letter, then up to 63 letters, digits, `_.-`)"

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listMcpServers",
        method="GET",
        path="/mcp-servers",
        handler=list_mcp_servers,
        access=Scoped(MCP_RO),
        summary="Every MCP server of the registry, as registered",
        description=(
            "`${secret:name}` references in `env` and `headers` are shown as written;"
            " no answer holds a secret's value."
        ),
        tag="mcp",
        responses=(
            ResponseSpec(status=200, description="Every server, by name.", schema="McpServerList"),
            NO_QUERY,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="createMcpServer",
        method="POST",
        path="/mcp-servers",
        handler=create_mcp_server,
        access=Scoped(MCP_RW),
        summary="Register an MCP server for agent plugins",
        description=(
            "A server the agent starts (`command`, with `env`) or an http server (`url`,"
            " with `headers`). Values of `env` and `headers` may hold `${secret:name}`,"
            " resolved only into the `.mcp.json` of a job that names the server in its"
            " trigger's `mcp_servers`; every secret named must be registered."
        ),
        tag="mcp",
        body=BodySpec(schema="McpServerCreate", description="The server.", required=True),
        responses=(
            ResponseSpec(
                status=201,
                description="Registered.",
                schema="McpServer",
                headers={"Location": "The server's URL."},
            ),
            ResponseSpec(
                status=400,
                description=(
                    "Malformed JSON, an unknown or missing field, a bad name, command (a"
                    " non-empty list of strings, unless url is given), url (http or https),"
                    " env name or value, header, a `${secret:...}` outside env and headers,"
                    " or a secret that is not registered. The message names the field."
                ),
            ),
            ResponseSpec(
                status=409,
                description="A server with this name exists; delete it to register it anew.",
            ),
            TOO_LARGE,
            UNAVAILABLE,
            DISK_FULL,
        ),
    ),
    Route(
        operation_id="getMcpServer",
        method="GET",
        path="/mcp-servers/{name}",
        handler=get_mcp_server,
        access=Scoped(MCP_RO),
        summary="One MCP server, as registered",
        tag="mcp",
        params=(_NAME,),
        responses=(
            ResponseSpec(status=200, description="The server.", schema="McpServer"),
            ResponseSpec(status=400, description=f"{_BAD_NAME}, or a query parameter."),
            ResponseSpec(status=404, description="No server has this name."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="deleteMcpServer",
        method="DELETE",
        path="/mcp-servers/{name}",
        handler=delete_mcp_server,
        access=Scoped(MCP_RW),
        summary="Forget an MCP server",
        description=(
            "A job triggered with it but not started yet fails when it starts, not retried,"
            " saying the server is no longer registered."
        ),
        tag="mcp",
        params=(_NAME,),
        responses=(
            ResponseSpec(status=204, description="Forgotten.", schema=None),
            ResponseSpec(status=400, description=f"{_BAD_NAME}, or a query parameter."),
            ResponseSpec(status=404, description="No server has this name."),
            UNAVAILABLE,
            DISK_FULL,
        ),
    ),
)

_STRINGS: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "maxProperties": MAX_ENTRIES,
}

#: A trigger's ``mcp_servers`` (the trigger and batch schemas use it).
MCP_SERVERS_OPTION: Mapping[str, Any] = {
    "type": "array",
    "items": {"type": "string", "pattern": NAME_PATTERN},
    "uniqueItems": True,
    "maxItems": MAX_PER_JOB,
    "description": (
        "MCP servers of the registry to write into the job's workspace as `.mcp.json`"
        " (secrets resolved there only); the plugin finds it in `workspace_dir`."
    ),
}

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "McpServerCreate": {
        **object_schema(
            {
                "name": {"type": "string", "pattern": NAME_PATTERN},
                "command": {
                    "type": "array",
                    "items": STRING,
                    "minItems": 1,
                    "maxItems": MAX_ARGS,
                    "description": "argv: the program and its arguments (no secrets here).",
                },
                "env": {
                    **_STRINGS,
                    "description": "For a command server: values may hold `${secret:name}`.",
                },
                "url": {
                    "type": "string",
                    "format": "uri",
                    "description": "An http(s) server, instead of a command.",
                },
                "headers": {
                    **_STRINGS,
                    "description": "For a url server: values may hold `${secret:name}`.",
                },
            },
            required=["name"],
            closed=True,
        ),
        "description": "Either `command` (and `env`) or `url` (and `headers`).",
    },
    "McpServer": object_schema(
        {
            "name": STRING,
            "command": {"type": ["array", "null"], "items": STRING},
            "env": {"type": "object", "additionalProperties": STRING},
            "url": NULLABLE_STRING,
            "headers": {"type": "object", "additionalProperties": STRING},
            "created_at": {"type": "string", "format": "date-time"},
        }
    ),
    "McpServerList": object_schema({"mcp_servers": {"type": "array", "items": ref("McpServer")}}),
}
