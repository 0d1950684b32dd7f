-- Facts: the state_updates of a command a plugin's manifest names in fact_outputs
-- (Ductile's append-only plugin facts), one row per successful job.  fact is a JSON
-- object; rows are pruned with the jobs, after service.job_retention.
CREATE TABLE plugin_facts (
    seq        INTEGER PRIMARY KEY,
    plugin     TEXT NOT NULL,
    fact_type  TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    command    TEXT NOT NULL,
    fact       TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX plugin_facts_by_plugin ON plugin_facts (plugin, fact_type, seq);
CREATE INDEX plugin_facts_by_age ON plugin_facts (created_at);
