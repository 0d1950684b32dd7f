-- Runs: every invocation of a pipeline (docs/RUNS.md).  A run's id is the control
-- block's pipeline_instance_id that every job of its steps carries (as in Ductile),
-- kept in a column of its own so a run's jobs are found by index; the runs table
-- holds what a run is beside its jobs.  Runs started before this migration get
-- their rows from their jobs.
CREATE TABLE runs (
    id         TEXT PRIMARY KEY,
    pipeline   TEXT NOT NULL,
    created_at REAL NOT NULL
);
ALTER TABLE jobs ADD COLUMN run_id TEXT;
UPDATE jobs SET run_id = json_extract(context, '$.ductile.pipeline_instance_id')
    WHERE pipeline IS NOT NULL;
-- SQLite takes the other columns of a MIN() aggregate from its row: the run's first job.
INSERT OR IGNORE INTO runs (id, pipeline, created_at)
    SELECT run_id, pipeline, MIN(created_at) FROM jobs WHERE run_id IS NOT NULL GROUP BY run_id;
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX runs_newest ON runs (created_at DESC, id);
