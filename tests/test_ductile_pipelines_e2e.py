"""Ductile's own pipelines, end to end through the real daemon with local fixtures.

``repo-maintenance``, ``repo-maintenance-notify`` and ``web-summarize`` are written
as Ductile's ``config/pipelines.yaml`` has them, and run with stand-ins of the same
names (:mod:`ductile_fixtures.standins`) against a bare git repository, a local
discord webhook mock and a stub ``fabric`` on ``PATH``.  Each step's ``event.payload``
(what Ductile's plugins read) is compared with what Ductile's dispatcher would give
it (``executeJob``, ``routeEventsWithOptions``, ``loadRequestContext`` in
``internal/dispatch/dispatcher.go``; ``Next`` in ``internal/router/engine.go``), then
the end effects are checked: the commit in the bare repository, the message the mock
received, the file written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from ductile_fixtures import (
    INSTANCE,
    DiscordMock,
    SharedDaemon,
    Waiter,
    bare_repo,
    base_config,
    discord_mock,
    git,
    instance_id,
    normalize,
    read_records,
    start_daemon,
    trigger,
)
from ductile_fixtures.standins import write_fabric_stub, write_standins

pytestmark = pytest.mark.e2e

#: Ductile's config/pipelines.yaml, the three pipelines under test.
PIPELINES: list[dict[str, Any]] = [
    {
        "name": "web-summarize",
        "on": "web.url.detected",
        "steps": [{"id": "summarize", "uses": "fabric"}, {"id": "write", "uses": "file_handler"}],
    },
    {
        "name": "repo-maintenance",
        "on": "git_repo_sync.completed",
        "steps": [
            {"id": "policy", "uses": "repo_policy"},
            {"id": "changelog", "uses": "changelog_microblog"},
            {"id": "commit", "uses": "git_commit_push"},
        ],
    },
    {
        "name": "repo-maintenance-notify",
        "on": "git_commit_push.completed",
        "steps": [{"id": "notify", "uses": "discord_notify"}],
    },
]
PLUGINS = [
    "git_repo_sync",
    "repo_policy",
    "changelog_microblog",
    "git_commit_push",
    "discord_notify",
    "fabric",
    "file_handler",
]
URL = "https://example.org/article"


@attrs.frozen(kw_only=True)
class World:
    daemon: SharedDaemon
    waiter: Waiter
    records: Path
    tmp: Path
    remote: Path
    discord: DiscordMock
    fabric_calls: Path
    out: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("ductile-pipelines")
    plugins, records, out = tmp / "plugins", tmp / "records", tmp / "summaries"
    records.mkdir()
    out.mkdir()
    write_standins(plugins, records)
    fabric_calls = tmp / "fabric-calls.jsonl"
    stub_bin = write_fabric_stub(tmp / "bin", fabric_calls).parent
    remote = bare_repo(
        tmp,
        "widget",
        [
            ("Initial import of the widget tool", {"README.md": "# widget\n\nA tool.\n"}),
            ("Add the parser for widget files", {"parser.txt": "parse\n"}),
            ("fix typo", {"parser.txt": "parse!\n"}),
        ],
    )
    mocks = discord_mock()
    discord = next(mocks)
    settings: dict[str, Any] = {name: {"retry": {"max_attempts": 1}} for name in PLUGINS}
    settings["discord_notify"]["config"] = {"webhook_url": discord.url}
    settings["fabric"]["config"] = {"FABRIC_DEFAULT_PATTERN": "summarize"}
    settings["file_handler"]["config"] = {"allowed_write_paths": str(out)}
    config = {**base_config(tmp, [plugins]), "plugins": settings, "pipelines": PIPELINES}
    daemon = start_daemon(
        tmp, config, env={"PATH": f"{stub_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    )
    try:
        yield World(
            daemon=daemon,
            waiter=Waiter(daemon=daemon, records=records),
            records=records,
            tmp=tmp,
            remote=remote,
            discord=discord,
            fabric_calls=fabric_calls,
            out=out,
        )
    finally:
        daemon.stop()
        mocks.close()


def step_context(
    plugin: str, pipeline: str, step: str, depth: int, max_depth: int
) -> dict[str, Any]:
    """The context loadRequestContext builds for a step without baggage."""
    return {
        "ductile_plugin": plugin,
        "ductile": {
            "pipeline_instance_id": INSTANCE,
            "route_depth": depth,
            "route_max_depth": max_depth,
        },
        "ductile_pipeline": pipeline,
        "ductile_step_id": step,
        "ductile_pipeline_instance_id": INSTANCE,
        "ductile_route_depth": depth,
        "ductile_route_max_depth": max_depth,
    }


def upstream(plugin: str, pipeline: str, step: str) -> dict[str, str]:
    """The keys routeEventsWithOptions adds to an event a pipeline step emitted."""
    return {
        "ductile_upstream_plugin": plugin,
        "ductile_upstream_pipeline": pipeline,
        "ductile_upstream_step_id": step,
    }


async def test_repo_maintenance_and_its_notification_run_end_to_end(world: World) -> None:
    clones = world.tmp / "clones"
    repo = clones / "ada" / "widget"
    trigger_payload = {
        "owner": "ada",
        "repo_name": "widget",
        "clone_url": str(world.remote),
        "clone_dir": str(clones),
        "default_branch": "main",
    }
    # Ductile's client call (POST /plugin/{plugin}/{command}) for one repository.
    await trigger(world.daemon, "/plugin/git_repo_sync/handle", {"payload": trigger_payload})
    (notify,) = await world.waiter.requests("discord_notify", 1, timeout=60)
    done = await world.waiter.job(notify["job_id"])
    assert done["status"] == "succeeded", done
    (sync,) = read_records(world.records, "git_repo_sync")
    (policy,) = read_records(world.records, "repo_policy")
    (changelog,) = read_records(world.records, "changelog_microblog")
    (commit,) = read_records(world.records, "git_commit_push")
    head = git("rev-parse", "main", cwd=world.remote).strip()
    first_sha = git("rev-parse", "main~1", cwd=world.remote).strip()

    # handlePluginTrigger: an api.trigger event, its payload merged with the context.
    assert sync["event"]["payload"] == {**trigger_payload, "ductile_plugin": "git_repo_sync"}

    # git_repo_sync.completed starts repo-maintenance (Router.Next, a root trigger);
    # the event's own result stays, ductile_upstream_plugin is added, and the step's
    # context (depth 1 of 3) is merged in.
    summary = "Repo sync cloned: ada/widget"
    assert normalize(policy)["event"]["payload"] == {
        "message": summary,
        "text": summary,
        "result": summary,
        "owner": "ada",
        "repo_name": "widget",
        "path": str(repo),
        "action": "cloned",
        "new_commits": True,
        "commit_count": 0,
        "before_sha": "",
        "after_sha": first_sha,
        "default_branch": "main",
        "clone_url": str(world.remote),
        "ssh_url": "",
        "ductile_upstream_plugin": "git_repo_sync",
        **step_context("repo_policy", "repo-maintenance", "policy", 1, 3),
    }
    # executeJob injects repo_policy's result into its event, which has none.
    assert normalize(changelog)["event"]["payload"] == {
        "repo_path": str(repo),
        "repo_name": "widget",
        "changed": True,
        "files_changed": ["README.md", "CHANGELOG.md"],
        "result": "repo_policy: updated README.md, CHANGELOG.md",
        **upstream("repo_policy", "repo-maintenance", "policy"),
        **step_context("changelog_microblog", "repo-maintenance", "changelog", 2, 3),
    }
    received = normalize(commit)["event"]["payload"]
    since = received.get("since")
    assert isinstance(since, str)
    assert dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(since) < dt.timedelta(days=8)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert received == {
        "repo_path": str(repo),
        "repo_name": "widget",
        "changed": True,
        "entry_date": today,
        "entry_text": "- Added the widget parser\n- Imported the widget tool",
        "since": since,
        "ssh_url": "",
        "clone_url": "",
        "result": "changelog_microblog: updated CHANGELOG.md",
        **upstream("changelog_microblog", "repo-maintenance", "changelog"),
        **step_context("git_commit_push", "repo-maintenance", "commit", 3, 3),
    }
    # git_commit_push.completed starts repo-maintenance-notify as a new instance;
    # Router.Next counts the depth on from the source (4) and keeps the source's
    # max depth (3); discord_notify finds its text in the injected payload.result.
    assert normalize(notify)["event"]["payload"] == {
        "repo_path": str(repo),
        "repo_name": "widget",
        "changed": True,
        "commit_sha": head,
        "result": "git_commit_push: pushed widget",
        **upstream("git_commit_push", "repo-maintenance", "commit"),
        **step_context("discord_notify", "repo-maintenance-notify", "notify", 4, 3),
    }
    ids = {instance_id(r) for r in (policy, changelog, commit)}
    assert len(ids) == 1
    assert instance_id(notify) not in ids

    # The end effects: one commit by ductile in the bare repository, with the entry
    # (repo_policy's README edit is undone by changelog_microblog's reset to origin,
    # as in Ductile), and the message posted to discord.
    log = git("log", "-1", "--format=%an <%ae>|%s", "main", cwd=world.remote).strip()
    assert log == "ductile <ductile@local>|Update changelog [ductile-changelog]"
    files = git("show", "--name-only", "--format=", "main", cwd=world.remote).split()
    assert files == ["CHANGELOG.md"]
    changelog_text = git("show", "main:CHANGELOG.md", cwd=world.remote)
    assert changelog_text == (
        f"# Changelog\n\n## {today}\n- Added the widget parser\n- Imported the widget tool\n\n"
    )
    assert world.discord.posts == [
        {"content": "git_commit_push: pushed widget", "username": "Ductile"}
    ]
    (call,) = [
        c
        for c in map(json.loads, world.fabric_calls.read_text().splitlines())
        if c["args"][:2] == ["--pattern", "ductile-microblog-changelog"]
    ]
    # The vague "fix typo" is left out, as changelog_microblog's is_vague does.
    assert call["input"] == (
        "Repo: widget\nCommit messages:\n- Initial import of the widget tool\n"
        "- Add the parser for widget files\n"
    )


async def test_web_summarize_runs_end_to_end(world: World) -> None:
    before = len(read_records(world.records, "fabric"))
    # Ductile's client call for a pipeline: POST /pipeline/{name}.
    await trigger(
        world.daemon,
        "/pipeline/web-summarize",
        {"payload": {"url": URL, "output_dir": str(world.out)}},
    )
    (writer,) = await world.waiter.requests("file_handler", 1, timeout=60)
    summarizer = read_records(world.records, "fabric")[before]
    summary = f"# Summary\n\nThe page at {URL} says hello."

    # handlePipelineTrigger: the event's type is the pipeline's `on`.
    assert normalize(summarizer)["event"] == {
        "type": "web.url.detected",
        "payload": {
            "url": URL,
            "output_dir": str(world.out),
            **step_context("fabric", "web-summarize", "summarize", 1, 2),
        },
        "timestamp": "<timestamp>",
        # Chamberlain's own API events have an id and a source (docs/DUCTILE.md).
        "event_id": "<event_id>",
        "source": "api",
    }
    # fabric's event already has a result (the summary): executeJob keeps it.
    assert normalize(writer)["event"]["payload"] == {
        "result": summary,
        "pattern": "summarize",
        "prompt": "",
        "model": "default",
        "url": URL,
        "youtube_url": "",
        "input_length": 0,
        "output_length": len(summary),
        "output_dir": str(world.out),
        **upstream("fabric", "web-summarize", "summarize"),
        **step_context("file_handler", "web-summarize", "write", 2, 2),
    }
    assert normalize(writer)["event"]["type"] == "fabric.completed"
    (written,) = world.out.glob("summarize_*.md")
    assert written.read_text() == summary
    scrapes = [
        c["args"]
        for c in map(json.loads, world.fabric_calls.read_text().splitlines())
        if "--scrape_url" in c["args"]
    ]
    assert scrapes == [["--pattern", "summarize", "--scrape_url", URL]]


async def test_discord_notify_without_a_message_fails_as_ductiles_does(world: World) -> None:
    posts = len(world.discord.posts)
    answer = await trigger(world.daemon, "/plugin/discord_notify/handle", {"payload": {}})
    job = await world.waiter.job(answer["job_id"])
    # discord_notify/run.py: nothing in message, content, title, template, default
    # or result -> this error, not retried; nothing is posted.
    assert job["status"] == "failed", job
    assert job["last_error"] == (
        "No message content found in payload (tried: message, content, result, title,"
        " message_template, default_message)"
    )
    assert len(world.discord.posts) == posts
