"""The benchmarks still run: each script once, in its quick mode, a few seconds each.

Benchmarks are run by hand (docs/PERFORMANCE.md); what CI checks is only that they
have not rotted.  Each script runs as a subprocess with ``--quick`` and with wrk,
hyperfine and webhook hidden (their paths point nowhere), so the check needs none
of them and must say so: a missing tool is a loud ``SKIPPED`` line, never a silent
gap.  The wrk path itself is exercised by one more run, when wrk is installed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

BENCH = Path(__file__).resolve().parent.parent / "bench"
HIDDEN = {"WRK": "/nonexistent/wrk", "HYPERFINE": "/nonexistent/hyperfine"}
HIDDEN_ALL = {**HIDDEN, "WEBHOOK": "/nonexistent/webhook"}


async def run_bench(
    script: str, tmp_path: Path, env: dict[str, str], *extra: str
) -> tuple[str, dict[str, Any]]:
    """Run ``bench/<script> --quick``; its output and the figures it saved."""
    out = tmp_path / "figures.json"
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, str(BENCH / script), "--quick", "--json", str(out), *extra],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, **env},
            cwd=BENCH.parent,
        )
    text = done.stdout.decode()
    assert done.returncode == 0, text + done.stderr.decode()
    return text, json.loads(out.read_text())


def figures_by_name(saved: dict[str, Any]) -> dict[str, float]:
    figures = {f["name"]: f["value"] for f in saved["figures"]}
    for name, value in figures.items():
        assert isinstance(value, int | float), name
        assert math.isfinite(value), name
    return figures


async def test_spawn_bound(tmp_path: Path) -> None:
    text, saved = await run_bench("spawn_bound.py", tmp_path, HIDDEN)
    figures = figures_by_name(saved)
    assert figures["spawn bound: best"] > 0
    assert figures["spawn bound: best"] == max(
        figures["spawn bound: N=1"], figures["spawn bound: N=2"]
    )
    assert "SKIPPED hyperfine cross-check: hyperfine not found" in text


async def test_spawn_bound_of_a_chosen_plugin(tmp_path: Path) -> None:
    # The flood is compared with the trivial plugin's bound, not echo's: the figures
    # name the plugin they ran.
    text, saved = await run_bench("spawn_bound.py", tmp_path, HIDDEN, "--plugin", "trivial")
    assert "the trivial plugin" in text
    figures = figures_by_name(saved)
    assert figures["spawn bound (trivial): N=1"] > 0
    assert figures["spawn bound (trivial): best"] == max(
        figures["spawn bound (trivial): N=1"], figures["spawn bound (trivial): N=2"]
    )
    assert not any(name.startswith("spawn bound:") for name in figures)


async def test_spawn_bound_without_a_compiler(tmp_path: Path) -> None:
    text, saved = await run_bench("spawn_bound.py", tmp_path, {**HIDDEN, "CC": "/nonexistent/cc"})
    assert "SKIPPED C spawner" in text
    assert figures_by_name(saved)["spawn bound: N=1"] > 0


async def test_framework_floor_skips_loudly_without_wrk(tmp_path: Path) -> None:
    text, saved = await run_bench("floor_app.py", tmp_path, HIDDEN)
    assert "SKIPPED framework floor: wrk not found (install: apt-get install" in text
    assert saved["figures"] == []


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
async def test_framework_floor_under_wrk(tmp_path: Path) -> None:
    _, saved = await run_bench("floor_app.py", tmp_path, {})
    figures = figures_by_name(saved)
    assert figures["framework floor: POST rate"] > 0
    assert 0 < figures["framework floor: p50"] <= figures["framework floor: p99"]


async def test_trigger_path(tmp_path: Path) -> None:
    text, saved = await run_bench("trigger_path.py", tmp_path, HIDDEN, "--floor", "1000")
    assert "SKIPPED trigger path under wrk: wrk not found" in text
    figures = figures_by_name(saved)
    for label in ("ingest only", "with dispatch"):
        p50 = figures[f"trigger ({label}): p50 at 20 req/s"]
        assert 0 < p50 <= figures[f"trigger ({label}): p99 at 20 req/s"]
    assert figures["jobstore: requests per transaction"] >= 1


async def test_core_dispatch(tmp_path: Path) -> None:
    _, saved = await run_bench("core_dispatch.py", tmp_path, HIDDEN, "--spawn-bound", "100")
    figures = figures_by_name(saved)
    for workload in ("batch", "fanout"):
        assert figures[f"dispatch ({workload}): first to last completion"] > 0
        assert figures[f"dispatch ({workload}): daemon CPU per job"] > 0
        assert figures[f"dispatch ({workload}): JobStore time per job"] > 0
    for rate in [f for f in saved["figures"] if f["name"].endswith("first to last completion")]:
        assert rate["ratio"] == pytest.approx(rate["value"] / 100)


async def test_flood_skips_loudly_without_wrk(tmp_path: Path) -> None:
    text, saved = await run_bench("flood.py", tmp_path, HIDDEN, "--spawn-bound", "100")
    assert "SKIPPED trigger flood: wrk not found (install: apt-get install" in text
    assert saved["figures"] == []


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
async def test_flood_under_wrk(tmp_path: Path) -> None:
    text, saved = await run_bench("flood.py", tmp_path, {}, "--spawn-bound", "100")
    assert "SKIPPED" not in text
    figures = figures_by_name(saved)
    assert figures["flood: triggers accepted"] > 0
    assert figures["flood: end to end"] > 0
    assert figures["flood: runners with no HTTP load"] > 0
    # A quick flood is a second long: the runners may finish nothing inside it.
    assert figures["flood: runners during the flood"] >= 0
    assert 0 < figures["flood: GET /job p50"] <= figures["flood: GET /job p99"]
    by_name = {f["name"]: f for f in saved["figures"]}
    assert by_name["flood: end to end"]["ratio"] == pytest.approx(
        figures["flood: end to end"] / 100
    )
    # The fairness: the runners' rate under the flood over their rate without it.
    assert by_name["flood: runners during the flood"]["ratio"] == pytest.approx(
        figures["flood: runners during the flood"] / figures["flood: runners with no HTTP load"]
    )
    for name in ("flood: end to end", "flood: runners during the flood", "flood: GET /job p99"):
        assert by_name[name]["target"], name


async def test_spawn_paths(tmp_path: Path) -> None:
    _, saved = await run_bench("spawn_paths.py", tmp_path, HIDDEN)
    found = {f["name"]: f for f in saved["figures"]}
    ways = ("trio's open_process", "spawn()", "run_plugin()")
    for way in ways:
        figure = found[f"spawn paths: {way}, parent CPU per start"]
        assert figure["value"] > 0 and "starts/s" in figure["note"]
    base = found["spawn paths: trio's open_process, parent CPU per start"]
    assert base["ratio"] == pytest.approx(1.0)


async def test_queued_memory(tmp_path: Path) -> None:
    _, saved = await run_bench("queued_memory.py", tmp_path, HIDDEN)
    figures = figures_by_name(saved)
    assert figures["queued: RSS when idle"] > 1
    assert figures["queued: submitting"] > 0
    # The per-job figure is the growth spread over the 2,000 jobs of a quick run.
    grown = figures["queued: RSS over idle for 2,000 jobs"]
    assert figures["queued: RSS per queued job"] * 2000 == pytest.approx(grown * 1e6)


async def test_session_roundtrip(tmp_path: Path) -> None:
    _, saved = await run_bench("session_roundtrip.py", tmp_path, HIDDEN)
    figures = figures_by_name(saved)
    post = figures["session: message POST p50"]
    # The answer comes after the message is stored: a round trip is never shorter.
    assert 0 < post <= figures["session: round trip p50"]
    assert figures["session: messages with 2 sessions at once"] > 0


async def test_mcp_calls(tmp_path: Path) -> None:
    _, saved = await run_bench("mcp_calls.py", tmp_path, HIDDEN)
    figures = figures_by_name(saved)
    names = (
        "mcp: echo__poll call p50",
        "mcp: echo__poll call p99",
        "http: trigger + wait p50",
        "mcp: get_job call p50",
        "mcp: echo__poll call in the daemon p50",
        "mcp: get_job call in the daemon p50",
        "mcp: daemon CPU per echo__poll call",
        "mcp: client CPU per echo__poll call",
        "mcp: daemon CPU per get_job call",
        "mcp: client CPU per get_job call",
        "mcp: tools/list p50",
        "mcp: calls with 2 sessions at once",
    )
    for name in names:
        assert figures[name] > 0, name
    # Each MCP figure is compared with the HTTP path measured in the same run.
    by_name = {f["name"]: f for f in saved["figures"]}
    for name in names:
        if by_name[name]["limit_name"] is not None:
            assert by_name[name]["limit"] > 0, name
            assert by_name[name]["ratio"] == pytest.approx(
                by_name[name]["value"] / by_name[name]["limit"]
            ), name


async def test_peer_skips_loudly_without_its_tools(tmp_path: Path) -> None:
    text, saved = await run_bench("peer.py", tmp_path, HIDDEN_ALL)
    assert "SKIPPED peer comparison: wrk not found" in text
    assert saved["figures"] == []


async def test_idle(tmp_path: Path) -> None:
    _, saved = await run_bench("idle.py", tmp_path, HIDDEN)
    figures = figures_by_name(saved)
    assert figures["idle: RSS"] > 1
    assert figures["idle: CPU"] >= 0
    assert figures["idle: context switches"] >= 0


async def test_store_scale(tmp_path: Path) -> None:
    _, saved = await run_bench("store_scale.py", tmp_path, HIDDEN)
    figures = figures_by_name(saved)
    assert 0 < figures["GET /jobs?limit=50 p50"] <= figures["GET /jobs?limit=50 p99"]
    assert figures["GET /job/{id} p50"] > 0
    # A stored job (with the echo plugin's response) takes a few hundred bytes at least.
    assert figures["store: bytes per job on disk"] > 200


async def test_run_all_imports_every_part() -> None:
    # run_all.py is not run here (it would repeat every test above); --help runs its
    # imports, which pull in every script it runs.
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, str(BENCH / "run_all.py"), "--help"], capture_stdout=True
        )
    assert b"--quick" in done.stdout


def test_the_dispatch_count_under_load_is_never_negative() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from trigger_path import ran_during
    finally:
        sys.path.remove(str(BENCH))
    # 100 jobs stored, 40 of them still queued from the phase before; the load adds
    # 500 and leaves 300 queued: 240 left the queue (the 40 among them).
    assert ran_during((100, 40), (600, 300)) == 240
    # The old arithmetic (new rows less the final backlog) said 500 - 300 = 200, and
    # went negative once the earlier backlog outgrew what the load ran.
    assert ran_during((3000, 2900), (6000, 5000)) == 900
    assert ran_during((10, 0), (10, 0)) == 0


@pytest.mark.parametrize(
    ("figure", "met"),
    [
        ({"value": 5.0, "unit": "jobs/s", "limit_name": "bound", "limit": 10.0}, False),
        ({"value": 9.0, "unit": "jobs/s", "limit_name": "bound", "limit": 10.0}, True),
        ({"value": 9.0, "unit": "jobs/s", "limit_name": "bound", "limit": None}, None),
        ({"value": 3.0, "unit": "ms", "target": "< 5 ms"}, True),
        # A target with a unit is about the value, even for a figure with a limit.
        (
            {
                "value": 60.0,
                "unit": "ms",
                "limit_name": "floor",
                "limit": 40.0,
                "target": "< 10 ms",
            },
            False,
        ),
        (
            {"value": 8.0, "unit": "ms", "limit_name": "floor", "limit": 40.0, "target": "< 10 ms"},
            True,
        ),
        ({"value": 70.0, "unit": "MB", "target": "< 60 MB"}, False),
        ({"value": 0.1, "unit": "ms", "target": "~0"}, None),
        ({"value": 1.0, "unit": "x", "target": None}, None),
        ({"value": math.nan, "unit": "ms", "target": "< 5 ms"}, None),
    ],
)
def test_the_summary_says_whether_each_target_is_met(figure: dict[str, Any], met: bool) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import report
    finally:
        sys.path.remove(str(BENCH))
    found = report.Figure(name="f", **{"target": ">= 0.8", **figure})
    assert found.met is met
    (_, _, row) = report.summary([found]).splitlines()
    assert row.endswith({True: "| met |", False: "| **not met** |", None: "|  |"}[met])


async def test_reload(tmp_path: Path) -> None:
    _, saved = await run_bench("reload.py", tmp_path, HIDDEN)
    figures = figures_by_name(saved)
    for name in (
        "reload: unchanged file p50",
        "reload: plugin added and removed p99",
        "reload: trigger during reloads p50",
    ):
        assert figures[name] > 0, name
    # Reloads under trigger load lose nothing, even in a smoke run.
    assert figures["reload: jobs lost"] == 0
