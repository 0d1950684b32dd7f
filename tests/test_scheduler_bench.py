"""bench/scheduler_lateness.py still runs (quick mode), and its figures are sane."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bench_smoke import HIDDEN, figures_by_name, run_bench

pytestmark = pytest.mark.e2e


async def test_scheduler_lateness_quick(tmp_path: Path) -> None:
    _, saved = await run_bench("scheduler_lateness.py", tmp_path, HIDDEN)
    figures = figures_by_name(saved)
    # Runs were enqueued, none before its instant.
    assert figures["scheduler: enqueue lateness p50"] >= 0
    assert figures["scheduler: start lateness p99"] >= figures["scheduler: enqueue lateness p50"]
    assert figures["scheduler idle: RSS"] > 0
    assert figures["scheduler idle: CPU"] >= 0
