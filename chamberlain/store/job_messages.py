"""SQL for job messages (migrations 0003, 0007): stderr, log entries, status changes, the cap.

Status changes are written by the triggers of migration 0003; this module writes
stderr lines and plugin log entries, and reads messages back.  Like
:mod:`chamberlain.store.sqlite` it is synchronous and runs only on the JobStore's
connection, inside its transactions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from chamberlain.joblog import (
    OutputLimits,
    OutputTotals,
    admit_output,
    dropped_logs_marker,
    dropped_marker,
    line_size,
    log_message,
)
from chamberlain.records import JobMessage, JobStatus, MessageKind

_MESSAGE_COLUMNS = (
    "m.id, m.job_id, m.seq, m.ts, m.kind, m.text, m.status, m.attempt, m.level, j.plugin,"
    " j.command, m.ref, m.detail"
)
_FROM = " FROM job_messages m JOIN jobs j ON j.id = m.job_id"


def _message(row: Sequence[Any]) -> JobMessage:
    return JobMessage(
        id=row[0],
        job_id=row[1],
        seq=row[2],
        ts=row[3],
        kind=MessageKind(row[4]),
        text=row[5],
        status=None if row[6] is None else JobStatus(row[6]),
        attempt=row[7],
        level=row[8],
        plugin=row[9],
        command=row[10],
        message_id=row[11],
        detail=None if row[12] is None else json.loads(row[12]),
    )


def last_message_id(conn: sqlite3.Connection) -> int:
    """The newest message id ever given (0 for none): ids are never reused."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'job_messages'").fetchone()
    return 0 if row is None else int(row[0])


def messages_after(conn: sqlite3.Connection, after_id: int) -> list[JobMessage]:
    """Every message with an id above ``after_id``, oldest first."""
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS}{_FROM} WHERE m.id > ? ORDER BY m.id", (after_id,)
    ).fetchall()
    return [_message(r) for r in rows]


def job_messages(
    conn: sqlite3.Connection, job_id: str, *, after_seq: int = 0, limit: int = 10_000
) -> list[JobMessage]:
    """A job's messages with ``seq`` above ``after_seq``, in order, at most ``limit``."""
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS}{_FROM} WHERE m.job_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?",
        (job_id, after_seq, limit),
    ).fetchall()
    return [_message(r) for r in rows]


def status_changes(
    conn: sqlite3.Connection,
    *,
    after_id: int,
    plugin: str | None = None,
    statuses: Collection[JobStatus] = (),
    limit: int = 500,
) -> list[JobMessage]:
    """Status changes of every job after ``after_id``, oldest first, filtered; with
    no ``statuses``, runs' events too (what ``/events/stream`` replays)."""
    where = [
        "(m.status IS NOT NULL OR m.kind = 'run')" if not statuses else "m.status IS NOT NULL",
        "m.id > ?",
    ]
    args: list[object] = [after_id]
    if plugin is not None:
        where.append("j.plugin = ?")
        args.append(plugin)
    if statuses:
        where.append(f"m.status IN ({','.join('?' * len(statuses))})")
        args.extend(s.value for s in statuses)
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS}{_FROM} WHERE {' AND '.join(where)} ORDER BY m.id LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [_message(r) for r in rows]


def _last_seq(conn: sqlite3.Connection, job_id: str) -> int:
    (last,) = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM job_messages WHERE job_id = ?", (job_id,)
    ).fetchone()
    return int(last)


def _store_totals(
    conn: sqlite3.Connection, job_id: str, totals: OutputTotals, kept: Sequence[str], pending: int
) -> None:
    added = sum(line_size(text) for text in kept)
    conn.execute(
        "INSERT INTO job_output (job_id, lines, bytes, dropped) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (job_id) DO UPDATE SET lines = excluded.lines, bytes = excluded.bytes,"
        " dropped = excluded.dropped",
        (job_id, totals.lines + len(kept), totals.bytes + added, pending),
    )


def _totals(conn: sqlite3.Connection, job_id: str) -> tuple[OutputTotals, int]:
    row = conn.execute(
        "SELECT lines, bytes, dropped FROM job_output WHERE job_id = ?", (job_id,)
    ).fetchone()
    if row is None:
        return OutputTotals(), 0
    return OutputTotals(lines=int(row[0]), bytes=int(row[1])), int(row[2])


