"""``/mcp-servers`` and a trigger's ``mcp_servers``, through the app onto a real JobStore.

The app is the daemon's (auth, errors, the spec check of every answer); behind it a
real Gateway and JobStore on a database in ``tmp_path``, so a registration is
stored, read back, and known again after the store is opened anew.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from chamberlain.actors.gateway import Gateway, Lifecycle, Phase
from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.journal import Journal
from chamberlain.actors.mail import CancelQueued, JobStoreRequest
from chamberlain.actors.mailbox import call as mailbox_call
from chamberlain.config import ApiConfig, AuthConfig, PluginConfig, TokenConfig
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.manifest import CommandSpec, CommandType, Manifest
from chamberlain.records import Job
from chamberlain.routing.planner import Routing
from chamberlain.vault import Vault
from chamberlain.web.app import create_app

GH_VALUE = "ghp-mcp-value-0042"
TOKENS = {
    "admin": "admin-key",
    "mcp_ro": "mcp-ro-t",
    "mcp_rw": "mcp-rw-t",
    "reader": "reader-t",
    "plugin_rw": "plugin-rw-t",
}

GITHUB: dict[str, Any] = {
    "name": "github",
    "command": ["npx", "-y", "@modelcontextprotocol/server-github"],
    "env": {"GITHUB_TOKEN": "${secret:gh_token}"},
}


def api_config() -> ApiConfig:
    return ApiConfig(
        listen="127.0.0.1:0",
        auth=AuthConfig(
            api_key=TOKENS["admin"],
            tokens=(
                TokenConfig(name="mro", token=TOKENS["mcp_ro"], scopes=("mcp:ro",)),
                TokenConfig(name="mrw", token=TOKENS["mcp_rw"], scopes=("mcp:rw",)),
                TokenConfig(name="reader", token=TOKENS["reader"], scopes=("read:*",)),
                TokenConfig(name="prw", token=TOKENS["plugin_rw"], scopes=("plugin:rw", "jobs:rw")),
            ),
        ),
    )


def agent() -> BoundPlugin:
    manifest = Manifest(
        name="agent",
        version="1",
        protocol=2,
        entrypoint=Path("/nonexistent/agent/run.sh"),
        directory=Path("/nonexistent/agent"),
        commands=(CommandSpec(name="poll", type=CommandType.READ),),
    )
    return BoundPlugin(manifest=manifest, settings=PluginConfig(), parallelism=1)


@attrs.define(eq=False)
class Backend:
    """A real JobStore on ``path`` and the Gateway the app asks; restartable."""

    path: Path
    vault: Vault = attrs.field(factory=Vault)
    gateway: Gateway = attrs.field(init=False)
    cancel: trio.CancelScope = attrs.field(init=False)

    async def start(self, nursery: trio.Nursery) -> None:
        tx, rx = trio.open_memory_channel[JobStoreRequest](64)
        nowhere: trio.MemorySendChannel[Any] = trio.open_memory_channel[Any](0)[0]
        plugins = {"agent": agent()}
        # A fresh vault each time, as a restarted daemon has: the gateway tells it
        # about the servers' references.
        self.vault = Vault(configured={})
        self.vault.put("gh_token", GH_VALUE)
        self.gateway = Gateway(
            store=tx,
            dispatcher=nowhere,
            plugins=plugins,
            lifecycle=Lifecycle(phase=Phase.READY),
            supervisor_statistics=lambda: None,  # type: ignore[arg-type,return-value]
            router=nowhere,
            routing=Routing(routes=(), pipelines=(), plugins=plugins),
            vault=self.vault,
            timeout=10.0,
        )
        store = JobStore(
            path=str(self.path),
            wake_dispatcher=lambda: None,
            journal=Journal(),
            mcp_servers_loaded=self.gateway.mcp_servers_loaded,
        )

        # The store runs in its own scope so a test can stop it and open it anew.
        inner = trio.CancelScope()
        self.cancel = inner

        async def run_store(*, task_status: trio.TaskStatus[None]) -> None:
            with inner:
                await store.run(rx, task_status=task_status)

        await nursery.start(run_store)

    def app(self) -> QuartTrio:
        return create_app(self.gateway, api_config(), redactor=lambda: self.vault.redactor)


@pytest.fixture
async def backend(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Backend]:
    backend = Backend(tmp_path / "state.db")
    await backend.start(nursery)
    yield backend
    backend.cancel.cancel()


async def call(
    app: QuartTrio, method: str, path: str, *, who: str = "admin", **kwargs: Any
) -> tuple[int, Any, Headers]:
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    response = await app.test_client().open(path, method=method, headers=headers, **kwargs)
    text = await response.get_data(as_text=True)
    body: Any = json.loads(text) if response.mimetype == "application/json" else text
    return response.status_code, body, response.headers


async def test_register_list_get_and_delete(backend: Backend) -> None:
    app = backend.app()
    code, created, headers = await call(app, "POST", "/mcp-servers", who="mcp_rw", json=GITHUB)
    assert code == 201, created
    assert headers["Location"] == "/mcp-servers/github"
    assert created["name"] == "github" and created["url"] is None
    # The reference is shown as written: no answer ever holds the value.
    assert created["env"] == {"GITHUB_TOKEN": "${secret:gh_token}"}
    remote = {"name": "remote", "url": "https://mcp.example.com/v1"}
    assert (await call(app, "POST", "/mcp-servers", who="mcp_rw", json=remote))[0] == 201

    code, listed, _ = await call(app, "GET", "/mcp-servers", who="mcp_ro")
    assert code == 200
    assert [s["name"] for s in listed["mcp_servers"]] == ["github", "remote"]
    assert listed["mcp_servers"][0] == created
    assert GH_VALUE not in json.dumps(listed)
    code, one, _ = await call(app, "GET", "/mcp-servers/github", who="reader")
    assert (code, one) == (200, created)

    code, again, _ = await call(app, "POST", "/mcp-servers", who="mcp_rw", json=GITHUB)
    assert code == 409 and "exists already" in again["error"]

    code, _, _ = await call(app, "DELETE", "/mcp-servers/github", who="mcp_rw")
    assert code == 204
    code, gone, _ = await call(app, "GET", "/mcp-servers/github", who="mcp_ro")
    assert code == 404 and gone["error"] == "unknown MCP server 'github'"
    code, gone, _ = await call(app, "DELETE", "/mcp-servers/github", who="mcp_rw")
    assert code == 404
    code, listed, _ = await call(app, "GET", "/mcp-servers", who="mcp_ro")
    assert [s["name"] for s in listed["mcp_servers"]] == ["remote"]


@pytest.mark.parametrize(
    ("who", "method", "path", "allowed"),
    [
        ("mcp_ro", "GET", "/mcp-servers", True),
        ("reader", "GET", "/mcp-servers", True),
        ("mcp_rw", "GET", "/mcp-servers", True),
        ("plugin_rw", "GET", "/mcp-servers", False),
        ("mcp_ro", "POST", "/mcp-servers", False),
        ("reader", "POST", "/mcp-servers", False),
        ("mcp_ro", "DELETE", "/mcp-servers/github", False),
        ("reader", "DELETE", "/mcp-servers/github", False),
        ("plugin_rw", "DELETE", "/mcp-servers/github", False),
    ],
)
async def test_scopes(backend: Backend, who: str, method: str, path: str, allowed: bool) -> None:
    app = backend.app()
    assert (await call(app, "POST", "/mcp-servers", json=GITHUB))[0] == 201
    kwargs = {"json": {**GITHUB, "name": "other"}} if method == "POST" else {}
    code, body, headers = await call(app, method, path, who=who, **kwargs)
    if allowed:
        assert code == 200
    else:
        needed = "mcp:ro" if method == "GET" else "mcp:rw"
        assert code == 403
        assert f"lacks the scope {needed!r}" in body["error"]
        assert f'scope="{needed}"' in headers["WWW-Authenticate"]
    # Nothing a refused caller asked for happened.
    code, listed, _ = await call(app, "GET", "/mcp-servers")
    assert [s["name"] for s in listed["mcp_servers"]] == ["github"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x y", "command": ["a"]}, "name: invalid MCP server name 'x y'"),
        ({"name": "a", "command": "npx"}, "command must be a list of strings (argv)"),
        ({"name": "a", "command": []}, "command must not be empty"),
        ({"name": "a"}, "command is required"),
        ({"name": "a", "url": "file:///etc/passwd"}, "url must be an http:// or https:// URL"),
        ({"name": "a", "command": ["x"], "env": {"2X": "v"}}, "env.2X: invalid environment"),
        (
            {"name": "a", "command": ["x"], "env": {"T": "${secret:nope}"}},
            "env.T: unknown secret 'nope'; register it first with POST /secrets",
        ),
        (
            {"name": "a", "url": "https://h/", "headers": {"K": "${secret:nope}"}},
            "headers.K: unknown secret 'nope'",
        ),
        ({"name": "a", "command": ["x"], "colour": 1}, "unknown field 'colour'"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    backend: Backend, body: dict[str, Any], message: str
) -> None:
    app = backend.app()
    code, answer, _ = await call(app, "POST", "/mcp-servers", json=body)
    assert code == 400
    assert answer["error"].startswith(message), answer["error"]
    code, listed, _ = await call(app, "GET", "/mcp-servers")
    assert listed["mcp_servers"] == []


async def test_a_bad_name_in_the_path_is_a_400(backend: Backend) -> None:
    code, answer, _ = await call(backend.app(), "GET", "/mcp-servers/no%20way")
    assert code == 400 and "invalid MCP server name 'no way'" in answer["error"]


async def test_a_secret_a_server_names_cannot_be_deleted(backend: Backend) -> None:
    app = backend.app()
    assert (await call(app, "POST", "/mcp-servers", json=GITHUB))[0] == 201
    code, answer, _ = await call(app, "DELETE", "/secrets/gh_token")
    assert code == 409, answer
    assert answer["references"] == ["mcp-servers[github].env.GITHUB_TOKEN"]
    assert (await call(app, "DELETE", "/mcp-servers/github"))[0] == 204
    assert backend.vault.references_to("gh_token") == []


async def test_a_trigger_names_registered_servers_only(backend: Backend) -> None:
    app = backend.app()
    assert (await call(app, "POST", "/mcp-servers", json=GITHUB))[0] == 201
    body = {"mcp_servers": ["github", "nope"]}
    code, answer, _ = await call(app, "POST", "/trigger/agent/poll", who="plugin_rw", json=body)
    assert code == 400
    assert answer["error"].startswith("mcp_servers[1]: unknown MCP server 'nope'")
    code, answer, _ = await call(
        app, "POST", "/plugin/agent/poll", who="plugin_rw", json={"mcp_servers": "github"}
    )
    assert code == 400 and answer["error"].startswith("mcp_servers must be a list")

    code, accepted, _ = await call(
        app, "POST", "/trigger/agent/poll", who="plugin_rw", json={"mcp_servers": ["github"]}
    )
    assert code == 202, accepted
    code, job, _ = await call(app, "GET", f"/job/{accepted['job_id']}", who="plugin_rw")
    assert job["mcp_servers"] == ["github"]
    code, plain, _ = await call(app, "POST", "/trigger/agent/poll", who="plugin_rw")
    code, job, _ = await call(app, "GET", f"/job/{plain['job_id']}", who="plugin_rw")
    assert job["mcp_servers"] == []


async def test_a_batch_names_the_job_whose_server_is_unknown(backend: Backend) -> None:
    app = backend.app()
    assert (await call(app, "POST", "/mcp-servers", json=GITHUB))[0] == 201
    jobs = [
        {"plugin": "agent", "command": "poll", "mcp_servers": ["github"]},
        {"plugin": "agent", "command": "poll", "mcp_servers": ["github", "gone"]},
    ]
    code, answer, _ = await call(app, "POST", "/jobs", who="plugin_rw", json={"jobs": jobs})
    assert code == 400
    assert answer["error"].startswith("jobs[1].mcp_servers[1]: unknown MCP server 'gone'")
    code, answer, _ = await call(app, "POST", "/jobs", who="plugin_rw", json={"jobs": jobs[:1]})
    assert code == 202
    (entry,) = answer["jobs"]
    code, job, _ = await call(app, "GET", f"/job/{entry['job_id']}", who="plugin_rw")
    assert job["mcp_servers"] == ["github"]


async def test_the_registry_is_known_again_when_the_store_opens_anew(
    backend: Backend, nursery: trio.Nursery
) -> None:
    app = backend.app()
    assert (await call(app, "POST", "/mcp-servers", json=GITHUB))[0] == 201
    backend.cancel.cancel()
    await backend.start(nursery)
    app = backend.app()
    code, listed, _ = await call(app, "GET", "/mcp-servers")
    assert [s["name"] for s in listed["mcp_servers"]] == ["github"]
    # Loaded as the store opened: triggers and the secret registry know it at once.
    code, _, _ = await call(
        app, "POST", "/trigger/agent/poll", who="plugin_rw", json={"mcp_servers": ["github"]}
    )
    assert code == 202
    assert backend.vault.references_to("gh_token") == ["mcp-servers[github].env.GITHUB_TOKEN"]


async def test_a_retry_keeps_the_servers_unless_one_is_gone(backend: Backend) -> None:
    app = backend.app()
    assert (await call(app, "POST", "/mcp-servers", json=GITHUB))[0] == 201
    code, accepted, _ = await call(
        app, "POST", "/trigger/agent/poll", who="plugin_rw", json={"mcp_servers": ["github"]}
    )
    job_id = accepted["job_id"]
    # No Dispatcher runs here: cancel the queued job at the store itself.
    cancelled: tuple[Job | None, bool] = await mailbox_call(
        backend.gateway.store, lambda r: CancelQueued(job_id=job_id, reason="test", reply=r)
    )
    assert cancelled[1]
    code, retried, _ = await call(app, "POST", f"/job/{job_id}/retry", who="plugin_rw")
    assert code == 202, retried
    code, job, _ = await call(app, "GET", f"/job/{retried['job_id']}", who="plugin_rw")
    assert job["mcp_servers"] == ["github"]
    assert (await call(app, "DELETE", "/mcp-servers/github"))[0] == 204
    code, refused, _ = await call(app, "POST", f"/job/{job_id}/retry", who="plugin_rw")
    assert code == 409
    assert refused["error"] == "the job's MCP server 'github' is no longer registered"
