-- Interactive jobs and follow-ups (docs/PLUGINS.md, "Interactive commands").
--
-- session: the opaque "session" object of the job's last response that had one;
-- a follow-up is sent it.  follows / followed_by link a job and the one made of it
-- by POST /job/{id}/instruct (one at most, so a chain never forks); follow_up holds
-- what the follow-up's requests carry besides the old job's id ({prompt, session}).
ALTER TABLE jobs ADD COLUMN session TEXT;
ALTER TABLE jobs ADD COLUMN follows TEXT;
ALTER TABLE jobs ADD COLUMN follow_up TEXT;
ALTER TABLE jobs ADD COLUMN followed_by TEXT;
-- While an interactive attempt runs: it said it waits for input, and the user asked
-- to complete the session (kept, so an attempt retried after a crash is completed too).
ALTER TABLE jobs ADD COLUMN waiting_for_input INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN completing INTEGER NOT NULL DEFAULT 0;
-- A user's input to an interactive job is a message of kind "user_input"; ref is the
-- message_id the plugin is sent with it.
ALTER TABLE job_messages ADD COLUMN ref TEXT;
CREATE INDEX job_messages_inputs ON job_messages (job_id, seq) WHERE kind = 'user_input';
