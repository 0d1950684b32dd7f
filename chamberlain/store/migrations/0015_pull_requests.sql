-- Repositories added through the API (POST /repositories), beside those of the
-- config: spec is the entry as the config would hold it (JSON: url,
-- default_branch, token as a ${secret:name} reference, forge, forge_repo, api_url,
-- author), so one set of rules reads both.
CREATE TABLE repositories (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- The pull request opened from a worktree's branch (JSON, as the API answers it):
-- asking again returns it.
ALTER TABLE workspaces ADD COLUMN pull_request TEXT;
-- What a trigger asked to open when the job succeeds ("pull_request": {...}), how
-- the job's worktree differs from its base as of its last attempt, and the pull
-- request it opened (or {"error": ...} when its automatic one failed); all JSON.
ALTER TABLE jobs ADD COLUMN pull_request_ask TEXT;
ALTER TABLE jobs ADD COLUMN changes TEXT;
ALTER TABLE jobs ADD COLUMN pull_request TEXT;
