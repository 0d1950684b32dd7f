-- Loop jobs (docs/LOOPS.md): one job, many iterations of its plugin.
--
-- loop holds what the trigger asked for (max_iterations, completion_token, feedback,
-- iteration_timeout); loop_stop says POST /job/{id}/stop was asked; completion_reason
-- says why the loop ended.  Each iteration is a row of job_iterations, written as it
-- starts and again as it ends (and after its feedback commands), so a crash resumes
-- the loop at the iteration that was running and never runs a finished one again.
ALTER TABLE jobs ADD COLUMN loop TEXT;
ALTER TABLE jobs ADD COLUMN loop_stop INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN completion_reason TEXT;
CREATE TABLE job_iterations (
    job_id           TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    -- Runs of this iteration started, and how many of them failed.
    runs             INTEGER NOT NULL,
    failures         INTEGER NOT NULL,
    started_at       REAL NOT NULL,
    -- Set once the iteration ran to its end: it will not run again.
    completed_at     REAL,
    exit_code        INTEGER,
    error            TEXT,
    promise_detected INTEGER NOT NULL,
    output_summary   TEXT,
    -- JSON: [{command, exit_code, passed, output_tail}], after its feedback commands.
    feedback         TEXT NOT NULL,
    PRIMARY KEY (job_id, number)
);
