"""A job's workspace and its ``.mcp.json``, on the whole actor tree (fake plugin processes).

The fake process looks at what a real plugin would: ``workspace_dir`` in its request,
``CHAMBERLAIN_WORKSPACE`` in its environment, the directory's and the file's modes,
and the file itself, which it echoes into its result and its stderr.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio
from fakes import finish, make_daemon, submit

from chamberlain.daemon.tree import Daemon
from chamberlain.plugins.mcp_servers import parse_mcp_server
from chamberlain.plugins.process import Limits, ProcessControl
from chamberlain.plugins.protocol import ProcessResult
from chamberlain.records import JobStatus, NewJob

GH_VALUE = "ghp-workspace-value-7781"
GITHUB: dict[str, Any] = {
    "name": "github",
    "command": ["npx", "-y", "@modelcontextprotocol/server-github", "--read-only"],
    "env": {"GITHUB_TOKEN": "${secret:gh_token}", "LOG_LEVEL": "debug"},
}


def look(workspace: Path) -> dict[str, Any]:
    """What a plugin finds in its workspace: the modes, and the ``.mcp.json``."""
    config = workspace / ".mcp.json"
    return {
        "dir_mode": stat.S_IMODE(workspace.stat().st_mode),
        "file_mode": stat.S_IMODE(config.stat().st_mode),
        "mcp": json.loads(config.read_text()),
    }


@attrs.define
class Probe:
    """A plugin process that reports its workspace; ``fail`` makes it raise instead."""

    seen: list[dict[str, Any]] = attrs.field(factory=list)
    fail: bool = False

    async def execute(
        self,
        *,
        entrypoint: Path,
        cwd: Path,
        request: bytes,
        timeout: float,
        limits: Limits,
        control: ProcessControl,
        env: dict[str, str],
        plugin: str,
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> ProcessResult:
        req = json.loads(request)
        seen: dict[str, Any] = {
            "workspace_dir": req.get("workspace_dir"),
            "env": env.get("CHAMBERLAIN_WORKSPACE"),
        }
        if seen["workspace_dir"] is not None:
            seen.update(look(Path(seen["workspace_dir"])))
            if on_stderr_line is not None:
                on_stderr_line(f"config: {json.dumps(seen['mcp'])}")
        self.seen.append(seen)
        if self.fail:
            raise RuntimeError("the process could not be started")
        return ProcessResult(
            exit_code=0,
            signal=None,
            stdout=json.dumps({"status": "ok", "result": seen}).encode(),
            stdout_overflow=False,
            stderr_tail=b"",
            stderr_truncated=False,
            terminated=None,
            timeout=timeout,
            duration=0.0,
        )


def daemon_for(tmp_path: Path, probe: Probe) -> Daemon:
    daemon = make_daemon(tmp_path, probe, plugins=("agent",))  # type: ignore[arg-type]
    daemon.vault.put("gh_token", GH_VALUE)
    return daemon


async def register(daemon: Daemon, body: dict[str, Any]) -> None:
    assert await daemon.gateway.create_mcp_server(parse_mcp_server(body, now=0.0)) is not None


async def test_a_job_with_mcp_servers_runs_in_a_private_workspace(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    daemon = daemon_for(tmp_path, probe)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await register(daemon, GITHUB)
        await register(
            daemon,
            {
                "name": "remote",
                "url": "https://mcp.example.com/v1",
                "headers": {"Authorization": "Bearer ${secret:gh_token}"},
            },
        )
        new = NewJob(plugin="agent", command="poll", mcp_servers=("remote", "github"))
        (job,) = await finish(daemon, await submit(daemon, new))
        messages = await daemon.gateway.job_messages(job.id)
        await daemon.shutdown()

    assert job.status is JobStatus.SUCCEEDED, job.last_error
    (seen,) = probe.seen
    workspace = tmp_path / "workspaces" / job.id
    assert seen["workspace_dir"] == seen["env"] == str(workspace)
    assert (seen["dir_mode"], seen["file_mode"]) == (0o700, 0o600)
    # Resolved in the file, in the order the job named the servers.
    assert seen["mcp"] == {
        "mcpServers": {
            "remote": {
                "type": "http",
                "url": "https://mcp.example.com/v1",
                "headers": {"Authorization": f"Bearer {GH_VALUE}"},
            },
            "github": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-github", "--read-only"],
                "env": {"GITHUB_TOKEN": GH_VALUE, "LOG_LEVEL": "debug"},
            },
        }
    }
    # ... and nowhere else: the result and the messages hold the redaction.
    stored = json.dumps(job.result)
    assert GH_VALUE not in stored
    assert "Bearer [redacted:gh_token]" in stored
    lines = [m.text for m in messages if m.text.startswith("config:")]
    assert len(lines) == 1 and GH_VALUE not in lines[0] and "[redacted:gh_token]" in lines[0]
    # Gone with the attempt.
    assert not workspace.exists()


async def test_a_job_without_mcp_servers_gets_no_workspace(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    daemon = daemon_for(tmp_path, probe)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (job,) = await finish(daemon, await submit(daemon, NewJob(plugin="agent", command="poll")))
        await daemon.shutdown()
    assert job.status is JobStatus.SUCCEEDED
    assert probe.seen == [{"workspace_dir": None, "env": None}]
    assert not any((tmp_path / "workspaces").glob("*"))


async def test_the_workspace_goes_when_the_attempt_fails(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe(fail=True)
    daemon = daemon_for(tmp_path, probe)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await register(daemon, GITHUB)
        new = NewJob(plugin="agent", command="poll", mcp_servers=("github",), max_attempts=2)
        (job,) = await finish(daemon, await submit(daemon, new))
        await daemon.shutdown()
    assert job.status is JobStatus.DEAD
    # Each attempt had its own workspace with the file, and none is left.
    assert [seen["file_mode"] for seen in probe.seen] == [0o600, 0o600]
    assert not any((tmp_path / "workspaces").glob("*"))


async def test_a_server_deleted_after_the_trigger_fails_the_job_unstarted(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    daemon = daemon_for(tmp_path, probe)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await register(daemon, GITHUB)
        assert await daemon.gateway.delete_mcp_server("github")
        new = NewJob(plugin="agent", command="poll", mcp_servers=("github",), max_attempts=3)
        (job,) = await finish(daemon, await submit(daemon, new))
        await daemon.shutdown()
    assert (job.status, job.attempt) == (JobStatus.FAILED, 1)
    assert job.last_error == (
        "the job was not started: MCP server 'github' is no longer registered"
        " (deleted after the job was triggered)"
    )
    assert probe.seen == []


async def test_a_secret_deleted_since_fails_the_job_naming_where_it_is_used(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    daemon = daemon_for(tmp_path, probe)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await register(daemon, GITHUB)
        daemon.vault.remove("gh_token")
        new = NewJob(plugin="agent", command="poll", mcp_servers=("github",))
        (job,) = await finish(daemon, await submit(daemon, new))
        await daemon.shutdown()
    assert (job.status, job.attempt) == (JobStatus.FAILED, 1)
    assert job.last_error is not None
    assert "'gh_token'" in job.last_error
    assert "mcp-servers[github].env.GITHUB_TOKEN" in job.last_error
    assert probe.seen == []
    assert not any((tmp_path / "workspaces").glob("*"))


async def test_workspaces_a_dead_daemon_left_are_swept_at_start(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    stale = tmp_path / "workspaces" / "5d1f0e7a-0000-4000-8000-000000000001"
    stale.mkdir(parents=True)
    (stale / ".mcp.json").write_text(json.dumps({"mcpServers": {"x": {"env": {"T": "old"}}}}))
    os.chmod(stale / ".mcp.json", 0o600)
    daemon = daemon_for(tmp_path, Probe())
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert not stale.exists()
        await daemon.shutdown()
