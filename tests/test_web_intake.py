"""What every work-taking route shares, and how the route table and schemas are gathered.

The body decoding and the "not accepting work" refusal are plain functions tested
here directly; the route-level tests (test_web_api, test_batch_api ...) show the
same refusals through the app.  The table and the component schemas are gathered
from the feature modules: the tests below pin that every route and schema comes
from exactly one of them, in the order the API has always listed them.
"""

from __future__ import annotations

import pytest

from chamberlain.actors.gateway import Lifecycle, Phase
from chamberlain.config import WebhookEndpointConfig, WebhooksConfig
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
    relay_ingress,
    repositories,
    runs,
    schedules,
    secret_registry,
    sessions,
    streams,
    system,
    trigger,
    webhooks,
    workspaces,
)
from chamberlain.web.errors import ApiError
from chamberlain.web.intake import MAX_JSON_DEPTH, decode_json_object, not_accepting
from chamberlain.web.routes import ROUTES

FEATURES = (
    trigger,
    jobs,
    batch,
    catalogue,
    facts,
    health,
    openapi,
    pipelines,
    runs,
    control,
    sessions,
    loop_jobs,
    workspaces,
    repositories,
    pull_requests,
    streams,
    metrics,
    docs,
    schedules,
    ductile_views,
    secret_registry,
    mcp_registry,
    discovery,
    system,
    dashboard,
)


def nested(depth: int) -> bytes:
    return b'{"a": ' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("raw", [b"", b"  \n\t", b"{}"])
def test_an_empty_body_is_an_empty_object(raw: bytes) -> None:
    assert decode_json_object(raw) == {}


def test_a_json_object_is_decoded() -> None:
    assert decode_json_object(b'{"payload": {"a": [1, 2.5, null, true]}}') == {
        "payload": {"a": [1, 2.5, None, True]}
    }


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff", "not valid UTF-8"),
        (b"{", "malformed JSON"),
        (b'{"a": NaN}', "malformed JSON"),
        (b'{"a": -Infinity}', "malformed JSON"),
        (b"[1]", "not an array"),
        (b"3", "not a number"),
        (b'"x"', "not a string"),
        (b"null", "not null"),
        (b"true", "not a boolean"),
        (nested(MAX_JSON_DEPTH + 1), f"nested more than {MAX_JSON_DEPTH} levels"),
        (b"[" * 100_000 + b"]" * 100_000, f"nested more than {MAX_JSON_DEPTH} levels"),
    ],
)
def test_anything_but_a_json_object_is_400(raw: bytes, fragment: str) -> None:
    with pytest.raises(ApiError) as refused:
        decode_json_object(raw)
    assert refused.value.status == 400
    assert fragment in refused.value.message


def test_a_body_exactly_at_the_depth_limit_is_fine() -> None:
    assert decode_json_object(nested(MAX_JSON_DEPTH))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"payload": {"key": "\\ud800"}}', "lone surrogate (U+D800) at payload.key"),
        (b'{"payload": {"\\ud800": 1}}', "lone surrogate (U+D800) in a key of payload"),
        (b'{"dedupe_key": "\\udfff"}', "at dedupe_key"),
        (b'{"payload": {"n": 1e400}}', "number at payload.n is out of range"),
        (b'{"payload": {"a": 1, "a": 2}}', 'duplicate key "a"'),
        (b'{"n": ' + b"1" * 4301 + b"}", "integer too long: more than 4300 digits"),
    ],
)
def test_json_the_decoder_refuses_is_400_naming_the_field(raw: bytes, fragment: str) -> None:
    with pytest.raises(ApiError) as refused:
        decode_json_object(raw)
    assert refused.value.status == 400
    assert refused.value.message.startswith("malformed JSON in request body: ")
    assert fragment in refused.value.message
    assert "set_int_max_str_digits" not in refused.value.message


def test_a_ready_daemon_accepts_work() -> None:
    assert not_accepting(Lifecycle(phase=Phase.READY)) is None


def test_a_starting_daemon_asks_to_retry_shortly() -> None:
    refusal = not_accepting(Lifecycle(phase=Phase.STARTING))
    assert refusal is not None
    assert refusal.status == 503
    assert "starting" in refusal.message
    assert refusal.headers == {"Retry-After": "1"}


