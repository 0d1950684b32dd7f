-- Run control (docs/RUNS.md): pause, cancel, approvals, checks, CI.
-- A run paused or cancelled says so on its row.
ALTER TABLE runs ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN cancelled_at REAL;
-- A job of a run that is stored but must not run yet says why (paused, approval,
-- gate); its run_at is pushed past any claim's "now" until it is released.  A job
-- that a newer one runs again is superseded: only the newer says what its step is.
ALTER TABLE jobs ADD COLUMN held TEXT;
ALTER TABLE jobs ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
-- The job a re-run (retry-latest, a step a pause stopped) runs again.
ALTER TABLE jobs ADD COLUMN rerun_of TEXT;
CREATE INDEX jobs_held ON jobs (run_id, held) WHERE held IS NOT NULL;
-- What a run keeps of a step besides its jobs: its approval (awaited since, times
-- out at, decided) and its gate (a check's or CI's, as JSON).
CREATE TABLE run_steps (
    run_id         TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id        TEXT NOT NULL,
    awaiting_since REAL,
    timeout_at     REAL,
    approval       TEXT,
    gate           TEXT,
    check_job_id   TEXT,
    sha            TEXT,
    changed_at     REAL NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
-- The approval timeouts still to fire, soonest first.
CREATE INDEX run_steps_timeout ON run_steps (timeout_at)
    WHERE timeout_at IS NOT NULL AND approval IS NULL;
CREATE INDEX run_steps_check ON run_steps (check_job_id) WHERE check_job_id IS NOT NULL;
-- The runs waiting for CI on a commit.
CREATE INDEX run_steps_sha ON run_steps (sha) WHERE sha IS NOT NULL;
-- A run's events (its state changes, actions, approvals, checks, CI signals) are
-- job messages of kind 'run', on the job they are about (the run's first job for
-- the run's own), so /events/stream carries them in one sequence with the jobs'
-- status changes; detail is the event as JSON.
ALTER TABLE job_messages ADD COLUMN detail TEXT;
CREATE INDEX job_messages_run ON job_messages (id) WHERE kind = 'run';
-- The status a run was last recorded in, to record each change once.
ALTER TABLE runs ADD COLUMN status TEXT;
