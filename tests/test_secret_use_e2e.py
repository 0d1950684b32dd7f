"""Registry secrets in use on the real daemon: ``${secret:name}`` in plugin config and
env, webhook and callback secrets, rotation without a restart, and redaction in every
place a leaked value could show up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import BUNDLED_PLUGINS, DaemonFactory, base_config, wait_for
from sse_client import open_stream
from test_control_e2e import Receiver, start_receiver

from chamberlain.callback_rules import verify

pytestmark = pytest.mark.e2e

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"
SECRET_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
ENV = {"CHAMBERLAIN_SECRET_KEY": SECRET_KEY}

TOKEN_1 = "tok-first-8d1f2a"
TOKEN_2 = "tok-second-c07e95"
HOOK_1 = "hook-key-one-4471"
HOOK_2 = "hook-key-two-9a0b"
CALLBACK_KEY = "callback-key-5e5e"
REDACTED = "[redacted:leak_token]"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def leaky_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The leaky plugin given ``leak_token`` in its config and environment."""
    config = base_config(tmp_path)
    config["plugin_roots"] = [str(E2E_PLUGINS), str(BUNDLED_PLUGINS)]
    config["plugins"] = {
        "leaky": {
            "config": {
                "token": "${secret:leak_token}",
                "header": "Bearer ${secret:leak_token}",
            },
            "env": {"LEAK_TOKEN": "${secret:leak_token}"},
        }
    }
    config.update(extra)
    return config


async def register(daemon: DaemonFactory, tmp_path: Path, secrets: dict[str, str]) -> None:
    """Register ``secrets`` with a daemon whose config refers to none, then stop it.

    A daemon refuses to start on a reference to a secret the registry lacks, so the
    registry is filled first, the way an operator would.
    """
    d = await daemon(config=base_config(tmp_path), env=ENV)
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        for name, value in secrets.items():
            r = await client.post("/secrets", json={"name": name, "value": value})
            assert r.status_code == 201, r.text
    assert await d.stop() == 0


async def trigger(
    client: httpx.AsyncClient, payload: dict[str, Any], **body: Any
) -> dict[str, Any]:
    """Run ``leaky.poll`` to its end and return the job with its messages and callbacks."""
    r = await client.post("/trigger/leaky/poll", json={"payload": payload, **body})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    async def finished() -> dict[str, Any] | None:
        r = await client.get(f"/job/{job_id}", params={"include": "messages,callbacks"})
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        return job if job["status"] in ("succeeded", "failed", "dead") else None

    job: dict[str, Any] = await wait_for(finished)
    return job


