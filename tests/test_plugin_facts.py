"""``fact_outputs`` and ``mirror_object``: Ductile's append-only plugin facts.

A manifest rule names a command whose ``state_updates`` are a snapshot: each success
records them as a fact instead of merging them into the state, and, with
``compatibility_view: mirror_object``, the state becomes that snapshot whole.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from conftest import DaemonFactory
from fakes import FakePlugins, fake_plugin, finish, make_daemon, stored_job, submit

from chamberlain.plugins.manifest import FactOutput, ManifestError, load_manifest
from chamberlain.plugins.protocol import Outcome, OutcomeKind, Response
from chamberlain.records import JobStatus, NewJob
from chamberlain.retry import STATE_MAX_BYTES, RetryPolicy, settle
from chamberlain.store import plugin_facts

MIRROR = FactOutput(command="poll", fact_type="playlist.snapshot", mirror=True)
RECORD = FactOutput(command="poll", fact_type="playlist.seen", mirror=False)


def manifest_with(tmp_path: Path, facts: object) -> Path:
    directory = tmp_path / "p"
    directory.mkdir(exist_ok=True)
    entry = directory / "run.sh"
    entry.write_text("#!/bin/sh\n")
    entry.chmod(0o755)
    path = directory / "manifest.yaml"
    lines = [
        "name: p",
        "version: 1.0.0",
        "protocol: 2",
        "entrypoint: run.sh",
        "commands: [poll, handle]",
    ]
    path.write_text("\n".join(lines) + "\n" + f"fact_outputs: {facts}\n")
    return path


def test_a_manifests_rules_are_read(tmp_path: Path) -> None:
    rules = (
        "[{when: {command: poll}, from: state_updates, fact_type: p.snap,"
        " compatibility_view: mirror_object}, {when: {command: handle}, from: state_updates,"
        " fact_type: p.seen}]"
    )
    manifest = load_manifest(manifest_with(tmp_path, rules))
    assert manifest.fact_outputs == (
        FactOutput(command="poll", fact_type="p.snap", mirror=True),
        FactOutput(command="handle", fact_type="p.seen", mirror=False),
    )


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ("{}", "fact_outputs must be a list, not a mapping"),
        ("[{from: state_updates, fact_type: t}]", "fact_outputs[0].when.command is required"),
        (
            "[{when: {command: nope}, from: state_updates, fact_type: t}]",
            "fact_outputs[0].when.command 'nope' is not one of the manifest's commands",
        ),
        (
            "[{when: {command: poll}, from: result, fact_type: t}]",
            "fact_outputs[0].from must be state_updates (the only source), got 'result'",
        ),
        ("[{when: {command: poll}, from: state_updates}]", "fact_outputs[0].fact_type is required"),
        (
            "[{when: {command: poll}, from: state_updates, fact_type: t,"
            " compatibility_view: merge}]",
            "fact_outputs[0].compatibility_view must be mirror_object or absent, got 'merge'",
        ),
    ],
)
def test_a_bad_rule_is_a_manifest_error_naming_it(tmp_path: Path, rules: str, reason: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest_with(tmp_path, rules))
    assert info.value.reason == reason


def succeeded(updates: dict[str, Any]) -> Outcome:
    return Outcome(
        kind=OutcomeKind.SUCCEEDED,
        retryable=False,
        error=None,
        response=Response(status="ok", state_updates=updates),
        raw_output=None,
        exit_code=0,
        signal=None,
        stderr_tail="",
    )


def test_a_mirrored_fact_replaces_the_state_whole() -> None:
    job = stored_job(id="j", plugin="p", command="poll")
    s = settle(
        job,
        succeeded({"videos": [1, 2]}),
        now=5.0,
        policy=RetryPolicy(),
        state={"old": True, "videos": [1]},
        facts=(MIRROR, RECORD),
    )
    assert s.status is JobStatus.SUCCEEDED
    assert s.new_state == {"videos": [1, 2]}  # "old" is gone: mirrored, not merged
    assert [(f.fact_type, f.job_id, f.command, f.fact) for f in s.facts] == [
        ("playlist.snapshot", "j", "poll", {"videos": [1, 2]}),
        ("playlist.seen", "j", "poll", {"videos": [1, 2]}),
    ]


def test_a_fact_without_a_view_leaves_the_state_alone() -> None:
    job = stored_job(plugin="p", command="poll")
    s = settle(
        job, succeeded({"n": 1}), now=5.0, policy=RetryPolicy(), state={"k": 1}, facts=(RECORD,)
    )
    assert s.new_state is None
    assert [f.fact for f in s.facts] == [{"n": 1}]


def test_rules_of_another_command_merge_as_usual() -> None:
    job = stored_job(plugin="p", command="handle")
    s = settle(
        job, succeeded({"n": 1}), now=5.0, policy=RetryPolicy(), state={"k": 1}, facts=(MIRROR,)
    )
    assert (s.new_state, s.facts) == ({"k": 1, "n": 1}, ())


def test_an_oversized_fact_fails_the_job() -> None:
    job = stored_job(plugin="p", command="poll")
    big = {"blob": "x" * STATE_MAX_BYTES}
    s = settle(job, succeeded(big), now=5.0, policy=RetryPolicy(), state={}, facts=(MIRROR,))
    assert s.status is JobStatus.FAILED and s.facts == ()
    assert s.last_error is not None and "the fact would be" in s.last_error


async def test_the_next_request_sees_the_mirrored_state_and_the_facts_are_kept(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    manifest = attrs.evolve(fake_plugin(tmp_path, "a"), fact_outputs=(MIRROR,))
    daemon = make_daemon(tmp_path, fake, manifests=(manifest,))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        for updates in ({"x": 1, "y": 1}, {"y": 2}, {}):
            ids = await submit(
                daemon, NewJob(plugin="a", command="poll", payload={"state_updates": updates})
            )
            await finish(daemon, ids)
        await daemon.shutdown()
    # Merged, this would be {"x": 1, "y": 2} on the third request.
    assert [r["state"] for r in fake.requests] == [{}, {"x": 1, "y": 1}, {"y": 2}]
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.row_factory = sqlite3.Row
    facts = plugin_facts.newest(conn, "a")
    assert [f.fact for f in facts] == [{"y": 2}, {"x": 1, "y": 1}]
    assert [f.fact_type for f in facts] == ["playlist.snapshot"] * 2
    assert plugin_facts.newest(conn, "a", fact_type="other") == []
    oldest = min(f.created_at for f in facts)
    assert plugin_facts.prune(conn, older_than=oldest) == 0
    assert plugin_facts.prune(conn, older_than=oldest + 3600) == 2
    assert plugin_facts.newest(conn, "a") == []
    conn.close()


SNAPSHOT_PLUGIN = """#!/bin/sh
# Answers with the snapshot it is given as state_updates; the request's state is its result.
request=$(cat)
case $request in
  *'"n":1'*) updates='{"videos":[1]}' ;;
  *) updates='{"videos":[1,2]}' ;;
