"""``GET /docs``: an interactive API explorer that works offline.

The explorer is Swagger UI (``swagger-ui-dist``, Apache-2.0; its LICENSE and NOTICE
sit next to the files in ``static/swagger-ui``) reading ``/openapi.json``.  Every
file it needs ships inside the package and is served from here, and the page's
Content-Security-Policy lets the browser load nothing from anywhere else, so the
explorer works on a machine without internet and leaks nothing to a CDN.

Only the page itself is an operation of the API.  Its files, the favicon and the
redirect from ``/docs/`` are served but left out of ``/openapi.json``
(``in_spec=False``): they are how a browser shows the explorer, not something a
client of the API calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chamberlain.web.assets import Asset, asset_routes, static_file
from chamberlain.web.auth import PUBLIC
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY
from chamberlain.web.spec import ResponseSpec, Route

#: Only the page's own origin; inline styles because Swagger UI sets style attributes.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; connect-src 'self';"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Assets change only with the package: let browsers keep them for a day.
_ASSET_CACHE = "public, max-age=86400"


ASSETS: tuple[Asset, ...] = (
    Asset(
        path="/docs/swagger-ui.css",
        resource="swagger-ui/swagger-ui.css",
        media_type="text/css; charset=utf-8",
        operation_id="docsSwaggerUiCss",
    ),
    Asset(
        path="/docs/swagger-ui-bundle.js",
        resource="swagger-ui/swagger-ui-bundle.js",
        media_type="text/javascript; charset=utf-8",
        operation_id="docsSwaggerUiJs",
    ),
    Asset(
        path="/docs/explorer.js",
        resource="explorer.js",
        media_type="text/javascript; charset=utf-8",
        operation_id="docsExplorerJs",
    ),
    Asset(
        path="/docs/explorer.css",
        resource="explorer.css",
        media_type="text/css; charset=utf-8",
        operation_id="docsExplorerCss",
    ),
    # Browsers ask every site for /favicon.ico, whatever page they show; an SVG is
    # what the explorer's page names, and what they accept there.
    Asset(
        path="/favicon.ico",
        resource="favicon.svg",
        media_type="image/svg+xml",
        operation_id="favicon",
    ),
)

#: Where ``/docs/`` sends a browser.  Relative, like every address the page uses, so
#: the explorer also works behind a proxy that serves the API under a prefix.
DOCS_REDIRECT = "../docs"


async def page(call: Call) -> Reply:
    """``GET /docs``: the explorer's page."""
    return Reply(
        static_file("docs.html"),
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


async def to_page(call: Call) -> Reply:
    """``GET /docs/``: a permanent redirect to the explorer's page.

    The page cannot simply be served here too: its relative addresses
    (``docs/explorer.js``) would then point below ``/docs/docs/``.
    """
    call.check_query()
    return Reply({"location": DOCS_REDIRECT}, 308, {"Location": DOCS_REDIRECT})


SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Html": {"type": "string", "description": "An HTML page."},
}

_QUERY_REFUSED = NO_QUERY

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="docs",
        method="GET",
        path="/docs",
        handler=page,
        access=PUBLIC,
        summary="Interactive API explorer (works offline)",
        description="Swagger UI on /openapi.json; every asset is served by the daemon.",
        tag="daemon",
        responses=(
            ResponseSpec(
                status=200,
                description="The explorer's page.",
                schema="Html",
                media_type="text/html",
            ),
            _QUERY_REFUSED,
        ),
    ),
    *asset_routes(ASSETS, headers={"Cache-Control": _ASSET_CACHE}, summary="Explorer asset"),
    Route(
        operation_id="docsTrailingSlash",
        method="GET",
        path="/docs/",
        handler=to_page,
        access=PUBLIC,
        summary="Redirect to /docs",
        tag="daemon",
        responses=(
            ResponseSpec(
                status=308,
                description="The explorer is at /docs.",
                schema=None,
                headers={"Location": "The explorer's page, relative: ../docs."},
            ),
            _QUERY_REFUSED,
        ),
        in_spec=False,
    ),
)
