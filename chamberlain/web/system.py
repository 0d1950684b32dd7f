"""``POST /system/reload``: load the config file again without a restart.

The same reload SIGHUP and ``systemctl reload`` start (see
:mod:`chamberlain.reloading`), answered with what it did: 200 with every change,
each at its YAML path (``restart_required`` for those that wait for a restart), or
422 with every problem of a file that fails its checks, in which case the running
configuration is untouched.  Reloading changes what every caller may do, so it
needs the ``admin`` scope, which only ``*`` implies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chamberlain.actors.gateway import ReloadUnavailable
from chamberlain.records import ChangeKind, ConfigChange, ReloadRefused, rfc3339
from chamberlain.web.auth import ADMIN, Scoped
from chamberlain.web.errors import ApiError, error_body
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY, UNAVAILABLE
from chamberlain.web.spec import STRING, ResponseSpec, Route, object_schema, ref


async def reload_config(call: Call) -> Reply:
    """``POST /system/reload``: reload the configuration, all or nothing."""
    try:
        report = await call.gateway.reload()
    except ReloadUnavailable as exc:
        raise ApiError(409, f"{exc}: there is nothing to reload") from None
    except ReloadRefused as refused:
        return Reply(
            error_body(
                f"{refused.source or 'the config'} has {len(refused.problems)} problem(s);"
                " nothing was changed, the running configuration stays",
                problems=[{"path": p.path, "message": p.message} for p in refused.problems],
            ),
            422,
        )
    loaded_at = rfc3339(report.loaded.loaded_at)
    return Reply(
        {
            "reloaded": True,
            "changes": [change.to_json() for change in report.changes],
            "config_loaded_at": loaded_at,
            "config_hash": report.loaded.config_hash,
            # Ductile's ReloadResponse, which its CLI prints.
            "status": "ok",
            "reloaded_at": loaded_at,
            "message": summary(report.changes),
        }
    )


def summary(changes: Sequence[ConfigChange]) -> str:
    """One line for a person: how many changes, how many wait for a restart."""
    waiting = [c.path for c in changes if c.change is ChangeKind.RESTART_REQUIRED]
    applied = len(changes) - len(waiting)
    line = f"{applied} change{'' if applied == 1 else 's'} applied"
    if waiting:
        line += f", {len(waiting)} waiting for a restart ({', '.join(waiting)})"
    return line


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="reloadConfig",
        method="POST",
        path="/system/reload",
        handler=reload_config,
        access=Scoped(ADMIN),
        summary="Reload the configuration file without a restart",
        description=(
            "Reads the file the daemon was started with, checks all of it (plugins and"
            " their manifests, schedules, routes, pipelines, webhook endpoints, secret"
            " references) and applies it at once, or nothing of it. Jobs running keep"
            " the plugin they started with; queued jobs of a removed plugin end dead."
            " Changes to what is read at start only (a listener, the state path) are"
            " listed as `restart_required`; the old value stays until a restart."
            " SIGHUP and `systemctl reload` do the same."
        ),
        tag="daemon",
        responses=(
            ResponseSpec(
                status=200,
                description="Applied: every change, at its YAML path.",
                schema="ReloadReport",
            ),
            NO_QUERY,
            ResponseSpec(
                status=409,
                description="The daemon was started without a config file.",
            ),
            ResponseSpec(
                status=422,
                description=(
                    "The file has problems, each named by its YAML path: nothing was"
                    " changed, the running configuration stays."
                ),
                schema="ReloadRefused",
            ),
            UNAVAILABLE,
        ),
    ),
)

_CHANGE = object_schema(
    {
        "path": {**STRING, "description": "The YAML path, as `plugins.echo`."},
        "change": {
            "type": "string",
            "enum": ["added", "removed", "changed", "restart_required"],
            "description": "`restart_required`: read, not applied; the old value stays.",
        },
        "detail": {**STRING, "description": "What changed, in a few words (never a secret)."},
    },
    required=("path", "change"),
)

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "ConfigChange": _CHANGE,
    "ReloadReport": object_schema(
        {
            "reloaded": {"const": True},
            "changes": {"type": "array", "items": ref("ConfigChange")},
            "config_loaded_at": {**STRING, "format": "date-time"},
            "config_hash": {**STRING, "description": "`sha256:<hex>` of the file's bytes."},
            "status": {"const": "ok", "description": "As Ductile answers."},
            "reloaded_at": {
                **STRING,
                "format": "date-time",
                "description": "As Ductile answers: `config_loaded_at`.",
            },
            "message": {
                **STRING,
                "description": "How many changes applied and how many wait for a restart.",
            },
        },
        required=(
            "reloaded",
            "changes",
            "config_loaded_at",
            "config_hash",
            "status",
            "reloaded_at",
            "message",
        ),
    ),
    "ReloadRefused": object_schema(
        {
            "error": STRING,
            "problems": {
                "type": "array",
                "items": object_schema(
                    {
                        "path": {
                            **STRING,
                            "description": "The YAML path (empty for the file as a whole).",
                        },
                        "message": STRING,
                    },
                    required=("path", "message"),
                ),
            },
        },
        required=("error", "problems"),
    ),
}
