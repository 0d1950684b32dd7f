-- Jobs and plugin state.
CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    plugin          TEXT NOT NULL,
    command         TEXT NOT NULL,
    payload         TEXT NOT NULL,
    event           TEXT,
    context         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    submitted_by    TEXT NOT NULL,
    timeout         REAL,
    dedupe_key      TEXT,
    created_at      REAL NOT NULL,
    started_at      REAL,
    completed_at    REAL,
    run_at          REAL NOT NULL,
    last_error      TEXT,
    result          TEXT,
    parent_job_id   TEXT,
    source_event_id TEXT
);
-- The claim query: ready jobs of one plugin in due order.
CREATE INDEX jobs_ready ON jobs (plugin, run_at, seq) WHERE status = 'queued';
-- The next due instant, and the queue depth.
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (plugin) WHERE status = 'running';
-- Listing newest first, filtered by status or plugin.
CREATE INDEX jobs_status_seq ON jobs (status, seq);
CREATE INDEX jobs_plugin_seq ON jobs (plugin, seq);
CREATE INDEX jobs_dedupe ON jobs (dedupe_key, plugin, command) WHERE dedupe_key IS NOT NULL;
CREATE INDEX jobs_completed ON jobs (completed_at) WHERE completed_at IS NOT NULL;
CREATE TABLE plugin_state (
    plugin     TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
