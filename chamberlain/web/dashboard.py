"""``GET /ui``: the dashboard a browser shows, and ``GET /whoami`` that it asks first.

The dashboard is plain ES modules, a stylesheet and one HTML page, shipped in
``static/ui`` and served from here: no build step, nothing from a CDN, so it works
on a machine without internet.  It talks to the daemon only through the public API,
with the token the user typed in, so it can do exactly what that token may do.

Every answer under ``/ui`` carries a strict Content-Security-Policy (no inline
script or style, nothing from another origin) and refuses to be framed.  Only the
page is an operation of the API; its files are served but left out of
``/openapi.json`` (``in_spec=False``), like the explorer's (:mod:`.docs`).

``GET /whoami`` answers any valid token with its name and scopes, so the
dashboard hides the buttons the token may not use (the server refuses them anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chamberlain.web.assets import Asset, asset_routes, static_file
from chamberlain.web.auth import AUTHENTICATED, PUBLIC
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY
from chamberlain.web.spec import STRING, ResponseSpec, Route, object_schema

#: Nothing but the page's own files and its own API: no inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

#: Where the dashboard is served.
DASHBOARD = "/ui"

#: Sent with the page, every asset and every refusal under :data:`DASHBOARD`.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

#: The page is small and names the assets: always ask again, so an upgrade shows.
_PAGE_CACHE = "no-cache"
#: Assets change only with the package; revalidated after an hour.
_ASSET_CACHE = "public, max-age=3600"

_JS = "text/javascript; charset=utf-8"


ASSETS: tuple[Asset, ...] = (
    Asset(
        path="/ui/app.js",
        resource="ui/app.js",
        media_type=_JS,
        operation_id="uiAppJs",
    ),
    Asset(
        path="/ui/api.js",
        resource="ui/api.js",
        media_type=_JS,
        operation_id="uiApiJs",
    ),
    Asset(
        path="/ui/views.js",
        resource="ui/views.js",
        media_type=_JS,
        operation_id="uiViewsJs",
    ),
    Asset(
        path="/ui/dom.js",
        resource="ui/dom.js",
        media_type=_JS,
        operation_id="uiDomJs",
    ),
    Asset(
        path="/ui/style.css",
        resource="ui/style.css",
        media_type="text/css; charset=utf-8",
        operation_id="uiStyleCss",
    ),
)


def _headers(cache: str) -> dict[str, str]:
    return {**SECURITY_HEADERS, "Cache-Control": cache}


async def page(call: Call) -> Reply:
    """``GET /ui``: the dashboard's page."""
    return Reply(
        static_file("ui/index.html"),
        media_type="text/html; charset=utf-8",
        headers=_headers(_PAGE_CACHE),
    )


async def whoami(call: Call) -> Reply:
    """``GET /whoami``: the calling token's name and scopes."""
    identity = call.identity
    # An Authenticated route always has an identity; the check keeps mypy honest.
    assert identity is not None
    return Reply({"name": identity.name, "scopes": sorted(identity.scopes)})


SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Whoami": object_schema(
        {
            "name": {**STRING, "description": "The token's name in `api.auth.tokens`."},
            "scopes": {
                "type": "array",
                "items": STRING,
                "description": "The scopes the token holds, sorted.",
            },
        },
        required=("name", "scopes"),
    ),
}

_PAGE_HEADERS = {
    "Content-Security-Policy": "Only the daemon's own files; no inline script or style.",
    "X-Frame-Options": "DENY.",
    "Referrer-Policy": "no-referrer.",
    "Cache-Control": "How long a browser may keep the file.",
}

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="whoami",
        method="GET",
        path="/whoami",
        handler=whoami,
        access=AUTHENTICATED,
        summary="The calling token's name and scopes",
        description="Any valid token may ask; the dashboard hides what its scopes do not allow.",
        tag="daemon",
        responses=(
            ResponseSpec(status=200, description="Who is calling.", schema="Whoami"),
            NO_QUERY,
        ),
    ),
    Route(
        operation_id="dashboard",
        method="GET",
        path="/ui",
        handler=page,
        access=PUBLIC,
        summary="Web dashboard (works offline)",
        description=(
            "Jobs, queue, plugins and live streams in a browser; every asset is served"
            " by the daemon. The page asks for a token and uses the API with it."
        ),
        tag="daemon",
        responses=(
            ResponseSpec(
                status=200,
                description="The dashboard's page.",
                schema="Html",
                media_type="text/html",
                headers=_PAGE_HEADERS,
            ),
            NO_QUERY,
        ),
    ),
    *asset_routes(
        ASSETS,
        headers=_headers(_ASSET_CACHE),
        summary="Dashboard asset",
        documented=_PAGE_HEADERS,
    ),
)
