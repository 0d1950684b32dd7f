"""Repositories: ``GET /repositories`` and ``GET /repositories/{name}``.

The repositories of the config that jobs may have worktrees of
(``"workspace": {"repository", "branch"}``), each with its URL as shown (never a
credential: those go to git through ``GIT_ASKPASS`` only), its forge, when its
mirror was last fetched and what the mirror takes on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chamberlain.web.auth import JOBS_RO, Scoped
from chamberlain.web.errors import not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY, UNAVAILABLE
from chamberlain.web.spec import Param, ResponseSpec, Route


async def list_repositories(call: Call) -> Reply:
    """``GET /repositories``: every configured repository, by name."""
    views = [await call.gateway.repository(name) for name in sorted(call.gateway.repositories)]
    return Reply({"repositories": [view.to_json() for view in views if view is not None]})


async def get_repository(call: Call) -> Reply:
    """``GET /repositories/{name}``: one configured repository."""
    name = call.path["name"]
    view = await call.gateway.repository(name) if name in call.gateway.repositories else None
    if view is None:
        raise not_found(f"unknown repository {name!r}")
    return Reply(view.to_json())


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
        ],
    },
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

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listRepositories",
        method="GET",
        path="/repositories",
        handler=list_repositories,
        access=Scoped(JOBS_RO),
        summary="Configured repositories",
        description=(
            "The repositories jobs may have worktrees of, by name: their URLs without"
            " credentials, their forge, when their mirror was last fetched, its size."
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
        access=Scoped(JOBS_RO),
        summary="One configured repository",
        tag="workspaces",
        params=(Param(name="name", location="path", description="Its name.", required=True),),
        responses=(
            ResponseSpec(status=200, description="The repository.", schema="Repository"),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown repository."),
            UNAVAILABLE,
        ),
    ),
)
