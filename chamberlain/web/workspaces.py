"""Kept workspaces: ``GET /workspaces``, ``GET /workspaces/{id}``, ``DELETE /workspaces/{id}``.

A trigger's ``"workspace": true`` gives its job a directory kept after it ends,
shared by its retries, its loop's iterations and its follow-ups
(:mod:`chamberlain.plugins.workspace`).  These routes list them with their jobs and
sizes and remove one no job needs; ``workspaces.ttl`` removes them by itself after
their last use.  :func:`require_workspace_room` is the check a trigger asking for
one passes first: the state must be on disk, and the workspaces' disk budget
(``workspaces.max_bytes``) not spent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from chamberlain.actors.gateway import Gateway
from chamberlain.records import Workspace, WorkspaceRefusal, Worktree
from chamberlain.web.auth import JOBS_RO, JOBS_RW, Scoped
from chamberlain.web.errors import ApiError, bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import DISK_FULL, NO_QUERY, UNAVAILABLE
from chamberlain.web.spec import Param, ResponseSpec, Route

#: A workspace id is a UUID the daemon made: nothing else names a directory.
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: How long a client refused for the disk budget should wait (a TTL sweep may free it).
BUDGET_RETRY_AFTER: Final = 60


async def require_workspace_room(gateway: Gateway) -> None:
    """400 when workspaces cannot be kept here, 507 when their disk budget is spent."""
    if gateway.workspaces.root is None:
        raise bad_request("workspace: workspaces need a state directory (state.path is :memory:)")
    used = await gateway.workspace_usage()
    if used >= gateway.workspace_budget:
        raise ApiError(
            507,
            f"the workspaces' disk budget is spent: {used} bytes in use, workspaces.max_bytes"
            f" is {gateway.workspace_budget}; delete some (DELETE /workspaces/{{id}}) or"
            " raise the budget",
            headers={"Retry-After": str(BUDGET_RETRY_AFTER)},
        )


async def require_worktree(gateway: Gateway, wanted: Worktree) -> Worktree:
    """The worktree a trigger asks for, its base filled in; 400 for an unknown
    repository, 409 for a branch another workspace has checked out."""
    repository = gateway.repositories.get(wanted.repository)
    if repository is None:
        known = ", ".join(sorted(gateway.repositories)) or "none is configured"
        raise bad_request(
            f"workspace.repository: unknown repository {wanted.repository!r} ({known})"
        )
    holder = await gateway.branch_holder(wanted.repository, wanted.branch)
    if holder is not None:
        # Never taken from it, never forced: git keeps one worktree per branch.
        raise ApiError(
            409,
            f"branch {wanted.branch!r} of {wanted.repository!r} is checked out by"
            f" workspace {holder}; delete that workspace or use another branch",
        )
    return attrs.evolve(wanted, base=wanted.base or repository.default_branch)


def _shown(gateway: Gateway, workspace: Workspace) -> dict[str, Any]:
    path = gateway.workspaces.kept_path(workspace.id)
    return workspace.to_json(None if path is None else str(path))


async def _found(call: Call) -> Workspace:
    workspace_id = call.path["workspace_id"]
    # Checked before the store is asked: no other name reaches the file system.
    found = await call.gateway.get_workspace(workspace_id) if _ID.fullmatch(workspace_id) else None
    if found is None:
        raise not_found(f"unknown workspace {workspace_id!r}")
    return found


async def list_workspaces(call: Call) -> Reply:
    """``GET /workspaces``: every kept workspace, the most recently used first."""
    found = await call.gateway.list_workspaces()
    return Reply({"workspaces": [_shown(call.gateway, workspace) for workspace in found]})


async def get_workspace(call: Call) -> Reply:
    """``GET /workspaces/{workspace_id}``: one kept workspace."""
    return Reply(_shown(call.gateway, await _found(call)))


async def delete_workspace(call: Call) -> Reply:
    """``DELETE /workspaces/{workspace_id}``: remove a workspace no job needs."""
    workspace = await _found(call)
    refused = await call.gateway.delete_workspace(workspace)
    if refused is WorkspaceRefusal.IN_USE:
        raise ApiError(
            409,
            f"workspace {workspace.id} is in use by a queued or running job"
            f" ({', '.join(workspace.job_ids)}); it can be deleted once they end",
        )
    if refused is WorkspaceRefusal.UNKNOWN:
        raise not_found(f"unknown workspace {workspace.id!r}")
    return Reply(None, 204)


_WORKSPACE_ID = Param(
    name="workspace_id", location="path", description="The workspace's id.", required=True
)

SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Workspace": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "job_ids": {
                "type": "array",
                "items": {"type": "string", "format": "uuid"},
                "description": "Every job that runs (or ran) in it, oldest first.",
            },
            "repository": {"type": ["string", "null"]},
            "branch": {"type": ["string", "null"]},
            "path": {"type": ["string", "null"], "description": "Its directory."},
            "size_bytes": {
                "type": "integer",
                "minimum": 0,
                "description": "As measured after the last attempt that used it.",
            },
            "in_use": {"type": "boolean", "description": "A job of it is queued or running."},
            "created_at": {"type": "string", "format": "date-time"},
            "last_used_at": {"type": "string", "format": "date-time"},
        },
        "required": [
            "id",
            "job_ids",
            "repository",
            "branch",
            "path",
            "size_bytes",
            "in_use",
            "created_at",
            "last_used_at",
        ],
    },
    "Workspaces": {
        "type": "object",
        "properties": {
            "workspaces": {"type": "array", "items": {"$ref": "#/components/schemas/Workspace"}}
        },
        "required": ["workspaces"],
    },
}

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listWorkspaces",
        method="GET",
        path="/workspaces",
        handler=list_workspaces,
        access=Scoped(JOBS_RO),
        summary="Kept workspaces",
        description=(
            'Every workspace a trigger asked for (`"workspace": true`), the most recently'
            " used first, with its jobs, its directory and its size."
        ),
        tag="workspaces",
        responses=(
            ResponseSpec(status=200, description="The workspaces.", schema="Workspaces"),
            NO_QUERY,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="getWorkspace",
        method="GET",
        path="/workspaces/{workspace_id}",
        handler=get_workspace,
        access=Scoped(JOBS_RO),
        summary="One kept workspace",
        tag="workspaces",
        params=(_WORKSPACE_ID,),
        responses=(
            ResponseSpec(status=200, description="The workspace.", schema="Workspace"),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown workspace."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="deleteWorkspace",
        method="DELETE",
        path="/workspaces/{workspace_id}",
        handler=delete_workspace,
        access=Scoped(JOBS_RW),
        summary="Remove a kept workspace",
        description=(
            "Removes its directory (a symbolic link put in its place is removed, never"
            " followed). Refused while one of its jobs is queued or running."
        ),
        tag="workspaces",
        params=(_WORKSPACE_ID,),
        responses=(
            ResponseSpec(status=204, description="Removed.", schema=None),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown workspace."),
            ResponseSpec(status=409, description="A job of it is queued or running."),
            UNAVAILABLE,
            DISK_FULL,
        ),
    ),
)
