"""The route table: every route the API serves, in one place.

The app registers exactly these routes with the authentication each declares, and
``/openapi.json`` describes exactly these, so a route cannot be served without an
access rule or exist without documentation.  The tests walk this table to check that
every non-public route refuses anonymous and wrongly authenticated callers.
"""

from __future__ import annotations

from chamberlain.web import (
    batch,
    control,
    docs,
    health,
    jobs,
    metrics,
    openapi,
    pipelines,
    plugins,
    schedules,
    streams,
    trigger,
)
from chamberlain.web.auth import JOBS_RO, PLUGIN_RO, PUBLIC, ByCommand, Scoped
from chamberlain.web.spec import BodySpec, Param, ResponseSpec, Route
from chamberlain.web.synchronous import ASYNC_PARAM

_PLUGIN = Param(name="plugin", location="path", description="The plugin's name.", required=True)
_COMMAND = Param(
    name="command", location="path", description="A command the plugin declares.", required=True
)

_UNAVAILABLE = ResponseSpec(
    status=503,
    description="The daemon did not answer in time (an actor is restarting or overloaded).",
)

_TRIGGER_RESPONSES = (
    ResponseSpec(
        status=202,
        description="The job is committed to the store and queued.",
        schema="TriggerAccepted",
        headers={"Location": "The job's URL."},
    ),
    ResponseSpec(
        status=200,
        description="A job with this dedupe_key stands already; that job is returned.",
        schema="TriggerDuplicate",
        headers={"Location": "The existing job's URL."},
    ),
    ResponseSpec(
        status=400,
        description="Malformed JSON, a non-object body or payload, or an invalid option.",
    ),
    ResponseSpec(status=404, description="Unknown plugin or command."),
    ResponseSpec(status=413, description="The body is larger than api.max_body_size."),
    ResponseSpec(
        status=503,
        description="The daemon is starting or draining, or the store did not answer in time.",
    ),
)

_TRIGGER_DESCRIPTION = (
    "Enqueue a job and answer once it is durably stored. For the `handle` command the"
    " payload is delivered inside an `api.trigger` event. Read commands need"
    " `plugin:ro`, write commands `plugin:rw`. Checks run in this order: token (401),"
    " plugin and command (404), scope (403), body (413, 400), daemon state (503)."
)

_TRIGGER_BODY = BodySpec(
    schema="TriggerRequest",
    description="Optional; an empty body triggers with an empty payload.",
)


def _trigger_route(operation_id: str, path: str, summary: str) -> Route:
    # /trigger/... and /plugin/... are one operation under two paths.
    return Route(
        operation_id=operation_id,
        method="POST",
        path=path,
        handler=trigger.trigger,
        access=ByCommand(),
        summary=summary,
        description=_TRIGGER_DESCRIPTION,
        tag="jobs",
        params=(_PLUGIN, _COMMAND, ASYNC_PARAM),
        body=_TRIGGER_BODY,
        responses=_TRIGGER_RESPONSES,
    )


ROUTES: tuple[Route, ...] = (
    _trigger_route("trigger", "/trigger/{plugin}/{command}", "Run a plugin command as a job"),
    _trigger_route(
        "triggerPlugin",
        "/plugin/{plugin}/{command}",
        "Run a plugin command as a job (same as /trigger)",
    ),
    Route(
        operation_id="getJob",
        method="GET",
        path="/job/{job_id}",
        handler=jobs.get_job,
        access=Scoped(JOBS_RO),
        summary="One job: status, timings, attempts, result",
        tag="jobs",
        params=(jobs.JOB_ID_PARAM, jobs.INCLUDE_PARAM),
        responses=(
            ResponseSpec(status=200, description="The job.", schema="JobDetail"),
            ResponseSpec(status=400, description="An unknown include or query parameter."),
            ResponseSpec(status=404, description="Unknown job."),
            _UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="listJobs",
        method="GET",
        path="/jobs",
        handler=jobs.list_jobs,
        access=Scoped(JOBS_RO),
        summary="Jobs, newest first, filtered and paged",
        tag="jobs",
        params=jobs.LIST_PARAMS,
        responses=(
            ResponseSpec(status=200, description="A page of jobs.", schema="JobList"),
            ResponseSpec(
                status=400,
                description="Unknown parameter, bad status, bad RFC 3339 instant or limit.",
            ),
            _UNAVAILABLE,
        ),
    ),
    batch.ROUTE,
    Route(
        operation_id="listPlugins",
        method="GET",
        path="/plugins",
        handler=plugins.list_plugins,
        access=Scoped(PLUGIN_RO),
        summary="Loaded plugins and their commands",
        tag="plugins",
        responses=(
            ResponseSpec(status=200, description="Every loaded plugin.", schema="PluginList"),
            ResponseSpec(status=400, description="A query parameter was given."),
        ),
    ),
    Route(
        operation_id="getPlugin",
        method="GET",
        path="/plugin/{name}",
        handler=plugins.get_plugin,
        access=Scoped(PLUGIN_RO),
        summary="One plugin and its commands",
        tag="plugins",
        params=(plugins.NAME_PARAM,),
        responses=(
            ResponseSpec(status=200, description="The plugin.", schema="Plugin"),
            ResponseSpec(status=400, description="A query parameter was given."),
            ResponseSpec(status=404, description="Unknown plugin."),
        ),
    ),
    Route(
        operation_id="health",
        method="GET",
        path="/healthz",
        handler=health.healthz,
        access=PUBLIC,
        summary="Liveness and load figures",
        tag="daemon",
        responses=(
            ResponseSpec(status=200, description="The daemon is alive.", schema="Health"),
            ResponseSpec(status=400, description="A query parameter was given."),
            _UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="ready",
        method="GET",
        path="/ready",
        handler=health.ready,
        access=PUBLIC,
        summary="Whether new jobs are accepted",
        tag="daemon",
        responses=(
            ResponseSpec(status=200, description="Accepting jobs.", schema="Ready"),
            ResponseSpec(status=400, description="A query parameter was given."),
            ResponseSpec(
                status=503, description="Starting or draining: not accepting.", schema="NotReady"
            ),
        ),
    ),
    Route(
        operation_id="openapi",
        method="GET",
        path="/openapi.json",
        handler=openapi.document,
        access=PUBLIC,
        summary="This API description (OpenAPI 3.1)",
        tag="daemon",
        responses=(
            ResponseSpec(status=200, description="The document.", schema="OpenApi"),
            ResponseSpec(status=400, description="A query parameter was given."),
        ),
    ),
    *pipelines.ROUTES,
    *control.ROUTES,
    *streams.ROUTES,
    *metrics.ROUTES,
    *docs.ROUTES,
    *schedules.ROUTES,
)
