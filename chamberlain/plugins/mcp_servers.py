"""The MCP server registry's rules: what a registration holds, and the ``.mcp.json`` it becomes.

Agent plugins (Claude Code's ``--mcp-config``) start the MCP servers a job asks for
from a ``.mcp.json`` in the job's workspace (:mod:`chamberlain.plugins.workspace`).
The registry (``/mcp-servers``) keeps each server as it was written: a command
(argv, started by the agent with ``env``) or an http ``url`` (sent ``headers``).
A value of ``env`` or ``headers`` is literal text that may hold ``${secret:name}``
references to the secret registry.  A reference stays a reference in the store and
in every answer of the API; it is resolved only into the file the agent reads, as
the job starts, so a rotated secret reaches the next job and nothing shows a value.

References are refused in a command's arguments and in a URL: arguments are visible
to every user of the machine (``ps``), and URLs end up in logs.  Any other ``${``
(``${HOME}``) is left as written: Claude Code expands those itself, from the
agent's own environment.

Everything here is plain code: :func:`parse_mcp_server` checks a registration,
:func:`parse_server_names` a trigger's ``mcp_servers``, :func:`secret_references`
lists the secrets a server names, :func:`mcp_references` says where servers name
one secret (a secret in use cannot be deleted), and :func:`mcp_config` and
:func:`workspace_files` build the document, given how to resolve a reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from chamberlain import jsoncodec, sealing
from chamberlain.config.references import MARKER, REFERENCE, name_problem
from chamberlain.jsoncodec import json_kind
from chamberlain.plugins.environment import check_variable_name
from chamberlain.plugins.workspace import MCP_CONFIG_FILE
from chamberlain.records import McpServer

#: The fields a registration may hold.
FIELDS: Final = ("name", "command", "env", "url", "headers")
#: How ``DELETE /secrets/{name}`` names a use of a secret by a server: its prefix.
REFERENCE_PREFIX: Final = "mcp-servers"

MAX_ARGS: Final = 256
MAX_ARG_LENGTH: Final = 4096
MAX_ENTRIES: Final = 128
MAX_VALUE_LENGTH: Final = 16 * 1024
MAX_URL_LENGTH: Final = 2048
#: The most servers one job may ask for.
MAX_PER_JOB: Final = 32

# RFC 9110's token: what a header field name is made of.
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")


class McpServerGone(LookupError):
    """A job names an MCP server the registry no longer holds (deleted since)."""


def server_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name an MCP server (the rule secret names follow), or None."""
    if not isinstance(name, str):
        return f"an MCP server's name must be a string, not {json_kind(name)}"
    problem = sealing.name_problem(name)
    return None if problem is None else f"invalid MCP server name {name!r}: {problem}"


def _references(text: str, where: str) -> list[str]:
    """The secrets ``text`` names, in order; ValueError for a malformed reference."""
    names: list[str] = []
    rest: list[str] = []
    position = 0
    for match in REFERENCE.finditer(text):
        rest.append(text[position : match.start()])
        position = match.end()
        secret = match["secret"]
        if secret is None:
            continue  # $${secret: is the literal text ${secret:
        problem = name_problem(secret)
        if problem is not None:
            raise ValueError(f"{where}: {problem}")
        names.append(secret)
    rest.append(text[position:])
    if any(MARKER in piece for piece in rest):
        raise ValueError(
            f"{where}: unterminated reference: write ${{secret:name}}"
            " (or $${secret: for the literal text)"
        )
    return names


def _text(value: object, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, not {json_kind(value)}")
    if len(value) > limit:
        raise ValueError(f"{where} is longer than {limit} characters")
    if "\x00" in value:
        raise ValueError(f"{where} holds a NUL character")
    return value


def _no_secrets(text: str, where: str) -> None:
    if _references(text, where):
        raise ValueError(
            f"{where}: ${{secret:...}} is allowed only in env and headers values"
            " (arguments and URLs are visible to other users and in logs)"
        )


def _command(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"command must be a list of strings (argv), not {json_kind(value)}")
    if not value:
        raise ValueError("command must not be empty: give the program and its arguments")
    if len(value) > MAX_ARGS:
        raise ValueError(f"command holds {len(value)} arguments; at most {MAX_ARGS}")
    argv = tuple(_text(arg, f"command[{index}]", MAX_ARG_LENGTH) for index, arg in enumerate(value))
    if not argv[0].strip():
        raise ValueError("command[0] must name the program to start")
    for index, arg in enumerate(argv):
        _no_secrets(arg, f"command[{index}]")
    return argv


def _mapping(value: object, field: str, check_key: Callable[[str], str | None]) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be an object of strings, not {json_kind(value)}")
    if len(value) > MAX_ENTRIES:
        raise ValueError(f"{field} holds {len(value)} entries; at most {MAX_ENTRIES}")
    out: dict[str, str] = {}
    for key, item in value.items():
        problem = check_key(key)
        if problem is not None:
            raise ValueError(f"{field}.{key}: {problem}")
        where = f"{field}.{key}"
        text = _text(item, where, MAX_VALUE_LENGTH)
        _references(text, where)
        out[key] = text
    return out


def _env_key(name: str) -> str | None:
    try:
        check_variable_name(name)
    except ValueError as exc:
        # The message may start with the name, which the caller puts first already.
        return str(exc).removeprefix(f"{name}: ")
    return None


def _header_key(name: str) -> str | None:
    if _HEADER_NAME.fullmatch(name):
        return None
    return f"invalid header name {name!r}"


def _header_values(headers: Mapping[str, str]) -> None:
    for key, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"headers.{key} holds a line break")