def append_output(
    conn: sqlite3.Connection,
    job_id: str,
    lines: Sequence[tuple[float, str, MessageKind]],
    *,
    dropped: int,
    final: bool,
    limits: OutputLimits,
    now: float,
) -> int:
    """Store a job's output lines (stderr, stdout) within its cap; return how many were kept.

    ``dropped`` counts lines the caller already had to refuse.  Lines over the cap
    are counted, not stored; when ``final`` (the attempt is over) and some were
    dropped since the last marker, one marker message records how many.
    """
    totals, pending = _totals(conn, job_id)
    kept, refused = admit_output(totals, [text for _, text, _ in lines], limits)
    pending += refused + dropped
    if not kept and not pending and not final:
        return 0
    last = _last_seq(conn, job_id)
    rows = [
        (job_id, last + 1 + i, ts, kind.value, text)
        for i, (ts, text, kind) in enumerate(lines[: len(kept)])
    ]
    conn.executemany(
        "INSERT INTO job_messages (job_id, seq, ts, kind, text) VALUES (?, ?, ?, ?, ?)", rows
    )
    if final and pending:
        conn.execute(
            "INSERT INTO job_messages (job_id, seq, ts, kind, text) VALUES (?, ?, ?, ?, ?)",
            (job_id, last + 1 + len(rows), now, MessageKind.SYSTEM.value, dropped_marker(pending)),
        )
        pending = 0
    _store_totals(conn, job_id, totals, kept, pending)
    return len(kept)


def append_logs(
    conn: sqlite3.Connection,
    job_id: str,
    entries: Sequence[Mapping[str, Any]],
    *,
    limits: OutputLimits,
    now: float,
) -> int:
    """Store the ``logs`` of a plugin's response as messages; return how many were kept.

    They share the job's output cap with its stderr; entries over it are counted in
    one marker message, written at once (the response is the attempt's last word).
    Every entry gets ``now``: the protocol gives log entries no time of their own.
    """
    if not entries:
        return 0
    totals, pending = _totals(conn, job_id)
    formatted = [log_message(entry) for entry in entries]
    kept, refused = admit_output(totals, [text for _, text in formatted], limits)
    last = _last_seq(conn, job_id)
    conn.executemany(
        "INSERT INTO job_messages (job_id, seq, ts, kind, text, level) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (job_id, last + 1 + i, now, MessageKind.LOG.value, text, level)
            for i, (level, text) in enumerate(formatted[: len(kept)])
        ],
    )
    if refused:
        conn.execute(
            "INSERT INTO job_messages (job_id, seq, ts, kind, text) VALUES (?, ?, ?, ?, ?)",
            (
                job_id,
                last + 1 + len(kept),
                now,
                MessageKind.SYSTEM.value,
                dropped_logs_marker(refused),
            ),
        )
    _store_totals(conn, job_id, totals, kept, pending)
    return len(kept)


def append_run_event(
    conn: sqlite3.Connection, job_id: str, text: str, detail: Mapping[str, Any], *, now: float
) -> None:
    """Store one event of a run as a message of kind ``run`` on ``job_id`` (the job
    it is about, or the run's first job)."""
    conn.execute(
        "INSERT INTO job_messages (job_id, seq, ts, kind, text, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (
            job_id,
            _last_seq(conn, job_id) + 1,
            now,
            MessageKind.RUN.value,
            text,
            json.dumps(dict(detail), ensure_ascii=False, separators=(",", ":")),
        ),
    )


def run_events(
    conn: sqlite3.Connection,
    run_id: str,
    *,
    kinds: Collection[str] = (),
    after_id: int = 0,
    limit: int = 500,
) -> list[JobMessage]:
    """The events of run ``run_id`` after ``after_id``, oldest first, of ``kinds``
    (every kind when empty), at most ``limit``."""
    where = ["j.run_id = ?", "m.kind = 'run'", "m.id > ?"]
    args: list[object] = [run_id, after_id]
    if kinds:
        where.append(f"json_extract(m.detail, '$.kind') IN ({','.join('?' * len(kinds))})")
        args.extend(kinds)
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS}{_FROM} WHERE {' AND '.join(where)} ORDER BY m.id LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [_message(r) for r in rows]
