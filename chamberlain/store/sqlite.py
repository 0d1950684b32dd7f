"""The embedded SQLite store: schema, migrations and every query the daemon runs.

This module is synchronous on purpose.  Only the JobStore actor calls it, from one
worker thread at a time, and it groups many requests into one transaction; keeping
SQL out of the async layer keeps both easy to read and to test.

Durability: WAL journal with ``synchronous=FULL``, so a job acknowledged to a client
survives a crash of the daemon *and* of the machine.  Group commit (one transaction
for everything waiting) is what keeps that affordable.

The WAL is kept small: SQLite checkpoints it whenever a commit leaves it past
:data:`WAL_CHECKPOINT_PAGES`, and cuts it back to :data:`JOURNAL_SIZE_LIMIT` when
it restarts, so a burst cannot grow it until it fills a small disk by itself; the
JobStore also truncates it when writes pause (:meth:`SqliteStore.checkpoint`).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from chamberlain import jsoncodec
from chamberlain.records import (
    TERMINAL_STATUSES,
    Changes,
    Claimed,
    Enqueued,
    Job,
    JobFilter,
    JobStatus,
    NewJob,
    PullRequestAsk,
    RoutePlan,
    StoredEvent,
)
from chamberlain.retry import Settlement, recover_orphan
from chamberlain.routing.planner import Routing
from chamberlain.runs import Hold
from chamberlain.store import plugin_facts, run_control, run_rows, workspace_rows

#: Every column: rows are read by name (see _row_to_job), so a migration that adds a
#: column only has to teach _row_to_job about it.
_JOB_COLUMNS = "*"
#: What a listing without bodies reads instead of the large JSON columns: values
#: _row_to_job decodes to ``{}`` and None, so one decoder serves both kinds of row.
_BODY_STAND_INS = {
    "payload": "'{}'",
    "event": "NULL",
    "result": "NULL",
    "session": "NULL",
    "follow_up": "NULL",
}

#: Pages (4 KiB each by default) a commit may leave in the WAL before SQLite
#: checkpoints it: 512 KiB, where SQLite's default of 1000 pages let a burst grow
#: the WAL past 4 MiB before the first checkpoint.
WAL_CHECKPOINT_PAGES = 128
#: Bytes a WAL is cut back to when it restarts after a checkpoint (SQLite would
#: otherwise keep it at its largest size for ever).
JOURNAL_SIZE_LIMIT = 512 * 1024


def _load_migrations() -> tuple[str, ...]:
    """The SQL scripts under ``migrations/``, in version order.

    One file per schema version (``0002_schedules.sql``): a released file is never
    edited, a change is a new file.  Files make each version easy to review and let
    independent features add tables without touching one shared list.
    """
    folder = resources.files("chamberlain.store") / "migrations"
    scripts = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    for version, (name, _) in enumerate(scripts, start=1):
        if not name.startswith(f"{version:04d}_"):
            raise RuntimeError(f"migration {name} is out of sequence: expected {version:04d}_*.sql")
    return tuple(sql for _, sql in scripts)


MIGRATIONS: tuple[str, ...] = _load_migrations()


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would commit).

    ``sqlite3.complete_statement`` decides where one ends, so a ``;`` inside a
    trigger body or a string does not split it.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and line.lstrip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise RuntimeError(f"migration ends inside a statement: {pending.strip()[:80]!r}")
    return statements


def _like_escaped(text: str) -> str:
    """``text`` as literal characters of a LIKE pattern (``ESCAPE '\\'``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _dumps(value: Any) -> str:
    return jsoncodec.dumps(value)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        seq=row["seq"],
        id=row["id"],
        plugin=row["plugin"],
        command=row["command"],
        payload=json.loads(row["payload"]),
        event=_loads(row["event"]),
        context=json.loads(row["context"]),
        status=JobStatus(row["status"]),
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        submitted_by=row["submitted_by"],
        timeout=row["timeout"],
        dedupe_key=row["dedupe_key"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        run_at=row["run_at"],
        last_error=row["last_error"],
        result=_loads(row["result"]),
        parent_job_id=row["parent_job_id"],
        source_event_id=row["source_event_id"],
        pipeline=row["pipeline"],
        step_id=row["step_id"],
        root_job_id=row["root_job_id"],
        depth=row["depth"],
        schedule_id=row["schedule_id"],
        # Migration 0009: the MCP servers of the job's workspace.
        mcp_servers=tuple(_loads(row["mcp_servers"]) or ()),
        # Migration 0012: sessions and follow-ups.
        session=_loads(row["session"]),
        follows=row["follows"],
        follow_up=_loads(row["follow_up"]),
        followed_by=row["followed_by"],
        waiting_for_input=bool(row["waiting_for_input"]),
        completing=bool(row["completing"]),
        # Migration 0013: loops.
        loop=_loads(row["loop"]),
        loop_stop=bool(row["loop_stop"]),
        completion_reason=row["completion_reason"],
        # Migration 0014: workspaces.
        workspace_id=row["workspace_id"],
        # Migration 0015: pull requests.
        pull_request_ask=_pull_request_ask(row["pull_request_ask"]),
        changes=_changes(row["changes"]),
        pull_request=_loads(row["pull_request"]),
        # Migration 0016: runs.
        run_id=row["run_id"],
        # Migration 0017: run control.
        held=row["held"],
    )


def _pull_request_ask(text: str | None) -> PullRequestAsk | None:
    return None if text is None else PullRequestAsk.from_json(json.loads(text))


def _changes(text: str | None) -> Changes | None:
    return None if text is None else Changes.from_json(json.loads(text))


class SqliteStore:
    """Every query the daemon needs, on one connection.  Not thread-safe: one caller."""

    def __init__(self, path: Path | str, *, reader: bool = False) -> None:
        """Open (creating and migrating) the database at ``path``.

        A ``reader`` is a second connection to a database already opened and
        migrated by its writer: WAL lets it read the last commit while the writer
        works, and ``query_only`` makes a write through it an error.
        """
        self.path = str(path)
        #: The run control of the pipelines' steps (chamberlain.store.run_control):
        #: set by the JobStore; None, a run's jobs run as they come.
        self.gates: Routing | None = None
        #: Runs this transaction changed, whose events are recorded before it commits
        #: (run_control.refresh); the JobStore empties it.
        self.touched_runs: set[str] = set()
        #: Jobs run control ended without running them (a cancel's, a reject's):
        #: the JobStore reports them finished.
        self.ended_here: list[str] = []
        if reader and self.path == ":memory:":
            raise ValueError("an in-memory database has no second connection")
        if not reader and self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Created 0600 before SQLite sees it (a later chmod would leave a window,
            # and the umask is process-wide): jobs hold payloads and results, and
            # SQLite gives the -wal and -shm files the database's own mode.
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                os.close(os.open(self.path, flags, 0o600))
            except FileExistsError:
                pass  # an existing database keeps the mode its owner gave it
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a group of
        # requests shares one transaction.  check_same_thread=False because the
        # JobStore hops through a worker-thread pool; it never uses two at once.
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout=5000")
        if reader:
            self.conn.execute("PRAGMA query_only=ON")
            return
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        self.conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        self.migrate()

    # -- lifecycle -----------------------------------------------------------------

    def migrate(self) -> int:
        """Bring the schema to the newest version; return that version."""
        c = self.conn
        c.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        (current,) = c.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"database {self.path} has schema version {current}, newer than this"
                f" chamberlain understands ({len(MIGRATIONS)}); upgrade chamberlain"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            c.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(MIGRATIONS[version - 1]):
                    c.execute(statement)
                c.execute(
                    "INSERT INTO schema_migrations (version, applied_at)"
                    " VALUES (?, strftime('%s','now'))",
                    (version,),
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return len(MIGRATIONS)

    def close(self) -> None:
        """Checkpoint the WAL and close, so a clean stop leaves one tidy file."""
        try:
            self.checkpoint()
        finally:
            self.conn.close()

    def read(self) -> None:
        """Start a read transaction: every read until :meth:`rollback` sees one commit."""
        self.conn.execute("BEGIN")

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it to nothing.

        False when a reader of another connection kept part of it (it is then
        finished by a later checkpoint).  Outside a transaction only.
        """
        (busy, _, _) = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def probe(self) -> None:
        """Write one page, changing nothing (inside a transaction).

        Committed after :meth:`checkpoint` emptied the WAL, it proves the disk
        takes new writes again; the user version is not used otherwise.
        """
        (version,) = self.conn.execute("PRAGMA user_version").fetchone()
        self.conn.execute(f"PRAGMA user_version={int(version)}")

    # -- transactions ----------------------------------------------------------------

    def begin(self) -> None:
        """Start a write transaction (taken at once, so it cannot fail half-way)."""
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit the open transaction."""
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        """Abandon the open transaction, if any."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def savepoint(self) -> None:
        """Mark a point to undo one request's work without losing the others'."""
        self.conn.execute("SAVEPOINT request")

    def release(self) -> None:
        """Keep the work since the savepoint."""
        self.conn.execute("RELEASE request")

    def undo(self) -> None:
        """Undo the work since the savepoint."""
        self.conn.execute("ROLLBACK TO request")
        self.conn.execute("RELEASE request")

    # -- jobs --------------------------------------------------------------------------

    def enqueue(
        self,
        new: NewJob,
        *,
        now: float,
        dedupe_ttl: float,
        hold: Hold | None = None,
        ignore_pause: bool = False,
    ) -> Enqueued:
        """Insert a queued job, unless its dedupe key names one that stands.

        A key stands while a job with it (same plugin and command) is queued or
        running, or succeeded within ``dedupe_ttl``.  A job of a run's step is
        admitted by its run's control (:func:`run_control.admit_job`: it may be
        held, or cancelled with its run), or held as ``hold`` says;
        ``ignore_pause``: it runs even if its run is paused.
        """
        if new.dedupe_key is not None:
            row = self.conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs"
                " WHERE dedupe_key = ? AND plugin = ? AND command = ?"
                " AND (status IN ('queued', 'running')"
                "      OR (status = 'succeeded' AND completed_at >= ?))"
                " ORDER BY seq DESC LIMIT 1",
                (new.dedupe_key, new.plugin, new.command, now - dedupe_ttl),
            ).fetchone()
            if row is not None:
                return Enqueued(job=_row_to_job(row), duplicate=True)
        born_failed = new.error is not None
        run_id = run_rows.run_of(new)
        columns = {
            "id": new.id,
            "plugin": new.plugin,
            "command": new.command,
            "payload": _dumps(dict(new.payload)),
            "event": None if new.event is None else _dumps(dict(new.event)),
            "context": _dumps(dict(new.context)),
            "status": JobStatus.FAILED.value if born_failed else JobStatus.QUEUED.value,
            "attempt": 0,
            "max_attempts": new.max_attempts,
            "submitted_by": new.submitted_by,
            "timeout": new.timeout,
            "dedupe_key": new.dedupe_key,
            "created_at": now,
            "completed_at": now if born_failed else None,
            "run_at": now,
            "last_error": new.error,
            "parent_job_id": new.parent_job_id,
            "source_event_id": new.source_event_id,
            "pipeline": new.pipeline,
            "step_id": new.step_id,
            "root_job_id": new.root_job_id,
            "depth": new.depth,
            "schedule_id": new.schedule_id,
            "mcp_servers": _dumps(list(new.mcp_servers)) if new.mcp_servers else None,
            "follows": new.follows,
            "follow_up": None if new.follow_up is None else _dumps(dict(new.follow_up)),
            "loop": None if new.loop is None else _dumps(dict(new.loop)),
            "workspace_id": new.workspace_id,
            "pull_request_ask": (
                None if new.pull_request_ask is None else _dumps(new.pull_request_ask.to_json())
            ),
            "run_id": run_id,
            "routed": 0,
        }
        row = self.conn.execute(
            f"INSERT INTO jobs ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))}) RETURNING *",
            tuple(columns.values()),
        ).fetchone()
        if new.workspace_id is not None:
            workspace_rows.ensure(self.conn, new.workspace_id, now=now, worktree=new.worktree)
        job = _row_to_job(row)
        if run_id is not None:
            run_rows.ensure(self.conn, run_id, new.pipeline or "", now=now)
            self.touched_runs.add(run_id)
            if not born_failed and hold is not None:
                run_control.hold(self.conn, job.id, hold)
                job = attrs.evolve(job, held=hold.value, run_at=run_control.HELD_RUN_AT)
            elif (
                not born_failed
                and self.gates is not None
                and new.step_id is not None
                and run_control.admit_job(self, job, self.gates, now, ignore_pause=ignore_pause)
            ):
                job = self.get_job(job.id) or job
        return Enqueued(job=job)

    def get_job(self, job_id: str) -> Job | None:
        """One job by id, or None."""
        row = self.conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return None if row is None else _row_to_job(row)

    def list_jobs(self, flt: JobFilter) -> tuple[list[Job], int]:
        """Jobs matching ``flt``, newest first, and how many match in all.

        ``total`` counts every match, whatever page ``offset`` or ``after`` picks.
        Without ``flt.bodies`` the large JSON columns are not read (see
        :class:`~chamberlain.records.JobFilter`).
        """
        where: list[str] = []
        args: list[Any] = []
        if flt.statuses:
            where.append(f"status IN ({','.join('?' * len(flt.statuses))})")
            args.extend(s.value for s in flt.statuses)
        for column, value in (
            ("plugin", flt.plugin),
            ("command", flt.command),
            ("submitted_by", flt.submitted_by),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if flt.since is not None:
            where.append("created_at >= ?")
            args.append(flt.since)
        if flt.until is not None:
            where.append("created_at < ?")
            args.append(flt.until)
        if flt.text is not None:
            # A scan of the rows the other filters leave: the search box of a person
            # looking for a job, not a query for scripts (they filter by field).
            literal = _like_escaped(flt.text)
            searched = ("plugin", "command", "submitted_by", "last_error")
            where.append(
                "("
                + " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for column in ("id", *searched))
                + ")"
            )
            args.extend([f"{literal}%", *(f"%{literal}%" for _ in searched)])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        # The cursor bounds the page, not the total: it is kept out of ``clause``.
        page = [*where, "seq < ?"] if flt.after is not None else where
        page_clause = f" WHERE {' AND '.join(page)}" if page else ""
        page_args = [*args, flt.after] if flt.after is not None else args
        columns = _JOB_COLUMNS if flt.bodies else self._listing_columns
        rows = self.conn.execute(
            f"SELECT {columns} FROM jobs{page_clause} ORDER BY seq DESC LIMIT ? OFFSET ?",
            (*page_args, flt.limit, flt.offset),
        ).fetchall()
        narrowed = (flt.command, flt.submitted_by, flt.since, flt.until, flt.text)
        if all(value is None for value in narrowed):
            total = self.count_jobs(flt.statuses, flt.plugin)
        else:
            (total,) = self.conn.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()
        return [_row_to_job(r) for r in rows], total

    @functools.cached_property
    def _listing_columns(self) -> str:
        """Every column of ``jobs`` but the bodies, which read as their stand-ins.

        Read from the schema, so a column a migration adds is listed without a
        second list to keep up to date.
        """
        names = [row["name"] for row in self.conn.execute("PRAGMA table_info(jobs)")]
        return ", ".join(
            f"{_BODY_STAND_INS[name]} AS {name}" if name in _BODY_STAND_INS else name
            for name in names
        )

    def count_jobs(self, statuses: Iterable[JobStatus] = (), plugin: str | None = None) -> int:
        """How many jobs have one of ``statuses`` (any when empty) and ``plugin``.

        Read from ``job_counts`` (migration 0006): a few rows summed, where COUNT(*)
        would visit every matching job.
        """
        where: list[str] = []
        args: list[Any] = [s.value for s in statuses]
        if args:
            where.append(f"status IN ({','.join('?' * len(args))})")
        if plugin is not None:
            where.append("plugin = ?")
            args.append(plugin)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        (n,) = self.conn.execute(
            f"SELECT COALESCE(SUM(n), 0) FROM job_counts{clause}", args
        ).fetchone()
        return int(n)

    def queue_depth(self) -> int:
        """Jobs waiting to run, due or not."""
        return self.count_jobs([JobStatus.QUEUED])

    def running_jobs(self) -> list[Job]:
        """Jobs marked running."""
        rows = self.conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY seq"
        ).fetchall()
        return [_row_to_job(r) for r in rows]

    def claim(
        self, capacity: Mapping[str, int], limit: int, *, now: float
    ) -> tuple[list[Claimed], float | None]:
        """Mark up to ``limit`` due jobs running, at most ``capacity[p]`` of plugin p.

        Returns the claimed jobs in due order, and the earliest ``run_at`` of the jobs
        still queued for the future (None when there are none), so the caller can
        sleep exactly until then instead of polling.
        """
        candidates: list[Job] = []
        if limit > 0:
            for plugin, room in capacity.items():
                if room <= 0:
                    continue
                rows = self.conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs"
                    " WHERE status = 'queued' AND plugin = ? AND run_at <= ?"
                    " ORDER BY run_at, seq LIMIT ?",
                    (plugin, now, min(room, limit)),
                ).fetchall()
                candidates.extend(_row_to_job(r) for r in rows)
        candidates.sort(key=lambda j: (j.run_at, j.seq))
        chosen = candidates[:limit]
        states = self.get_states({j.plugin for j in chosen})
        claimed: list[Claimed] = []
        for job in chosen:
            if job.run_id is not None:
                self.touched_runs.add(job.run_id)
            self.conn.execute(
                "UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = ?,"
                " completed_at = NULL WHERE seq = ?",
                (now, job.seq),
            )
            claimed.append(
                Claimed(
                    job=attrs.evolve(
                        job,
                        status=JobStatus.RUNNING,
                        attempt=job.attempt + 1,
                        started_at=now,
                        completed_at=None,
                    ),
                    state=states.get(job.plugin, {}),
                )
            )
        (next_due,) = self.conn.execute(
            "SELECT MIN(run_at) FROM jobs WHERE status = 'queued' AND run_at > ?", (now,)
        ).fetchone()
        return claimed, next_due

    def settle(
        self,
        job_id: str,
        attempt: int,
        settlement: Settlement,
        *,
        now: float,
        changes: Changes | None = None,
        pull_request: Mapping[str, Any] | None = None,
    ) -> Job | None:
        """Record the end of an attempt; None when the attempt is no longer current.

        The ``attempt`` guard makes a late report from a superseded attempt (say, one
        recovered as an orphan meanwhile) a no-op instead of a second result.
        ``changes`` (its worktree's, as the attempt left it) and ``pull_request``
        (the one it opened) are kept when given.
        """
        s = settlement
        row = self.conn.execute(
            f"UPDATE jobs SET status = ?, attempt = attempt + ?,"
            " run_at = COALESCE(?, run_at), last_error = ?, result = ?,"
            " completed_at = ?, session = COALESCE(?, session), waiting_for_input = 0,"
            " completion_reason = COALESCE(?, completion_reason),"
            " changes = COALESCE(?, changes), pull_request = COALESCE(?, pull_request)"
            " WHERE id = ? AND status = 'running' AND attempt = ?"
            f" RETURNING {_JOB_COLUMNS}",
            (
                s.status.value,
                s.attempt_delta,
                s.run_at,
                s.last_error,
                None if s.result is None else _dumps(s.result),
                now if s.completed else None,
                None if s.session is None else _dumps(s.session),
                s.completion_reason,
                None if changes is None else _dumps(changes.to_json()),
                None if pull_request is None else _dumps(dict(pull_request)),
                job_id,
                attempt,
            ),
        ).fetchone()
        if row is None:
            return None
        job = _row_to_job(row)
        if job.run_id is not None:
            self.touched_runs.add(job.run_id)
            run_control.requeued(self.conn, job)
        if s.new_state is not None:
            self.put_state(job.plugin, s.new_state, now=now)
        if s.facts:
            plugin_facts.record(self.conn, s.facts)
        return job

    def cancel_queued(self, job_id: str, *, now: float, reason: str) -> tuple[Job | None, bool]:
        """Cancel a job that has not started.

        Returns the job as it now stands and whether it was cancelled by this call
        (False when it is unknown, running or already terminal).
        """
        row = self.conn.execute(
            "UPDATE jobs SET status = 'cancelled', completed_at = ?, last_error = ?, held = NULL"
            f" WHERE id = ? AND status = 'queued' RETURNING {_JOB_COLUMNS}",
            (now, reason, job_id),
        ).fetchone()
        if row is not None:
            job = _row_to_job(row)
            if job.run_id is not None:
                self.touched_runs.add(job.run_id)
            return job, True
        return self.get_job(job_id), False

    def bury_queued(self, plugins: Iterable[str], *, now: float, reason: str) -> list[Job]:
        """Make every queued job of ``plugins`` dead with ``reason``; the jobs it ended.

        For a plugin that is gone (a reload removed it): nothing will ever run
        them, and a queued job nobody runs would hold its waiters forever.
        """
        names = sorted(set(plugins))
        if not names:
            return []
        marks = ",".join("?" * len(names))
        rows = self.conn.execute(
            "UPDATE jobs SET status = 'dead', completed_at = ?, last_error = ?, held = NULL"
            f" WHERE plugin IN ({marks}) AND status = 'queued' RETURNING {_JOB_COLUMNS}",
            (now, reason, *names),
        ).fetchall()
        jobs = [_row_to_job(row) for row in rows]
        self.touched_runs.update(job.run_id for job in jobs if job.run_id is not None)
        return jobs

    def prune(self, *, older_than: float, batch: int = 5000) -> int:
        """Delete up to ``batch`` terminal jobs completed before ``older_than``."""
        statuses = tuple(s.value for s in TERMINAL_STATUSES)
        cur = self.conn.execute(
            "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE completed_at < ?"
            f" AND status IN ({','.join('?' * len(statuses))}) LIMIT ?)",
            (older_than, *statuses, batch),
        )
        if cur.rowcount:
            run_rows.forget_empty(self.conn)
        return cur.rowcount

    # -- plugin state ----------------------------------------------------------------

    def get_states(self, plugins: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored state of each named plugin that has one."""
        names = list(plugins)
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        rows = self.conn.execute(
            f"SELECT plugin, state FROM plugin_state WHERE plugin IN ({marks})",
            names,
        ).fetchall()
        return {plugin: json.loads(state) for plugin, state in rows}

    def put_state(self, plugin: str, state: Mapping[str, Any], *, now: float) -> None:
        """Replace a plugin's whole state."""
        self.conn.execute(
            "INSERT INTO plugin_state (plugin, state, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (plugin) DO UPDATE SET state = excluded.state,"
            " updated_at = excluded.updated_at",
            (plugin, _dumps(dict(state)), now),
        )

    # -- recovery ----------------------------------------------------------------------

    def recover_orphans(self, *, now: float, plugin: str | None = None) -> list[Job]:
        """Settle jobs marked running that no process is running any more.

        Called when the JobStore starts (after a crash every running row is an
        orphan) and when a runner restarts (for its plugin only).
        """
        if plugin is None:
            orphans = self.running_jobs()
        else:
            rows = self.conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'running' AND plugin = ?"
                " ORDER BY seq",
                (plugin,),
            ).fetchall()
            orphans = [_row_to_job(r) for r in rows]
        settled: list[Job] = []
        for job in orphans:
            done = self.settle(job.id, job.attempt, recover_orphan(job, now=now), now=now)
            if done is not None:
                settled.append(done)
        return settled

    # -- events and routing (migration 0004) ----------------------------------------

    def insert_event(self, event: StoredEvent) -> None:
        """Store one event with the ids and time the core gave it."""
        self.conn.execute(
            "INSERT INTO events (event_id, job_id, type, source, payload, dedupe_key, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event.event_id,
                event.job_id,
                event.type,
                event.source,
                _dumps(dict(event.payload)),
                event.dedupe_key,
                event.created_at,
            ),
        )

    def apply_plan(
        self,
        plan: RoutePlan,
        *,
        now: float,
        dedupe_ttl: float,
        hold_children_of: Job | None = None,
    ) -> list[Enqueued]:
        """Store a plan's events and create its jobs; the next steps of
        ``hold_children_of`` (a step whose check or CI gates them: its children in
        its own run, not the runs it starts) held on that gate."""
        for event in plan.events:
            self.insert_event(event)
        gate = hold_children_of

        def gated(job: NewJob) -> bool:
            return (
                gate is not None
                and job.parent_job_id == gate.id
                and run_rows.run_of(job) == gate.run_id
            )

        return [
            self.enqueue(
                job, now=now, dedupe_ttl=dedupe_ttl, hold=Hold.GATE if gated(job) else None
            )
            for job in plan.jobs
        ]

    def unrouted(self, limit: int) -> list[Job]:
        """Ended jobs whose plan has not been applied yet: succeeded ones (events,
        next steps, hooks) and, since migration 0010, failed, timed-out and dead ones
        (their hooks)."""
        rows = self.conn.execute(
            "SELECT * FROM jobs WHERE status IN ('succeeded', 'failed', 'timed_out', 'dead')"
            " AND routed = 0 ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [_row_to_job(r) for r in rows]

    def mark_routed(self, job_id: str) -> bool:
        """Record that a job's plan was applied; False if it already was."""
        cur = self.conn.execute("UPDATE jobs SET routed = 1 WHERE id = ? AND routed = 0", (job_id,))
        return cur.rowcount == 1

    def root_of(self, job_id: str) -> str | None:
        """The id of the first job of ``job_id``'s tree (itself for a root)."""
        row = self.conn.execute(
            "SELECT COALESCE(root_job_id, id) FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def tree(self, root_id: str) -> tuple[list[Job], list[dict[str, Any]]]:
        """Every job of a tree in creation order, and the core's notes about it
        (skipped steps, depth limits)."""
        rows = self.conn.execute(
            "SELECT * FROM jobs WHERE id = ? OR root_job_id = ? ORDER BY seq",
            (root_id, root_id),
        ).fetchall()
        jobs = [_row_to_job(r) for r in rows]
        ids = [j.id for j in jobs]
        notes: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                "SELECT event_id, job_id, type, payload, created_at FROM events"
                f" WHERE source = 'chamberlain' AND job_id IN ({marks}) ORDER BY seq",
                chunk,
            ):
                notes.append(
                    {
                        "event_id": row["event_id"],
                        "job_id": row["job_id"],
                        "type": row["type"],
                        **json.loads(row["payload"]),
                        "created_at": row["created_at"],
                    }
                )
        return jobs, notes

    def tree_pending(self, root_id: str) -> int:
        """Jobs of a tree that are not finished, or finished but not yet routed."""
        (n,) = self.conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE (id = ? OR root_job_id = ?)"
            " AND (status IN ('queued', 'running') OR (status = 'succeeded' AND routed = 0))",
            (root_id, root_id),
        ).fetchone()
        return int(n)

    # -- the queue view (migration 0003; messages and callbacks: store/job_messages.py,
    # store/callback_queue.py) ---------------------------------------------------------

    def queue_view(self, limit: int) -> tuple[list[Job], list[Job], int, int]:
        """Running jobs by start, queued jobs in dispatch order (each at most ``limit``),
        and how many of each there are in all."""
        running = self.conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'running'"
            " ORDER BY started_at, seq LIMIT ?",
            (limit,),
        ).fetchall()
        queued = self.conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'queued' ORDER BY run_at, seq LIMIT ?",
            (limit,),
        ).fetchall()
        (running_total,) = self.conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE status = 'running'"
        ).fetchone()
        return (
            [_row_to_job(r) for r in running],
            [_row_to_job(r) for r in queued],
            int(running_total),
            self.queue_depth(),
        )

    # -- inbound webhooks (migration 0005) ------------------------------------------

    def enqueue_webhook(
        self,
        endpoint: str,
        delivery_id: str | None,
        plan: RoutePlan,
        *,
        now: float,
        replay_ttl: float,
        dedupe_ttl: float,
    ) -> tuple[Job | None, bool]:
        """Create a delivery's jobs unless the same delivery was seen within ``replay_ttl``.

        Returns the first job (the one created now, or the one the earlier delivery
        created) and whether this delivery was a replay.
        """
        if delivery_id is not None:
            row = self.conn.execute(
                "SELECT job_id FROM webhook_deliveries WHERE endpoint = ? AND delivery_id = ?"
                " AND received_at >= ?",
                (endpoint, delivery_id, now - replay_ttl),
            ).fetchone()
            if row is not None:
                return self.get_job(row["job_id"]), True
        enqueued = self.apply_plan(plan, now=now, dedupe_ttl=dedupe_ttl)
        if not enqueued:
            return None, False
        first = enqueued[0].job
        if delivery_id is not None:
            self.conn.execute(
                "INSERT INTO webhook_deliveries (endpoint, delivery_id, job_id, received_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (endpoint, delivery_id) DO UPDATE SET"
                " job_id = excluded.job_id, received_at = excluded.received_at",
                (endpoint, delivery_id, first.id, now),
            )
        return first, False

    def prune_deliveries(self, *, older_than: float) -> int:
        """Forget deliveries older than the replay window."""
        cur = self.conn.execute(
            "DELETE FROM webhook_deliveries WHERE received_at < ?", (older_than,)
        )
        return cur.rowcount
