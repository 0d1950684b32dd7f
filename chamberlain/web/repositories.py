"""Repositories: ``/repositories``, ``/repositories/{name}`` and their syncs.

The repositories jobs may have worktrees of (``"workspace": {"repository",
"branch"}``): those of the config's ``repositories:`` and those added here
(``POST /repositories``, kept in the store), each shown with its URL (never a
credential: a token goes to git through ``GIT_ASKPASS`` only), its forge, when its
mirror was last fetched and what the mirror takes on disk.

An added repository follows the config's rules, field for field, with one more: its
token is a ``${secret:name}`` reference to a secret already registered (``POST
/secrets``), so the store never holds a token and ``DELETE /secrets/{name}`` says
where it is used.  ``DELETE`` forgets an added one no workspace is a worktree of,
and its mirror.  A sync (``git fetch --prune`` on the mirror, a clone the first
time) is a job of the built-in ``core.repository`` plugin, answered 202 to poll
with ``GET /job/{id}``.  Reading needs ``repos:ro`` (which ``read:*`` grants),
everything else ``repos:rw``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from werkzeug.routing import BaseConverter

from chamberlain.config import ConfigError, parse_repository
from chamberlain.config.references import REFERENCE_PATTERN
from chamberlain.records import Enqueued, RepositoryRefusal
from chamberlain.web.auth import REPOS_RO, REPOS_RW, Scoped
from chamberlain.web.errors import ApiError, bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import (
    DISK_FULL,
    NO_QUERY,
    TOO_LARGE,
    UNAVAILABLE,
    decode_json_object,
    not_accepting,
)
from chamberlain.web.jobs import POLL_AFTER_DOC, accepted_headers
from chamberlain.web.spec import BodySpec, Param, ResponseSpec, Route, object_schema

_WHOLE_REFERENCE: Final = re.compile(rf"^{REFERENCE_PATTERN}$")


class RepositoryName(BaseConverter):
    """A ``{name}`` of ``/repositories/{name}``: any one segment but ``sync``.

    ``/repositories/sync`` is the route that syncs them all; without this, its path
    would also match ``GET`` and ``DELETE /repositories/{name}`` (no repository
    can be named ``sync``: the config's rules reserve it).
    """

    regex = r"(?!sync$)[^/]+"


async def list_repositories(call: Call) -> Reply:
    """``GET /repositories``: every repository, by name."""
    views = [await call.gateway.repository(name) for name in call.gateway.repositories]
    return Reply({"repositories": [view.to_json() for view in views if view is not None]})


async def get_repository(call: Call) -> Reply:
    """``GET /repositories/{name}``: one repository."""
    name = call.path["name"]
    view = await call.gateway.repository(name)
    if view is None:
        raise not_found(f"unknown repository {name!r}")
    return Reply(view.to_json())


async def add_repository(call: Call) -> Reply:
    """``POST /repositories``: add one, kept in the store."""
    body = decode_json_object(await call.read_body())
    spec = {key: value for key, value in body.items() if key != "name"}
    if "name" not in body:
        raise bad_request("name: required (the repository's name, as triggers give it)")
    try:
        config = parse_repository(body["name"], spec)
    except ConfigError as exc:
        raise bad_request("; ".join(exc.problems)) from None
    name = str(body["name"])
    if config.token is not None:
        reference = _WHOLE_REFERENCE.match(config.token)
        if reference is None:
            raise bad_request(
                "token: must be a reference to a registered secret, ${secret:name}; register"
                " the token with POST /secrets first (the store keeps no token)"
            )
        if call.gateway.vault.get(reference["secret"]) is None:
            raise bad_request(
                f"token: unknown secret {reference['secret']!r}; register it first with"
                " POST /secrets"
            )
    view = await call.gateway.add_repository(name, config, spec)
    if view is None:
        where = call.gateway.repositories.source(name)
        raise ApiError(
            409,
            f"repository {name!r} exists already"
            + (
                " in the config's repositories"
                if where == "config"
                else f"; DELETE /repositories/{name} first to add it anew"
            ),
        )
    return Reply(view.to_json(), 201, headers={"Location": f"/repositories/{name}"})


_NOT_REMOVED: Final[Mapping[RepositoryRefusal, str]] = {
    RepositoryRefusal.CONFIGURED: "it is one of the config's repositories; edit the config",
    RepositoryRefusal.IN_USE: (
        "a workspace is a worktree of it; DELETE /workspaces/{id} first (GET /workspaces"
        " lists them)"
    ),
}


async def delete_repository(call: Call) -> Reply:
    """``DELETE /repositories/{name}``: forget an added repository, and its mirror."""
    name = call.path["name"]
    refused = await call.gateway.remove_repository(name)
    if refused is RepositoryRefusal.UNKNOWN:
        raise not_found(f"unknown repository {name!r}")
    if refused is not None:
        raise ApiError(409, f"repository {name!r} was not removed: {_NOT_REMOVED[refused]}")
    return Reply(b"", 204, media_type="text/plain")


def _syncs(enqueued: Sequence[Enqueued], names: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"repository": name, "job_id": made.job.id, "status": made.job.status.value}
        for name, made in zip(names, enqueued, strict=True)
    ]


async def _sync(call: Call, names: Sequence[str]) -> Sequence[Enqueued]:
    refusal = not_accepting(call.gateway.lifecycle)
    if refusal is not None:
        raise refusal
    assert call.identity is not None  # an authenticated route
    return await call.gateway.sync_repositories(names, submitted_by=call.identity.submitted_by)


async def sync_repository(call: Call) -> Reply:
    """``POST /repositories/{name}/sync``: fetch its mirror, as a job; 202 to poll."""
    name = call.path["name"]
    if name not in call.gateway.repositories:
        raise not_found(f"unknown repository {name!r}")
    (made,) = await _sync(call, [name])
    return Reply(_syncs([made], [name])[0], 202, headers=accepted_headers(made.job.id))


async def sync_repositories(call: Call) -> Reply:
    """``POST /repositories/sync``: fetch every repository's mirror, one job each."""
    names = list(call.gateway.repositories)
    made = await _sync(call, names) if names else ()
    return Reply({"syncs": _syncs(made, names)}, 202)


SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Repository": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "url": {"type": "string", "description": "The remote, without credentials."},
            "default_branch": {"type": "string"},
            "forge": {"type": "string", "enum": ["github", "gitlab", "none"]},
            "forge_repo": {"type": ["string", "null"], "description": "owner/name."},
            "api_url": {"type": ["string", "null"]},
            "last_sync_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "When its mirror was last fetched (null: not yet).",
            },
            "mirror_bytes": {"type": "integer", "minimum": 0},
            "source": {
                "type": "string",
                "enum": ["config", "api"],
                "description": "The config's `repositories:`, or added with POST /repositories.",
            },
        },
        "required": [
            "name",
            "url",
            "default_branch",
            "forge",
            "forge_repo",
            "api_url",
            "last_sync_at",
            "mirror_bytes",
            "source",
        ],
    },
    "RepositoryRequest": object_schema(
        {
            "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
            "url": {
                "type": "string",
                "minLength": 1,
                "description": (
                    "https://, ssh://, user@host:path, file:// or a path; no credentials."
                ),
            },
            "default_branch": {"type": "string", "minLength": 1},
            "token": {
                "type": ["string", "null"],
                "description": (
                    "`${secret:name}`: a secret of the registry, never the token itself."
                ),
            },
            "forge": {"type": ["string", "null"], "enum": ["github", "gitlab", "none", None]},
            "forge_repo": {"type": ["string", "null"], "minLength": 1},
            "api_url": {"type": ["string", "null"], "minLength": 1},
            "author": {
                "type": ["object", "null"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "email": {"type": "string", "minLength": 1},
                },
                "additionalProperties": False,
            },
        },
        required=["name", "url"],
        closed=True,
    ),
    "RepositorySync": object_schema(
        {
            "repository": {"type": "string"},
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"$ref": "#/components/schemas/JobStatus"},
        }
    ),
    "RepositorySyncs": object_schema(
        {"syncs": {"type": "array", "items": {"$ref": "#/components/schemas/RepositorySync"}}}
    ),
    "Repositories": {
        "type": "object",
        "properties": {
            "repositories": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Repository"},
            }
        },
        "required": ["repositories"],
    },
}

