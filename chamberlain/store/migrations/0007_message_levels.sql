-- A plugin's response may carry "logs": [{"level": ..., "message": ...}].  They are
-- kept as job messages of kind "log" next to its stderr lines, so the same streams
-- and the same per-job cap serve both; the level is theirs alone.
ALTER TABLE job_messages ADD COLUMN level TEXT;
