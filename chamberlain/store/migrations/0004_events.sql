-- Events, routing and pipeline lineage.
ALTER TABLE jobs ADD COLUMN pipeline TEXT;
ALTER TABLE jobs ADD COLUMN step_id TEXT;
ALTER TABLE jobs ADD COLUMN root_job_id TEXT;
ALTER TABLE jobs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
-- 0 until the Router has handled a succeeded job's events and next steps.  Rows that
-- existed before this version were never routed and never will be.
ALTER TABLE jobs ADD COLUMN routed INTEGER NOT NULL DEFAULT 1;
CREATE INDEX jobs_unrouted ON jobs (seq) WHERE status = 'succeeded' AND routed = 0;
CREATE INDEX jobs_root ON jobs (root_job_id) WHERE root_job_id IS NOT NULL;
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    job_id     TEXT NOT NULL,
    type       TEXT NOT NULL,
    source     TEXT NOT NULL,
    payload    TEXT NOT NULL,
    dedupe_key TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX events_job ON events (job_id);
CREATE INDEX events_type ON events (type, seq);
