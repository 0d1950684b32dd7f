"""The explorer as a browser meets it, and what the API description leaves out.

``/openapi.json`` lists the API's operations only: the explorer's files, the
favicon and the redirect from ``/docs/`` are served (``in_spec=False``) but are
not operations a client calls.  ``/docs/`` sends the browser to ``/docs``, whose
relative addresses only work from there.  The explorer's script is run under
Node.js against a stand-in for the page: Swagger UI must start once the page is
parsed and the document is in, never waiting for the window's load event.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from importlib import resources
from typing import Any, cast
from urllib.parse import urljoin

import pytest
from quart_trio import QuartTrio
from test_web_api import FakeGateway, api_config

from chamberlain.actors.gateway import Gateway
from chamberlain.web import dashboard
from chamberlain.web.app import create_app
from chamberlain.web.auth import PUBLIC
from chamberlain.web.docs import ASSETS, DOCS_REDIRECT
from chamberlain.web.handler import Call, Reply
from chamberlain.web.openapi import build_openapi
from chamberlain.web.routes import ROUTES
from chamberlain.web.spec import ResponseSpec, Route, check_table

STATIC = resources.files("chamberlain.web") / "static"


@pytest.fixture
def app() -> QuartTrio:
    return create_app(cast(Gateway, FakeGateway()), api_config())


# -- what the document lists ---------------------------------------------------------


async def test_the_document_lists_no_explorer_file_but_every_one_is_served(app: QuartTrio) -> None:
    client = app.test_client()
    doc = await (await client.get("/openapi.json")).get_json()
    hidden = [route for route in ROUTES if not route.in_spec]
    ui_assets = {a.path for a in dashboard.ASSETS}
    assert {route.path for route in hidden} == {*(a.path for a in ASSETS), "/docs/", *ui_assets}
    assert sorted(p for p in doc["paths"] if p.startswith("/docs") or "favicon" in p) == ["/docs"]
    operation_ids = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    assert not operation_ids & {route.operation_id for route in hidden}
    for asset in ASSETS:
        response = await client.get(asset.path)
        assert response.status_code == 200, asset.path
        assert response.content_type == asset.media_type


async def test_docs_with_a_slash_redirects_to_the_page(app: QuartTrio) -> None:
    client = app.test_client()
    response = await client.get("/docs/")
    assert response.status_code == 308
    location = response.headers["Location"]
    assert location == DOCS_REDIRECT
    # Relative, so it lands on the page at the root and behind a proxy's prefix alike.
    assert urljoin("http://host/docs/", location) == "http://host/docs"
    assert urljoin("http://host/chamberlain/docs/", location) == "http://host/chamberlain/docs"
    followed = await client.get(urljoin("/docs/", location))
    assert followed.status_code == 200
    assert followed.mimetype == "text/html"
    # A query is refused here as on every route that takes none.
    refused = await client.get("/docs/?x=1")
    assert refused.status_code == 400
    assert "x" in (await refused.get_json())["error"]


async def test_the_favicon_is_an_svg_the_page_names(app: QuartTrio) -> None:
    client = app.test_client()
    response = await client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    root = ET.fromstring(await response.get_data())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    page = await (await client.get("/docs")).get_data(as_text=True)
    icon = re.search(r'<link rel="icon" href="([^"]+)" type="([^"]+)">', page)
    assert icon is not None
    assert urljoin("http://host/docs", icon.group(1)) == "http://host/favicon.ico"
    assert icon.group(2) == "image/svg+xml"


async def test_a_path_with_a_slash_and_no_twin_still_404s_as_json(app: QuartTrio) -> None:
    response = await app.test_client().get("/jobs/")
    assert response.status_code == 404
    assert response.mimetype == "application/json"


# -- the table's rules ----------------------------------------------------------------


async def _nothing(call: Call) -> Reply:
    return Reply({})


def _route(path: str, *, in_spec: bool = True, operation_id: str = "op") -> Route:
    return Route(
        operation_id=operation_id,
        method="GET",
        path=path,
        handler=_nothing,
        access=PUBLIC,
        summary="A route.",
        tag="test",
        responses=(ResponseSpec(status=200, description="Fine.", schema=None),),
        in_spec=in_spec,
    )


def test_an_operation_of_the_api_may_not_end_with_a_slash() -> None:
    with pytest.raises(ValueError, match="path must not end with '/'"):
        _route("/things/")


def test_a_slashed_route_needs_its_slash_less_twin() -> None:
    slashed = _route("/things/", in_spec=False, operation_id="slashed")
    with pytest.raises(ValueError, match=r"GET /things/: a path ending in '/' needs GET /things"):
        check_table([slashed])
    check_table([_route("/things"), slashed])
    with pytest.raises(ValueError, match="two routes for GET /things"):
        build_openapi([_route("/things"), _route("/things", operation_id="again")])


# -- the explorer's script, run ---------------------------------------------------------

#: A stand-in for the page: records what the explorer's script does, and lets the
#: test decide when the document arrives and when the page is parsed.  It never
#: fires the window's load event.
_HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const [script, outcome, order] = process.argv.slice(1);
const log = [];
const listeners = {};
let answer;
const document = {
  readyState: "loading",
  addEventListener(name, fn) { log.push("document listens to " + name); listeners[name] = fn; },
};
const window = {
  addEventListener(name) { log.push("window listens to " + name); },
};
function fetch(url) {
  log.push("fetch " + url);
  return new Promise((resolve) => { answer = resolve; });
}
function SwaggerUIBundle(config) {
  const { spec, url, dom_id } = config;
  log.push("start " + JSON.stringify({ spec, url, dom_id }));
  return {};
}
SwaggerUIBundle.presets = { apis: "apis" };
const context = { window, document, fetch, SwaggerUIBundle, Promise, Object, Error, JSON };
vm.runInNewContext(fs.readFileSync(script, "utf8"), context);
const settle = () => new Promise((resolve) => setImmediate(resolve));
const steps = {
  document() {
    log.push("-- document arrives");
    const ok = outcome === "ok";
    const json = () => Promise.resolve({ openapi: "3.1.0" });
    if (answer) answer({ ok, status: ok ? 200 : 500, json });
  },
  page() {
    log.push("-- page parsed");
    document.readyState = "interactive";
    if (listeners.DOMContentLoaded) listeners.DOMContentLoaded();
  },
};
(async () => {
  await settle();
  for (const step of order.split(",")) {
    steps[step]();
    await settle();
  }
  console.log(JSON.stringify(log));
})();
"""