esac
printf '{"status":"ok","result":"ok","state_updates":%s}\\n' "$updates"
"""


@pytest.mark.e2e
async def test_facts_are_listed_by_the_api_newest_first(
    tmp_path: Path, daemon: DaemonFactory
) -> None:
    root = tmp_path / "plugins"
    directory = root / "snap"
    directory.mkdir(parents=True)
    entry = directory / "run.sh"
    entry.write_text(SNAPSHOT_PLUGIN)
    entry.chmod(0o755)
    (directory / "manifest.yaml").write_text(
        "name: snap\nversion: 1.0.0\nprotocol: 2\nentrypoint: run.sh\ncommands: [poll]\n"
        "fact_outputs:\n  - when: {command: poll}\n    from: state_updates\n"
        "    fact_type: snap.videos\n    compatibility_view: mirror_object\n"
    )
    d = await daemon({"plugin_roots": [str(root)], "plugins": {"snap": {}}})
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        for n in (1, 2):
            r = await client.post("/plugin/snap/poll", json={"payload": {"n": n}})
            assert r.status_code == 202, r.text
            done = await client.get(f"/job/{r.json()['job_id']}", params={"wait": "20s"})
            assert done.json()["status"] == "succeeded", done.text
        listed = await client.get("/plugins/snap/facts")
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert body["plugin"] == "snap"
        assert [f["fact"] for f in body["facts"]] == [{"videos": [1, 2]}, {"videos": [1]}]
        assert {f["fact_type"] for f in body["facts"]} == {"snap.videos"}
        one = await client.get(
            "/plugins/snap/facts", params={"limit": "1", "fact_type": "snap.videos"}
        )
        assert [f["fact"] for f in one.json()["facts"]] == [{"videos": [1, 2]}]
        other = await client.get("/plugins/snap/facts", params={"fact_type": "nope"})
        assert other.json()["facts"] == []
        bad = await client.get("/plugins/snap/facts", params={"limit": "0"})
        assert bad.status_code == 400
        assert bad.json() == {"error": "query parameter 'limit' must be an integer from 1 to 1000"}
        unknown = await client.get("/plugins/ghost/facts")
        assert unknown.status_code == 404 and unknown.json() == {"error": "unknown plugin 'ghost'"}
