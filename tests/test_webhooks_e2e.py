"""Inbound webhooks against the real daemon, with signatures computed in the test."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import (
    BUNDLED_PLUGINS,
    DaemonFactory,
    DaemonProcess,
    base_config,
    deep_merge,
    run_cli,
    wait_for,
)

pytestmark = pytest.mark.e2e

GH_SECRET = "github-secret"
GL_SECRET = "gitlab-token"
HM_SECRET = "hmac-secret"

CONFIG: dict[str, Any] = {
    "plugin_roots": [str(BUNDLED_PLUGINS)],
    "plugins": {"sys_exec": {"config": {"command": ["echo", "deployed"]}}},
    "webhooks": {
        "endpoints": [
            {"path": "/hooks/github", "plugin": "echo", "kind": "github", "secret": GH_SECRET},
            {"path": "/hooks/gitlab", "plugin": "echo", "kind": "gitlab", "secret": GL_SECRET},
            {
                "path": "/hooks/deploy",
                "pipeline": "deploy",
                "kind": "hmac",
                "secret": HM_SECRET,
                "signature_header": "X-Deploy-Signature",
                "max_body_size": 2048,
            },
        ]
    },
    "pipelines": [
        {
            "name": "deploy",
            "on": "deploy.requested",
            "steps": [
                {"id": "announce", "uses": "echo.handle", "with": {"service": "{payload.service}"}},
                {"id": "run", "uses": "sys_exec"},
            ],
        }
    ],
}

PUSH = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": "me/repo"}}).encode()


def sig(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
async def hooks(daemon: DaemonFactory) -> DaemonProcess:
    return await daemon(CONFIG)


async def post(d: DaemonProcess, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=d.base_url, timeout=30) as c:
        return await c.post(
            path, content=body, headers={"Content-Type": "application/json", **headers}
        )


async def jobs_total(d: DaemonProcess) -> int:
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as c:
        total: int = (await c.get("/jobs")).json()["total"]
        return total


async def job(d: DaemonProcess, job_id: str, *statuses: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as c:

        async def check() -> dict[str, Any] | None:
            found: dict[str, Any] = (await c.get(f"/job/{job_id}")).json()
            return found if not statuses or found["status"] in statuses else None

        result: dict[str, Any] = await wait_for(check)
        return result


async def test_a_signed_github_delivery_runs_a_job(hooks: DaemonProcess) -> None:
    r = await post(
        hooks,
        "/hooks/github",
        PUSH,
        {
            "X-Hub-Signature-256": f"sha256={sig(PUSH, GH_SECRET)}",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-1",
        },
    )
    assert r.status_code == 202, r.text
    done = await job(hooks, r.json()["job_id"], "succeeded")
    assert done["submitted_by"] == "webhook:/hooks/github"
    assert done["command"] == "handle"
    assert done["event"]["type"] == "github.push"
    assert done["event"]["payload"]["repository"]["full_name"] == "me/repo"
    assert done["event"]["headers"]["x-github-delivery"] == "d-1"
    assert done["payload"]["ref"] == "refs/heads/main"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature-256": "sha256=not-hex"},
        {"X-Hub-Signature-256": "sha256=" + sig(PUSH, "wrong-secret")},
        {"X-Hub-Signature-256": sig(PUSH, GH_SECRET)},  # missing the sha256= prefix
    ],
    ids=["missing", "wrong", "malformed", "wrong-secret", "no-prefix"],
)
async def test_bad_signatures_are_forbidden_and_enqueue_nothing(
    hooks: DaemonProcess, headers: dict[str, str]
) -> None:
    r = await post(hooks, "/hooks/github", PUSH, {"X-GitHub-Event": "push", **headers})
    assert r.status_code == 403
    assert r.json() == {"error": "forbidden"}
    assert await jobs_total(hooks) == 0


async def test_a_replayed_delivery_is_not_enqueued_again(hooks: DaemonProcess) -> None:
    headers = {
        "X-Hub-Signature-256": f"sha256={sig(PUSH, GH_SECRET)}",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "same-delivery",
    }
    first = await post(hooks, "/hooks/github", PUSH, headers)
    again = await post(hooks, "/hooks/github", PUSH, headers)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.json()["duplicate"] is True
    assert await jobs_total(hooks) == 1


async def test_gitlab_token(hooks: DaemonProcess) -> None:
    ok = await post(
        hooks,
        "/hooks/gitlab",
        PUSH,
        {"X-Gitlab-Token": GL_SECRET, "X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "g-1"},
    )
    assert ok.status_code == 202, ok.text
    done = await job(hooks, ok.json()["job_id"], "succeeded")
    assert done["event"]["type"] == "gitlab.push_hook"
    wrong = await post(hooks, "/hooks/gitlab", PUSH, {"X-Gitlab-Token": "guess"})
    assert wrong.status_code == 403


async def test_a_delivery_breaking_the_input_schema_is_kept_as_a_failed_job(
    hooks: DaemonProcess,
) -> None:
    # echo's handle declares seconds: number.  The sender cannot change what it
    # sends, so the delivery is kept, failed with the reason, and echo never runs.
    body = json.dumps({"seconds": "soon"}).encode()
    r = await post(hooks, "/hooks/gitlab", body, {"X-Gitlab-Token": GL_SECRET})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "failed"
    done = await job(hooks, r.json()["job_id"])
    assert done["status"] == "failed"
    assert done["attempt"] == 0
    assert done["last_error"] == (
        "echo/handle: input_schema refuses the payload: payload.seconds: 'soon' is not of"
        " type 'number'"
    )
    assert done["payload"] == {"seconds": "soon"}


async def test_an_oversized_body_is_refused_unread(hooks: DaemonProcess) -> None:
    big = b"{" + b" " * 4096 + b"}"
    r = await post(hooks, "/hooks/deploy", big, {"X-Deploy-Signature": sig(big, HM_SECRET)})
    assert r.status_code == 413
    assert "error" in r.json()

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(8):
            yield b" " * 1024

    async with httpx.AsyncClient(base_url=hooks.base_url, timeout=30) as c:
        streamed = await c.post("/hooks/deploy", content=chunks())
    assert streamed.status_code == 413
    assert await jobs_total(hooks) == 0


async def test_unknown_hook_paths_404(hooks: DaemonProcess) -> None:
    r = await post(hooks, "/hooks/nope", PUSH, {})
    assert r.status_code == 404
    assert "error" in r.json()


async def test_a_webhook_starts_a_pipeline_end_to_end(hooks: DaemonProcess) -> None:
    body = json.dumps({"service": "api"}).encode()
    r = await post(
        hooks,
        "/hooks/deploy",
        body,
        {"X-Deploy-Signature": f"sha256={sig(body, HM_SECRET)}", "X-Delivery-Id": "dep-1"},
    )
    assert r.status_code == 202, r.text
    root = r.json()["job_id"]
    async with httpx.AsyncClient(base_url=hooks.base_url, headers=hooks.headers()) as c:

        async def finished() -> list[dict[str, Any]] | None:
            jobs: list[dict[str, Any]] = (await c.get(f"/job/{root}/tree")).json()
            done = len(jobs) == 2 and all(j["status"] == "succeeded" for j in jobs)
            return jobs if done else None

        jobs = await wait_for(finished)
    announce, run = jobs
    assert announce["step_id"] == "announce"
    assert announce["payload"] == {"service": "api"}
    assert announce["event"]["type"] == "webhook.deploy"
    assert announce["submitted_by"] == "webhook:/hooks/deploy"
    assert run["result"]["result"]["stdout"].strip() == "deployed"


async def test_webhooks_on_their_own_listener(daemon: DaemonFactory) -> None:
    d = await daemon(deep_merge(CONFIG, {"webhooks": {"listen": "127.0.0.1:0"}}))
    ready = next(r for r in d.records() if r.get("msg", "").startswith("ready"))
    (hook_url,) = ready["webhook_urls"]
    signed = {"X-Hub-Signature-256": f"sha256={sig(PUSH, GH_SECRET)}", "X-GitHub-Event": "push"}
    async with httpx.AsyncClient(base_url=hook_url) as c:
        r = await c.post("/hooks/github", content=PUSH, headers=signed)
        api_route = await c.get("/jobs")
    assert r.status_code == 202
    assert api_route.status_code == 404  # only webhooks live there
    # ... and the API listener no longer serves them.
    assert (await post(d, "/hooks/github", PUSH, signed)).status_code == 404


def test_an_empty_secret_is_refused_at_start_up(tmp_path: Path) -> None:
    cfg = deep_merge(base_config(tmp_path), copy.deepcopy(CONFIG))
    cfg["webhooks"]["endpoints"][0]["secret"] = ""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_cli("check", "--config", str(path), timeout=60)
    assert proc.returncode == 78
    assert "webhooks.endpoints[0].secret: must not be empty" in proc.stderr


def test_an_endpoint_naming_an_unknown_target_is_refused(tmp_path: Path) -> None:
    cfg = deep_merge(base_config(tmp_path), copy.deepcopy(CONFIG))
    cfg["webhooks"]["endpoints"][0]["plugin"] = "ghost"
    cfg["webhooks"]["endpoints"][1]["path"] = "/jobs"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_cli("check", "--config", str(path), timeout=60)
    assert proc.returncode == 78
    assert "webhooks.endpoints[0].plugin: no loaded plugin named 'ghost'" in proc.stderr
    assert "webhooks.endpoints[1].path: '/jobs' is taken by the API route /jobs" in proc.stderr