_NAME = Param(name="name", location="path", description="Its name.", required=True)
_BY_NAME = {"name": "repository"}

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listRepositories",
        method="GET",
        path="/repositories",
        handler=list_repositories,
        access=Scoped(REPOS_RO),
        summary="Repositories",
        description=(
            "The repositories jobs may have worktrees of, by name (the config's and those"
            " added with POST /repositories): their URLs without credentials, their forge,"
            " when their mirror was last fetched, its size."
        ),
        tag="workspaces",
        responses=(
            ResponseSpec(status=200, description="The repositories.", schema="Repositories"),
            NO_QUERY,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="getRepository",
        method="GET",
        path="/repositories/{name}",
        handler=get_repository,
        access=Scoped(REPOS_RO),
        summary="One repository",
        tag="workspaces",
        params=(_NAME,),
        converters=_BY_NAME,
        responses=(
            ResponseSpec(status=200, description="The repository.", schema="Repository"),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown repository."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="addRepository",
        method="POST",
        path="/repositories",
        handler=add_repository,
        access=Scoped(REPOS_RW),
        summary="Add a repository",
        description=(
            "Kept in the store, by the rules of the config's `repositories:`; its token is"
            " a `${secret:name}` of the registry. Usable by the next trigger. See"
            " docs/WORKSPACES.md."
        ),
        tag="workspaces",
        body=BodySpec(schema="RepositoryRequest", description="The repository.", required=True),
        responses=(
            ResponseSpec(
                status=201,
                description="Added.",
                schema="Repository",
                headers={"Location": "The repository's URL."},
            ),
            ResponseSpec(status=400, description="A bad body or a query parameter."),
            ResponseSpec(status=409, description="The name is taken."),
            TOO_LARGE,
            DISK_FULL,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="deleteRepository",
        method="DELETE",
        path="/repositories/{name}",
        handler=delete_repository,
        access=Scoped(REPOS_RW),
        summary="Remove a repository added with POST /repositories, and its mirror",
        tag="workspaces",
        params=(_NAME,),
        converters=_BY_NAME,
        responses=(
            ResponseSpec(status=204, description="Removed.", schema=None),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown repository."),
            ResponseSpec(
                status=409,
                description="One of the config's, or a workspace is a worktree of it.",
            ),
            DISK_FULL,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="syncRepository",
        method="POST",
        path="/repositories/{name}/sync",
        handler=sync_repository,
        access=Scoped(REPOS_RW),
        summary="Fetch a repository's mirror, as a job",
        description=(
            "`git fetch --prune` on its bare mirror (a clone the first time), as a job of"
            " the built-in `core.repository` plugin: poll `GET /job/{id}`. Tried once."
        ),
        tag="workspaces",
        params=(_NAME,),
        converters=_BY_NAME,
        responses=(
            ResponseSpec(
                status=202,
                description="The sync job is committed and queued.",
                schema="RepositorySync",
                headers={"Location": "The job's URL, to poll.", "Retry-After": POLL_AFTER_DOC},
            ),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown repository."),
            DISK_FULL,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="syncRepositories",
        method="POST",
        path="/repositories/sync",
        handler=sync_repositories,
        access=Scoped(REPOS_RW),
        summary="Fetch every repository's mirror, one job each",
        tag="workspaces",
        responses=(
            ResponseSpec(
                status=202, description="The sync jobs, committed.", schema="RepositorySyncs"
            ),
            NO_QUERY,
            DISK_FULL,
            UNAVAILABLE,
        ),
    ),
)
