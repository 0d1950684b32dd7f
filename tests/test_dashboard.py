"""``GET /whoami`` and the files of ``/ui``, before a fake Gateway (no browser).

The browser tests (tests/test_dashboard_e2e.py) show what a user sees; these pin
the access rule of ``/whoami`` and the headers every dashboard answer carries.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import cast

import pytest
from quart_trio import QuartTrio
from test_web_api import FakeGateway, api_config, call

from chamberlain.actors.gateway import Gateway
from chamberlain.web import dashboard
from chamberlain.web.app import create_app
from chamberlain.web.auth import AUTHENTICATED
from chamberlain.web.routes import ROUTES


@pytest.fixture
def app() -> QuartTrio:
    return create_app(cast(Gateway, FakeGateway()), api_config())


@pytest.mark.parametrize(
    ("who", "name", "scopes"),
    [
        ("admin", "api_key", ["*"]),
        ("reader", "reader", ["read:*"]),
        # A token whose scopes have nothing to do with jobs or the daemon still may ask.
        ("ro", "ro", ["plugin:ro"]),
        ("rw", "rw", ["jobs:rw", "plugin:rw"]),
    ],
)
async def test_whoami_answers_any_valid_token(
    app: QuartTrio, who: str, name: str, scopes: list[str]
) -> None:
    status, body, _ = await call(app, "GET", "/whoami", who=who)
    assert status == 200
    assert body == {"name": name, "scopes": scopes}


async def test_whoami_without_a_valid_token_is_401(app: QuartTrio) -> None:
    status, body, headers = await call(app, "GET", "/whoami", who=None)
    assert status == 401
    assert body["error"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await call(
        app, "GET", "/whoami", who=None, headers={"Authorization": "Bearer nope"}
    )
    assert (status, body["error"]) == (401, "invalid token")


async def test_whoami_refuses_a_query(app: QuartTrio) -> None:
    status, body, _ = await call(app, "GET", "/whoami?x=1", who="reader")
    assert status == 400
    assert body["error"]


def test_whoami_is_the_only_route_for_any_authenticated_caller() -> None:
    assert [r.path for r in ROUTES if r.access == AUTHENTICATED] == ["/whoami"]


async def test_the_page_and_every_asset_carry_the_security_headers(app: QuartTrio) -> None:
    client = app.test_client()
    paths = {"/ui": "text/html; charset=utf-8"} | {a.path: a.media_type for a in dashboard.ASSETS}
    for path, media_type in paths.items():
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.content_type == media_type
        for name, value in dashboard.SECURITY_HEADERS.items():
            assert response.headers[name] == value, (path, name)
        assert response.headers["Cache-Control"]
    csp = dashboard.CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp


async def test_the_page_is_in_the_document_and_its_assets_are_not(app: QuartTrio) -> None:
    client = app.test_client()
    doc = await (await client.get("/openapi.json")).get_json()
    assert doc["paths"]["/ui"]["get"]["security"] == []
    assert not [p for p in doc["paths"] if p.startswith("/ui/")]
    whoami = doc["paths"]["/whoami"]["get"]
    assert whoami["security"] == [{"bearerAuth": []}]
    assert "x-required-scope" not in whoami


def test_every_file_the_page_names_ships_in_the_package() -> None:
    shipped = resources.files("chamberlain.web") / "static" / "ui"
    names = {entry.name for entry in shipped.iterdir()}
    assert names == {"index.html", *(a.resource.split("/", 1)[1] for a in dashboard.ASSETS)}
    page = (shipped / "index.html").read_text(encoding="utf-8")
    assert 'src="ui/app.js"' in page
    assert 'href="ui/style.css"' in page
    # Every module one script imports is served too.
    for asset in dashboard.ASSETS:
        if asset.resource.endswith(".js"):
            text = (shipped / asset.resource.split("/", 1)[1]).read_text(encoding="utf-8")
            for imported in re.findall(r'from "\./([\w.]+)"', text):
                assert f"ui/{imported}" in {a.resource for a in dashboard.ASSETS}, imported


@pytest.mark.parametrize("path", ["/ui?x=1", "/ui/nope.js"])
async def test_refusals_under_ui_carry_the_security_headers_too(app: QuartTrio, path: str) -> None:
    response = await (app.test_client()).get(path)
    assert response.status_code in (400, 404), path
    assert (await response.get_json())["error"]
    for name, value in dashboard.SECURITY_HEADERS.items():
        assert response.headers[name] == value, (path, name)


async def test_other_paths_do_not_get_the_dashboard_s_policy(app: QuartTrio) -> None:
    response = await (app.test_client()).get("/uix")
    assert response.status_code == 404
    assert "Content-Security-Policy" not in response.headers
