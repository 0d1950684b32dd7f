-- Schedules: the jobs a schedule enqueued name it, and the Scheduler keeps its books.
ALTER TABLE jobs ADD COLUMN schedule_id TEXT;
-- A schedule's outstanding jobs (if_running) and its history.
CREATE INDEX jobs_schedule ON jobs (plugin, schedule_id, status) WHERE schedule_id IS NOT NULL;
-- One row per configured schedule: where it stands, so a restart knows what it missed.
CREATE TABLE schedules (
    plugin           TEXT NOT NULL,
    id               TEXT NOT NULL,
    -- The timing as configured; a different one starts the row afresh.
    spec             TEXT NOT NULL,
    tracked_since    REAL NOT NULL,
    -- Nominal instant of the last fire handled (run, skipped or missed).
    last_fire_at     REAL,
    last_run_at      REAL,
    last_job_id      TEXT,
    last_status      TEXT,
    last_skip_at     REAL,
    last_skip_reason TEXT,
    -- JSON array of {at, late}: fires waiting for room (if_running, catch-up runs).
    owed             TEXT NOT NULL DEFAULT '[]',
    updated_at       REAL NOT NULL,
    PRIMARY KEY (plugin, id)
);
-- One circuit breaker per (plugin, command) that schedules run.
CREATE TABLE circuit_breakers (
    plugin       TEXT NOT NULL,
    command      TEXT NOT NULL,
    state        TEXT NOT NULL,
    failures     INTEGER NOT NULL,
    opened_at    REAL,
    probe_job_id TEXT,
    -- JSON array of {from, to, reason, at}, oldest first, the last few kept.
    transitions  TEXT NOT NULL DEFAULT '[]',
    updated_at   REAL NOT NULL,
    PRIMARY KEY (plugin, command)
);
