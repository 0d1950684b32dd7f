"""The route table: every route the API serves, gathered from the feature modules.

Each feature module declares its own routes (``ROUTES``) next to their handlers;
this module only puts them in one table, in a fixed order.  The app registers
exactly these routes with the authentication each declares, and ``/openapi.json``
describes exactly these, so a route cannot be served without an access rule or
exist without documentation.  The tests walk this table to check that every
non-public route refuses anonymous and wrongly authenticated callers.  Webhook
routes depend on the configuration and are added by the daemon
(:func:`chamberlain.web.webhooks.webhook_routes`).
"""

from __future__ import annotations

from chamberlain.web import (
    batch,
    catalogue,
    control,
    dashboard,
    discovery,
    docs,
    ductile_views,
    facts,
    health,
    jobs,
    loop_jobs,
    mcp_registry,
    metrics,
    openapi,
    pipelines,
    pull_requests,
    repositories,
    runs,
    schedules,
    secret_registry,
    sessions,
    streams,
    system,
    trigger,
    workspaces,
)
from chamberlain.web.spec import Route

ROUTES: tuple[Route, ...] = (
    *trigger.ROUTES,
    *jobs.ROUTES,
    *batch.ROUTES,
    *catalogue.ROUTES,
    *facts.ROUTES,
    *health.ROUTES,
    *openapi.ROUTES,
    *pipelines.ROUTES,
    *runs.ROUTES,
    *control.ROUTES,
    *sessions.ROUTES,
    *loop_jobs.ROUTES,
    *workspaces.ROUTES,
    *repositories.ROUTES,
    *pull_requests.ROUTES,
    *streams.ROUTES,
    *metrics.ROUTES,
    *docs.ROUTES,
    *schedules.ROUTES,
    *ductile_views.ROUTES,
    *secret_registry.ROUTES,
    *mcp_registry.ROUTES,
    *discovery.ROUTES,
    *system.ROUTES,
    *dashboard.ROUTES,
)
