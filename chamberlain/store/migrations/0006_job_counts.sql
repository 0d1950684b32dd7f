-- How many jobs each plugin has in each status, kept exact by triggers.
--
-- GET /jobs promises the total number of matching jobs.  COUNT(*) visits every
-- matching row: about 30 ms for a million jobs, on every page.  The common filters
-- (none, status, plugin) are answered from this table instead, a few rows summed.
-- Triggers keep it exact for every path that creates, moves or deletes a job (the
-- API, the scheduler, pipelines, recovery, pruning) in the same transaction, at the
-- price of one small upsert per insert and two per status change.
CREATE TABLE job_counts (
    plugin TEXT NOT NULL,
    status TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (plugin, status)
) WITHOUT ROWID;
INSERT INTO job_counts (plugin, status, n)
    SELECT plugin, status, COUNT(*) FROM jobs WHERE true GROUP BY plugin, status;
CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO job_counts (plugin, status, n) VALUES (NEW.plugin, NEW.status, 1)
    ON CONFLICT (plugin, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE plugin = OLD.plugin AND status = OLD.status;
END;
CREATE TRIGGER job_counts_update AFTER UPDATE OF plugin, status ON jobs
WHEN NEW.status IS NOT OLD.status OR NEW.plugin IS NOT OLD.plugin
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE plugin = OLD.plugin AND status = OLD.status;
    INSERT INTO job_counts (plugin, status, n) VALUES (NEW.plugin, NEW.status, 1)
    ON CONFLICT (plugin, status) DO UPDATE SET n = n + 1;
END;