def run_explorer(outcome: str, order: str) -> list[str]:
    """What explorer.js does when the document (``outcome``) and the page come in ``order``."""
    node = shutil.which("node")
    if node is None:
        # .ci/run installs Node.js, so CI always runs these.
        pytest.skip("node is not installed")
    done = subprocess.run(
        [node, "-e", _HARNESS, "--", str(STATIC / "explorer.js"), outcome, order],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    log: list[str] = json.loads(done.stdout)
    return log


def _started(line: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(line.removeprefix("start "))
    return config


@pytest.mark.parametrize("order", ["document,page", "page,document"])
def test_the_explorer_starts_once_the_page_is_parsed_and_the_document_is_in(order: str) -> None:
    log = run_explorer("ok", order)
    assert "window listens to load" not in log
    # Asked for at once, while the page is still loading.
    assert "fetch openapi.json" in log
    assert log.index("fetch openapi.json") < min(i for i, s in enumerate(log) if s.startswith("--"))
    starts = [i for i, line in enumerate(log) if line.startswith("start ")]
    assert len(starts) == 1
    # Not before the later of the two, and then at once, with the document fetched.
    last = max(log.index("-- page parsed"), log.index("-- document arrives"))
    assert starts[0] == last + 1
    config = _started(log[starts[0]])
    assert config["spec"] == {"openapi": "3.1.0"}
    assert config["dom_id"] == "#swagger-ui"


@pytest.mark.parametrize("order", ["document,page", "page,document"])
def test_the_explorer_leaves_a_failed_document_to_swagger_ui_to_explain(order: str) -> None:
    log = run_explorer("error", order)
    starts = [i for i, line in enumerate(log) if line.startswith("start ")]
    assert len(starts) == 1
    assert starts[0] > log.index("-- page parsed")
    config = _started(log[starts[0]])
    assert config["url"] == "openapi.json"
    assert "spec" not in config


def test_the_page_runs_the_explorer_before_the_bundle() -> None:
    # The order decides when the document is asked for: the explorer's own small
    # script first, while the large bundle is still on its way.
    html = (STATIC / "docs.html").read_text()
    scripts = re.findall(r'<script src="([^"]+)"></script>', html)
    assert scripts == ["docs/explorer.js", "docs/swagger-ui-bundle.js"]