def _url(value: object) -> str:
    text = _text(value, "url", MAX_URL_LENGTH)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be an http:// or https:// URL with a host, not {text!r}")
    if any(c.isspace() for c in text):
        raise ValueError("url must not contain spaces")
    _no_secrets(text, "url")
    return text


def parse_mcp_server(body: Mapping[str, Any], *, now: float) -> McpServer:
    """The server a registration ``body`` describes; ValueError naming the field otherwise.

    ``{"name", "command": [argv...], "env": {...}}`` for a server the agent starts,
    or ``{"name", "url", "headers": {...}}`` for an http server.  Unknown fields are
    refused.  Whether the secrets named exist is the caller's to check
    (:func:`secret_references`).
    """
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; expected: {', '.join(FIELDS)}")
    if "name" not in body:
        raise ValueError("name is required")
    problem = server_name_problem(body["name"])
    if problem is not None:
        raise ValueError(f"name: {problem}")
    name: str = body["name"]
    # Presence decides, not truthiness: {"command": null, "url": ...} is refused as
    # both, just as the request schema describes it, rather than read as one.
    if "url" not in body:
        if "command" not in body:
            raise ValueError("command is required (a list of strings: argv) unless url is given")
        if body.get("headers"):
            raise ValueError("headers are sent to url servers only; this server has a command")
        return McpServer(
            name=name,
            command=_command(body["command"]),
            env=_mapping(body.get("env", {}), "env", _env_key),
            created_at=now,
        )
    if "command" in body:
        raise ValueError("give either command or url, not both")
    url = body["url"]
    if body.get("env"):
        raise ValueError(
            "env is for servers the agent starts; a url server takes none (send credentials"
            " in headers)"
        )
    headers = _mapping(body.get("headers", {}), "headers", _header_key)
    _header_values(headers)
    return McpServer(name=name, url=_url(url), headers=headers, created_at=now)


def _values(server: McpServer) -> Iterable[tuple[str, str]]:
    """(field path, value) of every value that may hold a reference."""
    for key, value in server.env.items():
        yield f"env.{key}", value
    for key, value in server.headers.items():
        yield f"headers.{key}", value


def secret_references(server: McpServer) -> list[tuple[str, str]]:
    """(field path, secret name) of every reference ``server`` holds, in order."""
    return [
        (where, secret) for where, value in _values(server) for secret in _references(value, where)
    ]


def mcp_references(servers: Iterable[McpServer], secret: str) -> list[str]:
    """Where ``servers`` name ``secret``: ``mcp-servers[github].env.GITHUB_TOKEN`` ..."""
    return [
        f"{REFERENCE_PREFIX}[{server.name}].{where}"
        for server in servers
        for where, name in secret_references(server)
        if name == secret
    ]


def mcp_config(servers: Sequence[McpServer], resolve: Callable[[str], str]) -> dict[str, Any]:
    """The ``.mcp.json`` document (Claude Code's format) for ``servers``, in order.

    ``resolve`` fills in the references of one value; only env and header values
    hold any.
    """
    entries: dict[str, Any] = {}
    for server in servers:
        if server.url is not None:
            entry: dict[str, Any] = {"type": "http", "url": server.url}
            if server.headers:
                entry["headers"] = {key: resolve(value) for key, value in server.headers.items()}
        else:
            entry = {
                "command": server.command[0],
                "args": list(server.command[1:]),
                "env": {key: resolve(value) for key, value in server.env.items()},
            }
        entries[server.name] = entry
    return {"mcpServers": entries}


def workspace_files(
    names: Sequence[str], servers: Iterable[McpServer], resolve: Callable[[str], str]
) -> dict[str, bytes]:
    """The files of a job's workspace: ``.mcp.json`` for the servers ``names`` (in order).

    ``servers`` are those the registry holds of them; a name it no longer holds
    raises :class:`McpServerGone`.  ``resolve`` fills in a value's references (the
    vault's :meth:`~chamberlain.vault.Vault.resolve`; it raises for a secret gone).
    """
    by_name = {server.name: server for server in servers}
    gone = [name for name in names if name not in by_name]
    if gone:
        raise McpServerGone(
            f"MCP server {', '.join(map(repr, gone))} is no longer registered"
            " (deleted after the job was triggered)"
        )
    document = mcp_config([by_name[name] for name in names], resolve)
    return {MCP_CONFIG_FILE: jsoncodec.dumps_bytes(document) + b"\n"}


def parse_server_names(value: object, *, where: str = "mcp_servers") -> tuple[str, ...]:
    """A trigger's ``mcp_servers``: a list of distinct server names; ValueError otherwise."""
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list of MCP server names, not {json_kind(value)}")
    if len(value) > MAX_PER_JOB:
        raise ValueError(
            f"{where} names {len(value)} servers; a job may have at most {MAX_PER_JOB}"
        )
    names: list[str] = []
    for index, item in enumerate(value):
        problem = server_name_problem(item)
        if problem is not None:
            raise ValueError(f"{where}[{index}]: {problem}")
        if item in names:
            raise ValueError(f"{where}[{index}]: {item!r} is named twice")
        names.append(item)
    return tuple(names)
