"""Remote event relay between two real daemons: A's relay step delivers to B."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import DaemonFactory, DaemonProcess, base_config, deep_merge, run_cli, wait_for

from chamberlain.relay_rules import sign, timestamp_of

pytestmark = pytest.mark.e2e

SECRET = "relay-shared-secret"
INGRESS = "/ingest/peer/home-primary"


def receiver_config(tmp_path: Path, listen: str = "127.0.0.1:0") -> dict[str, Any]:
    return deep_merge(
        base_config(tmp_path),
        {
            "service": {"name": "lab"},
            "state": {"path": str(tmp_path / "b.db")},
            "api": {"listen": listen},
            "tokens": [{"name": "relay-lab-v1", "key": SECRET}],
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
                    }
                ],
            },
            "pipelines": [
                {
                    "name": "offsite",
                    "on": "backup.ready",
                    "steps": [{"id": "store", "uses": "echo"}],
                }
            ],
        },
    )


def sender_config(tmp_path: Path, base_url: str) -> dict[str, Any]:
    return deep_merge(
        base_config(tmp_path),
        {
            "service": {"name": "home-primary"},
            "state": {"path": str(tmp_path / "a.db")},
            "tokens": [{"name": "relay-lab-v1", "key": SECRET}],
            "plugins": {"core.relay": {"retry": {"backoff_base": "200ms", "max_attempts": 20}}},
            "instances": [
                {
                    "name": "lab",
                    "enabled": True,
                    "base_url": base_url,
                    "ingress_path": INGRESS,
                    "secret_ref": "relay-lab-v1",
                    "key_id": "v1",
                    "allow": ["backup.ready"],
                }
            ],
            "pipelines": [
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
                                "dedupe_key": "backup:{payload.archive}",
                                "baggage": {"trace_id": "payload.trace"},
                            },
                        }
                    ],
                }
            ],
        },
    )


async def get(d: DaemonProcess, path: str) -> Any:
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=10) as c:
        answer = await c.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()


async def start_ship(a: DaemonProcess, archive: str) -> str:
    async with httpx.AsyncClient(base_url=a.base_url, headers=a.headers(), timeout=10) as c:
        r = await c.post("/pipeline/ship", json={"payload": {"archive": archive, "trace": "tr-1"}})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def job_in(d: DaemonProcess, job_id: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found: dict[str, Any] = await get(d, f"/job/{job_id}")
        return found if found["status"] in statuses else None

    found: dict[str, Any] = await wait_for(check, timeout=30)
    return found


def signed(
    body: bytes, *, peer: str = "home-primary", secret: str = SECRET, at: float | None = None
) -> dict[str, str]:
    stamp = timestamp_of(time.time() if at is None else at)
    return {
        "Content-Type": "application/json",
        "X-Ductile-Peer": peer,
        "X-Ductile-Key-Id": "v1",
        "X-Ductile-Timestamp": stamp,
        "X-Ductile-Signature": sign("POST", f"/ingest/peer/{peer}", stamp, body, secret),
    }


ENVELOPE = json.dumps(
    {
        "event": {"type": "backup.ready", "payload": {"archive": "x"}},
        "origin": {"instance": "home-primary", "event_id": "evt-1"},
    }
).encode()


async def post(
    b: DaemonProcess, body: bytes, headers: dict[str, str], peer: str = "home-primary"
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=b.base_url, timeout=10) as c:
        return await c.post(f"/ingest/peer/{peer}", content=body, headers=headers)


async def test_a_relay_step_starts_the_receivers_pipeline(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    b = await daemon(config=receiver_config(tmp_path))
    a = await daemon(config=sender_config(tmp_path, b.base_url))
    root = await start_ship(a, "nightly-1")
    relayed = await job_in(a, root, "succeeded", "failed", "dead")
    assert relayed["status"] == "succeeded", relayed
    assert relayed["plugin"] == "core.relay"
    result = relayed["result"]["result"]
    assert result["status"] == "relayed"
    assert result["to"] == "lab"
    assert result["event"] == "backup.ready"
    accepted = result["accepted"]
    assert accepted["status"] == "accepted"
    assert accepted["peer"] == "home-primary"
    remote = await job_in(b, accepted["job_id"], "succeeded")
    assert remote["submitted_by"] == "relay:home-primary"
    assert remote["pipeline"] == "offsite"
    assert remote["event"]["type"] == "backup.ready"
    assert remote["event"]["source"] == "relay:home-primary"
    assert remote["event"]["dedupe_key"] == "backup:nightly-1"
    assert remote["payload"] == {"archive": "nightly-1"}
    assert (await get(b, "/jobs"))["total"] == 1


@pytest.mark.parametrize(
    ("headers", "peer", "status", "error"),
    [
        ({"X-Ductile-Signature": "0" * 64}, "home-primary", 403, "forbidden"),
        ({"at": -3600.0}, "home-primary", 403, "relay timestamp outside allowed clock skew"),
        ({"peer": "stranger"}, "stranger", 403, "unknown relay peer"),
        ({"X-Ductile-Key-Id": "v2"}, "home-primary", 403, "relay key id mismatch"),
    ],
    ids=["bad-signature", "skewed-clock", "unknown-peer", "wrong-key-id"],
)
async def test_bad_requests_are_refused_and_start_nothing(
    daemon: DaemonFactory,
    tmp_path: Path,
    headers: dict[str, Any],
    peer: str,
    status: int,
    error: str,
) -> None:
    b = await daemon(config=receiver_config(tmp_path))
    at = headers.pop("at", 0.0)
    sent = signed(ENVELOPE, peer=headers.pop("peer", "home-primary"), at=time.time() + at)
    r = await post(b, ENVELOPE, {**sent, **headers}, peer=peer)
    assert r.status_code == status, r.text
    assert r.json() == {"error": error}
    assert (await get(b, "/jobs"))["total"] == 0


async def test_an_event_the_peer_may_not_send_is_422(daemon: DaemonFactory, tmp_path: Path) -> None:
    b = await daemon(config=receiver_config(tmp_path))
    body = json.dumps({"event": {"type": "other.thing", "payload": {}}}).encode()
    r = await post(b, body, signed(body))
    assert r.status_code == 422
    assert r.json() == {"error": "event type not allowed for peer"}
    assert (await get(b, "/jobs"))["total"] == 0


async def test_a_redelivered_envelope_runs_once(daemon: DaemonFactory, tmp_path: Path) -> None:
    b = await daemon(config=receiver_config(tmp_path))
    first = await post(b, ENVELOPE, signed(ENVELOPE))
    again = await post(b, ENVELOPE, signed(ENVELOPE))
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.json()["receiver_event_id"] != first.json()["receiver_event_id"]
    assert (await get(b, "/jobs"))["total"] == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_delivery_retries_until_the_receiver_is_up(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    port = free_port()
    a = await daemon(config=sender_config(tmp_path, f"http://127.0.0.1:{port}"))
    root = await start_ship(a, "nightly-2")

    async def failed_once() -> dict[str, Any] | None:
        found: dict[str, Any] = await get(a, f"/job/{root}")
        return found if found["attempt"] >= 1 and found["last_error"] else None

    before = await wait_for(failed_once, timeout=30)
    assert "deliver relay request to lab" in before["last_error"]
    assert before["status"] in ("queued", "running")
    b = await daemon(config=receiver_config(tmp_path, listen=f"127.0.0.1:{port}"))
    relayed = await job_in(a, root, "succeeded", "dead")
    assert relayed["status"] == "succeeded", relayed
    remote = await job_in(b, relayed["result"]["result"]["accepted"]["job_id"], "succeeded")
    assert remote["payload"] == {"archive": "nightly-2"}
    assert (await get(b, "/jobs"))["total"] == 1


@pytest.mark.parametrize(
    ("listen_path", "route"),
    [("/pipeline", "/pipeline/{name}"), ("/job/x", "/job/{job_id}/cancel")],
)
def test_an_ingress_path_an_api_route_takes_is_refused_at_start(
    tmp_path: Path, listen_path: str, route: str
) -> None:
    config = receiver_config(tmp_path)
    config["remote_ingress"]["listen_path"] = listen_path
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    checked = run_cli("check", "--config", str(path))
    assert checked.returncode == 78, checked.stderr
    assert (
        f"remote_ingress.listen_path: {listen_path!r} makes POST {listen_path}/<peer>,"
        f" which the API route POST {route} takes"
    ) in checked.stderr
