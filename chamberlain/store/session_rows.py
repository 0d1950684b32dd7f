"""SQL for interactive jobs and follow-ups (migration 0012).

A user's input is a ``user_input`` message, written before the plugin is handed it,
so a transcript read after a crash holds everything the user said.  Whether an
attempt waits for input, and whether its session is being completed, are columns
of the job; both are guarded by the attempt number, as a settle is, so a late word
from a superseded attempt changes nothing.  Like :mod:`chamberlain.store.sqlite`
it is synchronous and runs only on the JobStore's connection, inside its
transactions.
"""

from __future__ import annotations

import sqlite3

import attrs

from chamberlain.joblog import COMPLETING_TEXT, WAITING_TEXT
from chamberlain.plugins.conversation import inherited_session
from chamberlain.records import FollowUpRefusal, Job, MessageKind, NewJob, UserInput
from chamberlain.store.sqlite import SqliteStore


def _append(
    conn: sqlite3.Connection,
    job_id: str,
    kind: MessageKind,
    text: str,
    *,
    now: float,
    ref: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO job_messages (job_id, seq, ts, kind, text, ref) VALUES (?,"
        " (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_messages WHERE job_id = ?), ?, ?, ?, ?)",
        (job_id, job_id, now, kind.value, text, ref),
    )


def record_input(
    conn: sqlite3.Connection,
    job_id: str,
    attempt: int,
    *,
    message_id: str,
    message: str,
    now: float,
) -> bool:
    """Keep a user's input to the running ``attempt``; False (nothing kept) otherwise."""
    row = conn.execute(
        "UPDATE jobs SET waiting_for_input = 0"
        " WHERE id = ? AND status = 'running' AND attempt = ? AND completing = 0 RETURNING id",
        (job_id, attempt),
    ).fetchone()
    if row is None:
        return False
    _append(conn, job_id, MessageKind.USER_INPUT, message, now=now, ref=message_id)
    return True


def mark_session(
    conn: sqlite3.Connection, job_id: str, attempt: int, *, waiting: bool, now: float
) -> bool:
    """Record that the running ``attempt`` waits for input (``waiting``) or is being
    completed; each with a system message.  False, changing nothing, otherwise."""
    column = "waiting_for_input = 1" if waiting else "completing = 1, waiting_for_input = 0"
    row = conn.execute(
        f"UPDATE jobs SET {column} WHERE id = ? AND status = 'running' AND attempt = ?"
        " RETURNING id",
        (job_id, attempt),
    ).fetchone()
    if row is None:
        return False
    _append(conn, job_id, MessageKind.SYSTEM, WAITING_TEXT if waiting else COMPLETING_TEXT, now=now)
    return True


def transcript(conn: sqlite3.Connection, job_id: str) -> list[UserInput]:
    """Every input users sent the job, oldest first."""
    rows = conn.execute(
        "SELECT ref, text, ts FROM job_messages WHERE job_id = ? AND kind = 'user_input'"
        " ORDER BY seq",
        (job_id,),
    ).fetchall()
    return [UserInput(message_id=row[0], message=row[1], at=row[2]) for row in rows]


def enqueue_follow_up(
    store: SqliteStore, new: NewJob, *, now: float, dedupe_ttl: float
) -> Job | FollowUpRefusal:
    """Create ``new``, the follow-up of the finished job ``new.follows``.

    The follow-up is given the session the old job left, read in this transaction;
    the old job is marked followed by it, so a second follow-up of it is refused.
    """
    assert new.follows is not None, "a follow-up names the job it follows"
    old = store.get_job(new.follows)
    if old is None:
        return FollowUpRefusal.UNKNOWN
    if not old.status.terminal:
        return FollowUpRefusal.NOT_FINISHED
    if old.followed_by is not None:
        return FollowUpRefusal.FOLLOWED
    follow_up = {
        **(new.follow_up or {}),
        "session": inherited_session(old.session, old.follow_up),
    }
    job = store.enqueue(attrs.evolve(new, follow_up=follow_up), now=now, dedupe_ttl=dedupe_ttl).job
    store.conn.execute("UPDATE jobs SET followed_by = ? WHERE id = ?", (job.id, old.id))
    return job