def test_a_draining_daemon_refuses_without_a_retry_hint() -> None:
    refusal = not_accepting(Lifecycle(phase=Phase.DRAINING))
    assert refusal is not None
    assert refusal.status == 503
    assert "draining" in refusal.message
    assert "Retry-After" not in refusal.headers


def test_the_table_is_every_feature_module_s_routes_in_order() -> None:
    assert sorted(r.operation_id for r in ROUTES) == sorted(
        r.operation_id for module in FEATURES for r in module.ROUTES
    )
    # The order clients and docs have always seen.
    assert [r.operation_id for r in ROUTES] == [
        "trigger",
        "triggerPlugin",
        "getJob",
        "listJobs",
        "submitJobs",
        "listPlugins",
        "getPlugin",
        "listPluginFacts",
        "health",
        "ready",
        "openapi",
        "startPipeline",
        "listPipelines",
        "getJobTree",
        "listRuns",
        "getRun",
        "runEvents",
        "runPause",
        "runResume",
        "runCancel",
        "runRunNextStep",
        "runRetryLatest",
        "approveStep",
        "rejectStep",
        "cancelJob",
        "retryJob",
        "getQueue",
        "sendMessage",
        "completeSession",
        "instructJob",
        "getIterations",
        "stopLoop",
        "listWorkspaces",
        "getWorkspace",
        "deleteWorkspace",
        "listRepositories",
        "getRepository",
        "addRepository",
        "deleteRepository",
        "syncRepository",
        "syncRepositories",
        "openPullRequest",
        "streamJob",
        "streamEvents",
        "metrics",
        "docs",
        "docsSwaggerUiCss",
        "docsSwaggerUiJs",
        "docsExplorerJs",
        "docsExplorerCss",
        "favicon",
        "docsTrailingSlash",
        "listSchedules",
        "resetScheduleBreaker",
        "listJobLogs",
        "listSchedulerJobs",
        "listSecrets",
        "createSecret",
        "getSecret",
        "rotateSecret",
        "deleteSecret",
        "listMcpServers",
        "createMcpServer",
        "getMcpServer",
        "deleteMcpServer",
        "index",
        "listSkills",
        "getPluginOpenapi",
        "aiPluginManifest",
        "reloadConfig",
        "whoami",
        "dashboard",
        "uiAppJs",
        "uiApiJs",
        "uiViewsJs",
        "uiDomJs",
        "uiStyleCss",
    ]


def test_every_schema_comes_from_exactly_one_module() -> None:
    owners = [*FEATURES, webhooks, relay_ingress]
    for module in owners:
        if module is openapi:
            continue
        assert set(module.SCHEMAS) <= set(openapi.SCHEMAS), module.__name__
    names = [name for module in owners if module is not openapi for name in module.SCHEMAS]
    assert len(names) == len(set(names))


def test_a_schema_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'Job' is defined twice"):
        openapi.merge_schemas({"Job": {}}, {"Other": {}}, {"Job": {}})


def test_every_route_that_writes_documents_the_507_of_a_full_disk() -> None:
    writes = {
        "trigger",
        "triggerPlugin",
        "submitJobs",
        "startPipeline",
        "cancelJob",
        "retryJob",
        "sendMessage",
        "completeSession",
        "instructJob",
        "stopLoop",
        "deleteWorkspace",
        "addRepository",
        "deleteRepository",
        "syncRepository",
        "syncRepositories",
        "openPullRequest",
        "runPause",
        "runResume",
        "runCancel",
        "runRunNextStep",
        "runRetryLatest",
        "approveStep",
        "rejectStep",
        "createSecret",
        "rotateSecret",
        "deleteSecret",
        "createMcpServer",
        "deleteMcpServer",
    }
    documented = {
        route.operation_id
        for route in ROUTES
        if any(response.status == 507 for response in route.responses)
    }
    assert writes <= {route.operation_id for route in ROUTES}
    assert documented == writes
    endpoint = WebhookEndpointConfig(path="/hooks/build", plugin="echo", secret="s" * 16)
    (hook,) = webhooks.webhook_routes(WebhooksConfig(endpoints=(endpoint,)))
    assert any(response.status == 507 for response in hook.responses)
