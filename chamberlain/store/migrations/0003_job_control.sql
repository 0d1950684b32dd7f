-- Job control and live observation: job messages, callbacks and their deliveries.
--
-- job_messages holds what a job said (its stderr lines) and what happened to it
-- (system messages, one per status change).  ``id`` is global and never reused
-- (AUTOINCREMENT), so it orders /events/stream; ``seq`` counts per job and orders
-- /job/{id}/stream.  Both make Last-Event-ID resume exact.
CREATE TABLE job_messages (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    ts      REAL NOT NULL,
    kind    TEXT NOT NULL,
    text    TEXT NOT NULL,
    -- Set on status changes only: the job's new status and attempt.
    status  TEXT,
    attempt INTEGER,
    UNIQUE (job_id, seq)
);
-- The status feed (/events/stream) reads status changes after an id.
CREATE INDEX job_messages_status ON job_messages (id) WHERE status IS NOT NULL;
-- How much of a job's stderr was kept, for the per-job cap.
CREATE TABLE job_output (
    job_id  TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    lines   INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    -- Lines dropped since the last "... more lines dropped" marker.
    dropped INTEGER NOT NULL
);
-- Status changes are recorded by triggers: every path that creates or moves a job
-- (the API, the scheduler, pipelines, crash recovery) is covered in the same
-- transaction, without each having to remember.  The text is for people; the status
-- and attempt columns are for programs.
CREATE TRIGGER job_messages_created AFTER INSERT ON jobs
BEGIN
    INSERT INTO job_messages (job_id, seq, ts, kind, text, status, attempt)
    VALUES (
        NEW.id, 1, NEW.created_at, 'system',
        'queued (submitted by ' || NEW.submitted_by || ')',
        NEW.status, NEW.attempt
    );
END;
CREATE TRIGGER job_messages_moved AFTER UPDATE OF status, attempt ON jobs
WHEN NEW.status IS NOT OLD.status OR NEW.attempt IS NOT OLD.attempt
BEGIN
    INSERT INTO job_messages (job_id, seq, ts, kind, text, status, attempt)
    VALUES (
        NEW.id,
        (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_messages WHERE job_id = NEW.id),
        CASE
            WHEN NEW.status = 'running' AND NEW.started_at IS NOT NULL THEN NEW.started_at
            WHEN NEW.completed_at IS NOT NULL THEN NEW.completed_at
            ELSE (julianday('now') - 2440587.5) * 86400.0
        END,
        'system',
        CASE
            WHEN NEW.status = 'running' THEN
                'attempt ' || NEW.attempt || '/' || NEW.max_attempts || ' started'
            WHEN NEW.status = 'queued' AND NEW.attempt < OLD.attempt THEN
                'attempt ' || OLD.attempt || ' interrupted ('
                || COALESCE(NEW.last_error, 'no reason given') || '); queued again'
            WHEN NEW.status = 'queued' THEN
                'attempt ' || OLD.attempt || ' ended ('
                || COALESCE(NEW.last_error, 'no reason given') || '); attempt '
                || (NEW.attempt + 1) || '/' || NEW.max_attempts || ' due at '
                || strftime('%Y-%m-%dT%H:%M:%fZ', NEW.run_at, 'unixepoch')
            WHEN NEW.last_error IS NOT NULL AND NEW.status NOT IN ('succeeded', NEW.last_error) THEN
                'finished: ' || NEW.status || ' (' || NEW.last_error || ')'
            ELSE 'finished: ' || NEW.status
        END,
        NEW.status, NEW.attempt
    );
END;
-- A callback URL a trigger asked to be called at when its job ends.
CREATE TABLE job_callbacks (
    job_id TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    url    TEXT NOT NULL
);
-- One delivery of a callback: recorded in the transaction that ends the job, before
-- the first attempt, and updated after each attempt.  The body is stored so every
-- retry sends the very same bytes (and signature) under the same delivery id.
CREATE TABLE callback_deliveries (
    id               TEXT PRIMARY KEY,
    job_id           TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url              TEXT NOT NULL,
    event            TEXT NOT NULL,
    body             TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       REAL NOT NULL,
    delivered_at     REAL
);
CREATE INDEX callback_deliveries_due ON callback_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX callback_deliveries_job ON callback_deliveries (job_id);
