"""What job messages cost the store: the status triggers, stderr batches, the hub.

Three figures, each on a fresh on-disk SQLite store (WAL, synchronous=FULL, as the
daemon runs it), one transaction per batch as the JobStore groups requests:

- **life cycle**: enqueue, claim and settle ``--jobs`` jobs in batches of 512, with
  the status-change triggers of migration 0003 and with them dropped: the price
  of recording queued / started / finished for every job.
- **stderr**: ``--lines`` lines of 80 bytes stored in flushes of 100 lines (what a
  chatty plugin's 0.2 s flushes look like), across jobs so the per-job cap never
  bites.
- **fan-out**: publishing ``--lines`` messages to 100 subscribers of one job.

    python bench/job_messages.py [--jobs 20000] [--lines 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

from chamberlain.actors.hub import Hub
from chamberlain.joblog import OutputLimits
from chamberlain.plugins.protocol import Outcome, OutcomeKind
from chamberlain.records import JobMessage, MessageKind, NewJob
from chamberlain.retry import RetryPolicy, settle
from chamberlain.store import job_messages
from chamberlain.store.sqlite import SqliteStore

BATCH = 512

OK = Outcome(
    kind=OutcomeKind.SUCCEEDED,
    retryable=False,
    error=None,
    response=None,
    raw_output=None,
    exit_code=0,
    signal=None,
    stderr_tail="",
)


def life_cycle(path: Path, jobs: int, *, triggers: bool) -> tuple[float, float, float]:
    """Seconds spent enqueueing, claiming and settling ``jobs`` jobs, batch by batch."""
    store = SqliteStore(path)
    if not triggers:
        store.conn.execute("DROP TRIGGER job_messages_created")
        store.conn.execute("DROP TRIGGER job_messages_moved")
    policy = RetryPolicy()
    now = 1_700_000_000.0
    phases = [0.0, 0.0, 0.0]
    for _ in range(0, jobs, BATCH):
        started = time.perf_counter()
        store.begin()
        for _ in range(BATCH):
            store.enqueue(NewJob(plugin="p", command="poll"), now=now, dedupe_ttl=0)
        store.commit()
        claiming = time.perf_counter()
        store.begin()
        claimed, _ = store.claim({"p": BATCH}, BATCH, now=now)
        store.commit()
        settling = time.perf_counter()
        store.begin()
        for c in claimed:
            store.settle(
                c.job.id,
                c.job.attempt,
                settle(c.job, OK, now=now, policy=policy, state={}),
                now=now,
            )
        store.commit()
        done = time.perf_counter()
        phases[0] += claiming - started
        phases[1] += settling - claiming
        phases[2] += done - settling
    store.close()
    return phases[0], phases[1], phases[2]


def stderr(path: Path, lines: int) -> float:
    """Seconds to store ``lines`` stderr lines in flushes of 100."""
    store = SqliteStore(path)
    limits = OutputLimits()
    now = 1_700_000_000.0
    line = "x" * 80
    ids = []
    store.begin()
    for _ in range(lines // 1000 + 1):
        ids.append(store.enqueue(NewJob(plugin="p", command="poll"), now=now, dedupe_ttl=0).job.id)
    store.commit()
    started = time.perf_counter()
    for flush in range(lines // 100):
        job_id = ids[flush // 10]
        store.begin()
        job_messages.append_output(
            store.conn,
            job_id,
            [(now, line, MessageKind.STDERR)] * 100,
            dropped=0,
            final=False,
            limits=limits,
            now=now,
        )
        store.commit()
    took = time.perf_counter() - started
    store.close()
    return took


def fan_out(lines: int, subscribers: int = 100) -> float:
    """Seconds to publish ``lines`` messages to ``subscribers`` watchers of one job."""
    hub = Hub(buffer=lines)
    message = JobMessage(
        id=1,
        job_id="j",
        seq=1,
        ts=0.0,
        kind=MessageKind.STDERR,
        text="x" * 80,
        plugin="p",
        command="poll",
    )

    async def main() -> float:
        from contextlib import ExitStack

        with ExitStack() as stack:
            for _ in range(subscribers):
                stack.enter_context(hub.subscribe(job_id="j"))
            started = time.perf_counter()
            for _ in range(lines):
                hub.publish(message)
            return time.perf_counter() - started

    return trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        without = life_cycle(base / "without.db", args.jobs, triggers=False)
        with_triggers = life_cycle(base / "with.db", args.jobs, triggers=True)
        lines = stderr(base / "stderr.db", args.lines)
    fan = fan_out(args.lines)
    print(f"life cycle of {args.jobs} jobs in batches of {BATCH}, jobs/s:")
    print("                           enqueue    claim   settle    whole")
    for name, phases in (
        ("without status messages", without),
        ("with status messages", with_triggers),
    ):
        rates = [args.jobs / t for t in phases] + [args.jobs / sum(phases)]
        print(f"  {name:24s}" + "".join(f"{r:9,.0f}" for r in rates))
    print(
        f"stderr: {args.lines} lines in flushes of 100: {lines:.2f}s"
        f" ({args.lines / lines:,.0f} lines/s)"
    )
    print(
        f"hub: {args.lines} messages to 100 subscribers: {fan:.3f}s"
        f" ({args.lines * 100 / fan:,.0f} deliveries/s)"
    )


if __name__ == "__main__":
    main()
