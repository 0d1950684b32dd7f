"""Webhook signature checks: real HMACs computed here, every way to get one wrong."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from chamberlain.config import WebhookEndpointConfig
from chamberlain.jsoncodec import JsonRefused
from chamberlain.webhook_rules import (
    Forbidden,
    api_route_at,
    delivery_event,
    parse_body,
    verify_delivery,
)

BODY = json.dumps({"ref": "refs/heads/main", "commits": [1, 2]}).encode()
SECRET = "s3cret"


def hexmac(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def endpoint(kind: str, **kw: object) -> WebhookEndpointConfig:
    return WebhookEndpointConfig(path="/hooks/x", plugin="echo", secret=SECRET, kind=kind, **kw)  # type: ignore[arg-type]


def test_github_valid_signature() -> None:
    d = verify_delivery(
        endpoint("github"),
        {
            "X-Hub-Signature-256": f"sha256={hexmac(BODY)}",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "72d3162e",
            "User-Agent": "GitHub-Hookshot/abc",
            "Authorization": "not kept",
        },
        BODY,
    )
    assert d.event_type == "github.push"
    assert d.delivery_id == "72d3162e"
    assert d.headers == {
        "user-agent": "GitHub-Hookshot/abc",
        "x-github-event": "push",
        "x-github-delivery": "72d3162e",
    }


def test_header_names_are_case_insensitive() -> None:
    d = verify_delivery(
        endpoint("github"),
        {"x-hub-signature-256": f"sha256={hexmac(BODY)}", "x-github-event": "pull_request"},
        BODY,
    )
    assert d.event_type == "github.pull_request"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # missing
        {"X-Hub-Signature-256": ""},
        {"X-Hub-Signature-256": hexmac(BODY)},  # github requires the prefix
        {"X-Hub-Signature-256": f"sha256={hexmac(BODY)[:-1]}"},  # short
        {"X-Hub-Signature-256": f"sha256={hexmac(BODY)[:-1]}z"},  # not hex
        {"X-Hub-Signature-256": f"sha1={hexmac(BODY)}"},
        {"X-Hub-Signature-256": f"sha256={hexmac(BODY, 'other')}"},  # wrong secret
        {"X-Hub-Signature-256": f"sha256={hexmac(BODY + b' ')}"},  # another body
    ],
)
def test_github_refusals(headers: dict[str, str]) -> None:
    with pytest.raises(Forbidden):
        verify_delivery(endpoint("github"), headers, BODY)


def test_gitlab_token() -> None:
    d = verify_delivery(
        endpoint("gitlab"),
        {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u-1"},
        BODY,
    )
    assert d.event_type == "gitlab.push_hook"
    assert d.delivery_id == "u-1"
    for bad in ({}, {"X-Gitlab-Token": "nope"}, {"X-Gitlab-Token": SECRET + "x"}):
        with pytest.raises(Forbidden):
            verify_delivery(endpoint("gitlab"), bad, BODY)


def test_hmac_prefix_optional_and_case_of_hex() -> None:
    ep = endpoint(
        "hmac", signature_header="X-Sig", event_type_header="X-Kind", delivery_header="X-Id"
    )
    for value in (hexmac(BODY), f"sha256={hexmac(BODY)}", hexmac(BODY).upper()):
        d = verify_delivery(ep, {"X-Sig": value, "X-Kind": "build.done", "X-Id": "7"}, BODY)
        assert d.event_type == "build.done"
        assert d.delivery_id == "7"
    with pytest.raises(Forbidden):
        verify_delivery(ep, {"X-Signature-256": hexmac(BODY)}, BODY)  # not its header


def test_hmac_event_type_defaults_to_the_path() -> None:
    d = verify_delivery(endpoint("hmac"), {"X-Signature-256": hexmac(BODY)}, BODY)
    assert d.event_type == "webhook.x"
    assert d.delivery_id is None


def test_the_event_carries_the_parsed_body_or_the_text() -> None:
    ep = endpoint("hmac")
    d = verify_delivery(ep, {"X-Signature-256": hexmac(BODY)}, BODY)
    event = delivery_event(ep, d, BODY, event_id="e1", now=0.0)
    assert event["payload"] == json.loads(BODY)
    assert event["source"] == "webhook:/hooks/x"
    assert event["event_id"] == "e1"
    assert parse_body(b"plain \xff text") == "plain \ufffd text"
    text_event = delivery_event(ep, d, b"a=1&b=2", event_id="e2", now=0.0)
    assert text_event["payload"] == {"body": "a=1&b=2"}


@pytest.mark.parametrize(
    "body",
    [b'{"a": "\\ud800"}', b'{"a": 1, "a": 2}', b'{"n": 1e400}', b"[" * 2000 + b"]" * 2000],
)
def test_a_json_body_follows_the_rules_of_every_json_body(body: bytes) -> None:
    # Kept as text instead, it would reach the plugin as another document than sent.
    with pytest.raises(JsonRefused):
        parse_body(body)


@pytest.mark.parametrize(
    ("path", "taken"),
    [
        ("/jobs", "/jobs"),
        ("/pipeline/deploy", "/pipeline/{name}"),  # a route's variable segment
        ("/job/{peer}/cancel", "/job/{job_id}/cancel"),  # a variable on both sides
        ("/hooks/{name}", "/hooks/{name}"),
    ],
)
def test_a_path_an_api_route_could_also_serve_is_named(path: str, taken: str) -> None:
    routes = {"/jobs", "/pipeline/{name}", "/job/{job_id}/cancel", "/hooks/{name}"}
    assert api_route_at(path, routes) == taken


@pytest.mark.parametrize("path", ["/hooks/github", "/pipeline", "/pipeline/a/b", "/jobs/x"])
def test_a_path_of_its_own_is_free(path: str) -> None:
    assert api_route_at(path, {"/jobs", "/pipeline/{name}", "/hooks/{a}/{b}/{c}"}) is None
