"""The remote event relay's pure rules: envelope, signature, receiver checks, verdicts,
the config that describes it, and the relay step in the planner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chamberlain.config import Config, ConfigError, parse_config
from chamberlain.plugins.binding import bind_plugins
from chamberlain.plugins.registry import discover
from chamberlain.records import Job, JobStatus
from chamberlain.relay_rules import (
    HEADER_KEY_ID,
    HEADER_PEER,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    RELAY_PLUGIN,
    RelayRefused,
    build_envelope,
    delivery_verdict,
    encode_envelope,
    local_event,
    parse_timestamp,
    request_path,
    sign,
    signed_headers,
    timestamp_of,
    verify_request,
    with_relay_plugin,
)
from chamberlain.routing.planner import build_routing
from chamberlain.routing.templates import TemplateError

REPO = Path(__file__).resolve().parent.parent
SECRET = "shared-secret"
#: The body of Ductile's TestReceiverRejectsInvalidSignature (internal/relay/relay_test.go).
BODY = (
    b'{"event":{"type":"backup.ready","payload":{"path":"/srv/latest.tar"}},'
    b'"origin":{"instance":"home-primary"}}'
)
STAMP = "2026-05-03T10:00:00Z"
NOW = 1777802400.0  # STAMP as epoch seconds


def config(**extra: Any) -> Config:
    base: dict[str, Any] = {
        "state": {"path": ":memory:"},
        "plugin_roots": [],
        "service": {"name": "home-primary"},
        "tokens": [{"name": "relay-lab-v1", "key": SECRET}],
        "instances": [
            {
                "name": "lab",
                "enabled": True,
                "base_url": "https://lab.example/",
                "ingress_path": "/ingest/peer/home-primary",
                "secret_ref": "relay-lab-v1",
                "key_id": "v1",
                "allow": ["backup.ready"],
            }
        ],
        "remote_ingress": {
            "listen_path": "/ingest/peer",
            "require_key_id": True,
            "peers": [
                {
                    "name": "home-primary",
                    "enabled": True,
                    "secret_ref": "relay-lab-v1",
                    "key_id": "v1",
                    "accept": ["backup.ready"],
                    "baggage": {"allow": ["trace_id"]},
                },
                {"name": "old", "secret": "x", "key_id": "v1"},
            ],
        },
    }
    return parse_config({**base, **extra}, base_dir=Path("."))


def problems(**extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config(**extra)
    return list(caught.value.problems)


# -- the signature -------------------------------------------------------------------------


def test_the_signature_is_ductiles_hmac_over_method_path_timestamp_and_body() -> None:
    # Computed from Ductile's sign() (internal/relay/hmac.go) by hand:
    #   printf 'POST\n/ingest/peer/home-primary\n2026-05-03T10:00:00Z\n<BODY>' |
    #     openssl dgst -sha256 -hmac shared-secret
    expected = "b7ca0d0338c6476f39d3c8e5ac36fcd2b166d45f6ee0685f134f1c5f8bc6e91f"
    assert sign("POST", "/ingest/peer/home-primary", STAMP, BODY, SECRET) == expected
    # Ductile upper-cases the method and trims it and the timestamp.
    assert sign(" post ", "/ingest/peer/home-primary", f" {STAMP} ", BODY, SECRET) == expected
    assert sign("POST", "/ingest/peer/other", STAMP, BODY, SECRET) != expected
    with pytest.raises(ValueError, match="empty"):
        sign("POST", "/", STAMP, BODY, "  ")


def test_signed_headers_name_the_sender_and_sign_the_ingress_path() -> None:
    (instance,) = config().instances
    headers = signed_headers(
        service="home-primary", instance=instance, secret=SECRET, body=BODY, now=NOW
    )
    assert headers[HEADER_PEER] == "home-primary"
    assert headers[HEADER_KEY_ID] == "v1"
    assert headers[HEADER_TIMESTAMP] == "2026-05-03T10:00:00.000000Z"
    assert headers[HEADER_SIGNATURE] == sign(
        "POST", "/ingest/peer/home-primary", headers[HEADER_TIMESTAMP], BODY, SECRET
    )
    assert request_path("https://lab.example/base/ingest?x=1") == "/base/ingest"


def test_timestamps_are_rfc3339_or_unix_seconds() -> None:
    assert parse_timestamp(STAMP) == NOW
    assert parse_timestamp("2026-05-03T12:00:00+02:00") == NOW
    assert parse_timestamp("2026-05-03T10:00:00.5Z") == NOW + 0.5
    assert parse_timestamp(str(int(NOW))) == NOW
    assert parse_timestamp(timestamp_of(NOW)) == NOW
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp("2026-13-03T10:00:00Z") is None


# -- the receiver --------------------------------------------------------------------------


def headers(body: bytes = BODY, **overrides: str) -> dict[str, str]:
    out = {
        HEADER_PEER: "home-primary",
        HEADER_KEY_ID: "v1",
        HEADER_TIMESTAMP: STAMP,
        HEADER_SIGNATURE: "sha256="
        + sign("POST", "/ingest/peer/home-primary", STAMP, body, SECRET),
    }
    out.update(overrides)
    return {k: v for k, v in out.items() if v}


def verify(
    hdrs: dict[str, str], body: bytes = BODY, peer: str = "home-primary", now: float = NOW
) -> Any:
    ingress = config().remote_ingress
    assert ingress is not None
    return verify_request(
        ingress,
        peer,
        headers=hdrs,
        body=body,
        path=f"/ingest/peer/{peer}",
        secret_of={"home-primary": SECRET},
        now=now,
    )


def test_a_genuine_request_is_accepted_with_an_origin_dedupe_key() -> None:
    body = json.dumps(
        {
            "event": {"type": "backup.ready", "payload": {"a": 1}},
            "origin": {"instance": "home-primary", "event_id": "evt-1"},
            "baggage": {"trace_id": "t", "secret": "no"},
        }
    ).encode()
    accepted = verify(headers(body), body)
    assert accepted.event_type == "backup.ready"
    assert accepted.payload == {"a": 1}
    # Ductile's derived key (receiver.go): a replay within the window runs once.
    assert accepted.dedupe_key == "relay:home-primary:home-primary:evt-1"
    assert accepted.baggage == {"trace_id": "t"}
    event = local_event(accepted, event_id="e", now=NOW)
    assert event["source"] == "relay:home-primary"
    assert event["dedupe_key"] == "relay:home-primary:home-primary:evt-1"
    # Unprefixed and upper-case hex is a signature too, as Ductile decodes it.
    bare = headers(body)[HEADER_SIGNATURE].removeprefix("sha256=").upper()
    assert verify(headers(body, **{HEADER_SIGNATURE: bare}), body).event_type == "backup.ready"


def test_the_envelopes_dedupe_key_wins_and_none_is_derived_without_an_origin_event() -> None:
    keyed = b'{"event":{"type":"backup.ready","dedupe_key":"k-1"}}'
    assert verify(headers(keyed), keyed).dedupe_key == "k-1"
    assert verify(headers(keyed), keyed).payload == {}
    unkeyed = b'{"event":{"type":"backup.ready"}}'
    assert verify(headers(unkeyed), unkeyed).dedupe_key is None


@pytest.mark.parametrize(
    ("hdrs", "body", "peer", "now", "status", "error"),
    [
        (headers(), BODY, "stranger", NOW, 403, "unknown relay peer"),
        (headers(), BODY, "old", NOW, 403, "unknown relay peer"),  # disabled
        (headers(**{HEADER_PEER: "lab"}), BODY, "home-primary", NOW, 403, "peer identity mismatch"),
        (
            headers(**{HEADER_TIMESTAMP: ""}),
            BODY,
            "home-primary",
            NOW,
            403,
            "missing relay timestamp",
        ),
        (
            headers(**{HEADER_TIMESTAMP: "soon"}),
            BODY,
            "home-primary",
            NOW,
            403,
            "invalid relay timestamp",
        ),
        (
            headers(),
            BODY,
            "home-primary",
            NOW + 301,
            403,
            "relay timestamp outside allowed clock skew",
        ),
        (
            headers(),
            BODY,
            "home-primary",
            NOW - 301,
            403,
            "relay timestamp outside allowed clock skew",
        ),
        (headers(**{HEADER_KEY_ID: ""}), BODY, "home-primary", NOW, 403, "missing relay key id"),
        (headers(**{HEADER_KEY_ID: "v2"}), BODY, "home-primary", NOW, 403, "relay key id mismatch"),
        (
            headers(**{HEADER_SIGNATURE: ""}),
            BODY,
            "home-primary",
            NOW,
            403,
            "missing relay signature",
        ),
        (
            headers(**{HEADER_SIGNATURE: "sha256=deadbeef"}),
            BODY,
            "home-primary",
            NOW,
            403,
            "forbidden",
        ),
        (headers(), BODY + b" ", "home-primary", NOW, 403, "forbidden"),
    ],
    ids=[
        "unknown-peer",
        "disabled-peer",
        "peer-header",
        "no-timestamp",
        "bad-timestamp",
        "clock-ahead",
        "clock-behind",
        "no-key-id",
        "wrong-key-id",
        "no-signature",
        "bad-signature",
        "body-changed",
    ],
)
def test_refusals_follow_ductiles_order_and_answers(
    hdrs: dict[str, str], body: bytes, peer: str, now: float, status: int, error: str
) -> None:
    with pytest.raises(RelayRefused) as refused:
        verify(hdrs, body, peer, now)
    assert (refused.value.status, refused.value.message) == (status, error)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json", 400, "invalid JSON body"),
        (b"[]", 400, "invalid JSON body"),
        (b'{"event":{"payload":{}}}', 400, "event.type is required"),
        (b'{"event":{"type":"Backup Ready"}}', 400, "event.type must use lower-case dotted form"),
        (b'{"event":{"type":"backup.ready","payload":[1]}}', 400, "invalid JSON body"),
        (
            b'{"event":{"type":"backup.ready"},"origin":{"instance":"lab"}}',
            403,
            "origin instance mismatch",
        ),
        (b'{"event":{"type":"other.thing"}}', 422, "event type not allowed for peer"),
    ],
)
def test_envelopes_are_checked_after_the_signature(body: bytes, status: int, error: str) -> None:
    with pytest.raises(RelayRefused) as refused:
        verify(headers(body), body)
    assert (refused.value.status, refused.value.message) == (status, error)


# -- the sender ------------------------------------------------------------------------------


def envelope(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "event": "backup.ready",
        "with_": None,
        "dedupe_key": None,
        "baggage": {},
        "scope": {"payload": {"id": 7, "name": "n"}, "event": {}, "context": {"run": "r"}},
        "input_dedupe_key": "in-key",
        "instance": "home-primary",
        "job_id": "job-1",
        "event_id": "evt-1",
    }
    args.update(overrides)
    return build_envelope(**args)


def test_the_envelope_is_relay_envelope_from_node() -> None:
    assert envelope() == {
        "event": {
            "type": "backup.ready",
            "payload": {"id": 7, "name": "n"},
            "dedupe_key": "in-key",
        },
        "origin": {
            "instance": "home-primary",
            "plugin": "core.relay",
            "job_id": "job-1",
            "event_id": "evt-1",
        },
    }
    # with: replaces the payload; a bare path keeps its type, a template is text.
    shaped = envelope(
        with_={"n": "payload.id", "label": "id-{payload.id}"}, dedupe_key="payload.id"
    )
    assert shaped["event"]["payload"] == {"n": 7, "label": "id-7"}
    assert shaped["event"]["dedupe_key"] == "7"
    claimed = envelope(baggage={"trace": "context.run"}, input_dedupe_key=None)
    assert claimed["baggage"] == {"trace": "r"}
    assert "dedupe_key" not in claimed["event"]
    with pytest.raises(TemplateError, match=r"relay\.with\.x"):
        envelope(with_={"x": "payload.missing"})
    assert encode_envelope(envelope()).startswith(b'{"event":{"type":"backup.ready","payload":')


def test_the_receivers_answer_decides_success_and_retries() -> None:
    accepted = json.dumps(
        {"status": "accepted", "peer": "home-primary", "event_type": "e", "receiver_event_id": "r"}
    ).encode()
    ok = delivery_verdict(to="lab", event_type="e", status=202, body=accepted)
    assert ok.ok
    assert ok.result == {
        "status": "relayed",
        "to": "lab",
        "event": "e",
        "accepted": {
            "status": "accepted",
            "peer": "home-primary",
            "event_type": "e",
            "receiver_event_id": "r",
            "job_id": "",
        },
    }
    assert ok.events[0]["type"] == "ductile.step.succeeded"
    assert ok.events[0]["payload"]["relay_receiver_event_id"] == "r"
    refused = delivery_verdict(to="lab", event_type="e", status=403, body=b'{"error":"forbidden"}')
    assert (refused.ok, refused.retry) == (False, False)
    assert refused.error == "relay receiver rejected request (403): forbidden"
    down = delivery_verdict(to="lab", event_type="e", status=503, body=b"")
    assert (down.ok, down.retry, down.error) == (False, True, "relay receiver returned status 503")
    assert delivery_verdict(to="lab", event_type="e", status=429, body=b"").retry


# -- the config ------------------------------------------------------------------------------


def test_ductile_keys_and_defaults_are_read() -> None:
    loaded = config()
    (instance,) = loaded.instances
    assert instance.secret == SECRET  # secret_ref took the tokens: entry's key
    assert instance.timeout == 10.0
    ingress = loaded.remote_ingress
    assert ingress is not None
    assert ingress.max_body_size == 1024 * 1024
    assert ingress.allowed_clock_skew == 300.0
    assert ingress.peers[1].enabled is False  # Ductile's default
    # A secret_ref no tokens: entry names is a registry secret.
    peers = [{"name": "p", "secret_ref": "from-registry"}]
    loaded = config(remote_ingress={"listen_path": "/in", "peers": peers})
    assert [r.path for r in loaded.secret_references] == ["remote_ingress.peers[0].secret"]


def test_relay_problems_name_their_yaml_paths() -> None:
    assert problems(
        service={"name": "Home"},
        pipelines=[
            {
                "name": "p",
                "on": "x.y",
                "steps": [
                    {"relay": {"to": "nowhere", "event": "backup.ready"}},
                    {"split": [{"relay": {"to": "lab", "event": "other.thing"}}]},
                    {"relay": {"to": "lab", "event": "Not Dotted"}},
                ],
            }
        ],
    ) == [
        "service.name: 'Home' must use lower-case hyphenated form when relay is configured"
        " (instances, remote_ingress): it names this gateway to its peers",
        "pipelines[0].steps[0].relay.to: no enabled instance named 'nowhere' (enabled: lab)",
        "pipelines[0].steps[1].split[0].relay.event: instance 'lab' does not allow event type"
        " 'other.thing' (allow: backup.ready)",
        "pipelines[0].steps[2].relay.event: 'Not Dotted' must use lower-case dotted form (e.g."
        " backup.ready): the receiver refuses any other",
    ]
    assert problems(
        instances=[
            {"name": "Lab", "base_url": "ftp://x", "ingress_path": "in", "secret": "s"},
            {
                "name": "b",
                "base_url": "http://b",
                "ingress_path": "/i",
                "secret": "s",
                "allow": ["a.b", "a.b"],
            },
        ],
        remote_ingress={
            "listen_path": "/in",
            "require_key_id": True,
            "peers": [{"name": "p", "secret": "s"}, {"name": "p", "secret": "s", "key_id": "k"}],
        },
    ) == [
        "instances[0].name: 'Lab' must use lower-case hyphenated form (e.g. home-primary)",
        "instances[0].base_url: 'ftp://x' must be an absolute http or https URL",
        "instances[0].ingress_path: path must start with /, got 'in'",
        "instances[1].allow[1]: duplicate event type 'a.b' (also allow[0])",
        "remote_ingress.peers[1].name: duplicate peer name 'p' (also peers[0])",
        "remote_ingress.peers[0]: key_id is required when require_key_id is true",
    ]


def test_a_relay_step_takes_no_with_or_baggage_of_its_own() -> None:
    step = {"relay": {"to": "lab", "event": "backup.ready"}, "with": {"a": 1}}
    assert problems(pipelines=[{"name": "p", "on": "x.y", "steps": [step]}]) == [
        "pipelines[0].steps[0]: with belongs to a uses step, not to a relay step"
    ]


# -- the planner -----------------------------------------------------------------------------


def routing_of(cfg: Config) -> Any:
    plugins = bind_plugins(cfg, discover(cfg.plugin_roots))
    return build_routing(
        cfg.routes,
        cfg.pipelines,
        with_relay_plugin(cfg, plugins),
        service=cfg.service.name,
    )


PIPELINES = [
    {
        "name": "ship",
        "on": "ship.requested",
        "steps": [
            {
                "id": "send",
                "relay": {
                    "to": "lab",
                    "event": "backup.ready",
                    "with": {"archive": "payload.archive"},
                    "baggage": {"trace_id": "payload.trace"},
                },
            },
            {"id": "after", "uses": "echo"},
        ],
    },
    {"name": "offsite", "on": "backup.ready", "steps": [{"id": "store", "uses": "echo"}]},
]


def test_a_relay_step_plans_a_core_relay_job_holding_its_envelope() -> None:
    cfg = config(plugin_roots=[str(REPO / "plugins")], pipelines=PIPELINES)
    routing = routing_of(cfg)
    (pipeline, _) = cfg.pipelines
    plan = routing.start(pipeline, {"archive": "a-1", "trace": "t-1"}, submitted_by="t", now=NOW)
    (job,) = plan.jobs
    assert (job.plugin, job.command, job.step_id) == (RELAY_PLUGIN, "handle", "send")
    assert job.event is None
    assert job.payload["to"] == "lab"
    sent = job.payload["envelope"]
    assert sent["event"] == {"type": "backup.ready", "payload": {"archive": "a-1"}}
    assert sent["origin"]["instance"] == "home-primary"
    assert sent["origin"]["job_id"] == job.id
    assert sent["baggage"] == {"trace_id": "t-1"}
    # Its success hands the relay_* event to the next step, as Ductile routes it.
    verdict = delivery_verdict(
        to="lab",
        event_type="backup.ready",
        status=202,
        body=b'{"status":"accepted","peer":"home-primary","event_type":"backup.ready",'
        b'"receiver_event_id":"r-1","job_id":"j-1"}',
    )
    done = Job(
        id=job.id,
        plugin=job.plugin,
        command=job.command,
        payload=job.payload,
        event=None,
        context=job.context,
        status=JobStatus.SUCCEEDED,
        attempt=1,
        max_attempts=job.max_attempts,
        submitted_by="t",
        timeout=None,
        dedupe_key=None,
        created_at=NOW,
        started_at=NOW,
        completed_at=NOW,
        run_at=NOW,
        last_error=None,
        result=verdict.response(),
        parent_job_id=None,
        source_event_id=None,
        pipeline="ship",
        step_id="send",
    )
    (after,) = routing.plan(done, NOW).jobs
    assert after.step_id == "after"
    assert after.payload["relay_receiver_job_id"] == "j-1"


def test_a_relayed_event_starts_its_pipelines_with_the_admitted_baggage() -> None:
    cfg = config(plugin_roots=[str(REPO / "plugins")], pipelines=PIPELINES)
    routing = routing_of(cfg)
    (pipeline,) = routing.pipelines_on("backup.ready")
    event = {"type": "backup.ready", "payload": {"a": 1}, "event_id": "e", "dedupe_key": "k"}
    (job,) = routing.start(
        pipeline, {"a": 1}, submitted_by="relay:p", now=NOW, event=event, context={"trace_id": "t"}
    ).jobs
    assert job.context["trace_id"] == "t"
    assert job.dedupe_key == "k"
    assert job.event is not None and job.event["type"] == "backup.ready"