async def test_a_rotated_secret_reaches_the_next_job_without_a_restart(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    await register(daemon, tmp_path, {"leak_token": TOKEN_1})
    d = await daemon(config=leaky_config(tmp_path), env=ENV)
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        first = await trigger(client, {"report": True})
        assert first["status"] == "succeeded", first
        assert first["result"]["result"] == {
            "config_token": digest(TOKEN_1),
            "config_header": digest(f"Bearer {TOKEN_1}"),
            "env_token": digest(TOKEN_1),
            "env_names": first["result"]["result"]["env_names"],
        }
        # The key that opens every secret stays with the daemon.
        assert "CHAMBERLAIN_SECRET_KEY" not in first["result"]["result"]["env_names"]

        r = await client.put("/secrets/leak_token", json={"value": TOKEN_2})
        assert r.status_code == 200, r.text
        second = await trigger(client, {"report": True})
        assert second["status"] == "succeeded", second
        assert second["result"]["result"]["config_token"] == digest(TOKEN_2)
        assert second["result"]["result"]["config_header"] == digest(f"Bearer {TOKEN_2}")
        assert second["result"]["result"]["env_token"] == digest(TOKEN_2)

        # The config still refers to it: it cannot be deleted.
        r = await client.delete("/secrets/leak_token")
        assert r.status_code == 409, r.text
        assert sorted(r.json()["references"]) == [
            "plugins.leaky.config.header",
            "plugins.leaky.config.token",
            "plugins.leaky.env.LEAK_TOKEN",
        ]


async def test_start_names_an_unknown_secret_with_its_path(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config=leaky_config(tmp_path), env=ENV, wait_ready=False)
    assert await d.wait() == 78
    assert any(
        "plugins.leaky.config.token: unknown secret 'leak_token'" in line
        for line in d.stderr_lines()
    ), d.stderr_lines()


def at_rest(directory: Path) -> dict[str, str]:
    """The store's files (database, WAL), by name, as text."""
    return {path.name: path.read_bytes().decode("latin-1") for path in directory.glob("state.db*")}


def signed(body: bytes, secret: str) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Signature-256": f"sha256={signature}"}


async def test_webhook_and_callback_secrets_are_resolved_for_each_use(
    daemon: DaemonFactory, tmp_path: Path, nursery: trio.Nursery
) -> None:
    await register(
        daemon,
        tmp_path,
        {"leak_token": TOKEN_1, "hook_key": HOOK_1, "callback_key": CALLBACK_KEY},
    )
    receiver = await start_receiver(nursery, Receiver())
    config = leaky_config(
        tmp_path,
        webhooks={
            "endpoints": [
                {
                    "path": "/hooks/leaky",
                    "plugin": "leaky",
                    "command": "poll",
                    "secret": "${secret:hook_key}",
                }
            ]
        },
        callbacks={"secret": "${secret:callback_key}", "backoff_base": "100ms"},
    )
    d = await daemon(config=config, env=ENV)
    body = json.dumps({"report": True}).encode()
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        r = await client.post("/hooks/leaky", content=body, headers=signed(body, HOOK_1))
        assert r.status_code == 202, r.text

        r = await client.put("/secrets/hook_key", json={"value": HOOK_2})
        assert r.status_code == 200, r.text
        # The next delivery is checked against the new value, and only that one.
        r = await client.post("/hooks/leaky", content=body, headers=signed(body, HOOK_1))
        assert r.status_code == 403, r.text
        r = await client.post("/hooks/leaky", content=body, headers=signed(body, HOOK_2))
        assert r.status_code == 202, r.text

        job = await trigger(client, {"report": True}, callback_url=receiver.url)
        assert job["status"] == "succeeded", job

        async def delivered() -> list[tuple[dict[str, str], bytes, int]]:
            return receiver.delivered()

        ((headers, delivery, _),) = await wait_for(delivered)
        assert verify(CALLBACK_KEY, delivery, headers["x-signature-256"])


async def test_a_leaked_registry_secret_is_redacted_everywhere(
    daemon: DaemonFactory, tmp_path: Path, nursery: trio.Nursery
) -> None:
    await register(daemon, tmp_path, {"leak_token": TOKEN_1, "callback_key": CALLBACK_KEY})
    receiver = await start_receiver(nursery, Receiver())
    config = leaky_config(
        tmp_path,
        routes=[{"from": "leaky", "event_type": "leaky.leaked", "to": "echo.handle"}],
        callbacks={"secret": "${secret:callback_key}", "backoff_base": "100ms"},
    )
    d = await daemon(config=config, env=ENV)
    seen: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        leaked = await trigger(client, {"leak": True}, callback_url=receiver.url)
        assert leaked["status"] == "succeeded", leaked
        failed = await trigger(client, {"leak": True, "fail": True})
        assert failed["status"] == "failed", failed

        # The job: result, events, state updates, logs, error and stderr messages.
        seen["job"] = json.dumps([leaked, failed])
        response = leaked["result"]
        assert response["result"] == {"token": REDACTED, "nested": [f"<{REDACTED}>"]}
        assert response["events"][0]["payload"] == {"token": REDACTED}
        assert response["state_updates"] == {"last_token": REDACTED}
        assert response["logs"][0]["message"] == f"the token is {REDACTED}"
        assert failed["last_error"] == f"bad token {REDACTED}"
        # The first line reached the daemon in two reads, split inside the value.
        for job in (leaked, failed):
            assert [m["text"] for m in job["messages"] if m["kind"] == "stderr"] == [
                f"leaking {REDACTED} in pieces",
                f"whole {REDACTED}",
            ]

        # The events log: the tree, with the job the event started.
        r = await client.get(f"/job/{leaked['job_id']}/tree")
        assert r.status_code == 200, r.text
        seen["tree"] = r.text
        child = next(j for j in r.json() if j["plugin"] == "echo")
        assert child["payload"] == {"token": REDACTED, "ductile_upstream_plugin": "leaky"}

        # Error bodies that quote what the client sent.
        r = await client.get(f"/job/{TOKEN_1}")
        assert r.status_code in (400, 404), r.text
        assert REDACTED in r.json()["error"]
        seen["error"] = r.text
        r = await client.get("/jobs", params={"status": TOKEN_1})
        assert r.status_code == 400, r.text
        assert REDACTED in r.json()["error"]
        seen["error 2"] = r.text

        r = await client.get("/metrics")
        assert r.status_code == 200, r.text
        seen["metrics"] = r.text

    # The job's stream replays what the job stored.
    async with open_stream(d.base_url, f"/job/{failed['job_id']}/stream", d.headers()) as s:
        events = await s.rest()
    seen["job stream"] = json.dumps([e.data for e in events])
    assert f"bad token {REDACTED}" in seen["job stream"]
    # The status stream, replayed from its start.
    async with open_stream(d.base_url, "/events/stream?last_event_id=0", d.headers()) as s:
        events = await s.read_until(
            lambda e: (
                isinstance(e.data, dict)
                and e.data.get("job_id") == failed["job_id"]
                and e.data.get("status") == "failed"
            )
        )
    seen["status stream"] = json.dumps([e.data for e in events])

    async def callback_delivered() -> list[tuple[dict[str, str], bytes, int]]:
        return receiver.delivered()

    ((_, delivery, _),) = await wait_for(callback_delivered)
    seen["callback"] = delivery.decode()
    assert json.loads(delivery)["result"]["result"]["token"] == REDACTED

    async def failure_logged() -> bool:
        return any(f"bad token {REDACTED}" in line for line in d.stderr_lines())

    await wait_for(failure_logged)
    assert await d.stop(signal.SIGTERM) == 0
    seen["daemon log"] = "\n".join(d.stderr_lines())
    assert REDACTED in seen["daemon log"]

    # At rest too: the store keeps the value sealed and the jobs' data redacted.
    seen.update(await trio.to_thread.run_sync(at_rest, tmp_path))

    leaks = sorted(sink for sink, text in seen.items() if TOKEN_1 in text)
    assert leaks == []
