-- Workspaces a job asks for ("workspace": true): directories that outlive an
-- attempt, shared by the job's retries, its loop's iterations and its follow-ups,
-- kept until workspaces.ttl after their last use.  The directory is
-- <state dir>/workspaces/<id>; repository, branch and base are for worktrees of a
-- repository's mirror (null for an empty directory).
CREATE TABLE workspaces (
    id           TEXT PRIMARY KEY,
    repository   TEXT,
    branch       TEXT,
    base         TEXT,
    created_at   REAL NOT NULL,
    last_used_at REAL NOT NULL,
    -- Measured after each attempt that used it.
    size_bytes   INTEGER NOT NULL DEFAULT 0
);
ALTER TABLE jobs ADD COLUMN workspace_id TEXT;
CREATE INDEX jobs_workspace ON jobs (workspace_id) WHERE workspace_id IS NOT NULL;
