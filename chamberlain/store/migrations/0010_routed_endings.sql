-- The Router handles every job that ended with a hook signal (on-hook pipelines):
-- failed, timed-out and dead jobs too, not only succeeded ones.  Those that ended
-- before this version fired no hooks then and must not fire them now.
UPDATE jobs SET routed = 1 WHERE status IN ('failed', 'timed_out', 'dead') AND routed = 0;
DROP INDEX jobs_unrouted;
CREATE INDEX jobs_unrouted ON jobs (seq)
    WHERE status IN ('succeeded', 'failed', 'timed_out', 'dead') AND routed = 0;
