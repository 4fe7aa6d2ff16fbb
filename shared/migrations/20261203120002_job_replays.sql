-- Dead-lettered jobs can be replayed, keeping what each earlier round of attempts ended with.

-- One row per replay of a dead-lettered job: the failure the replay superseded. A replay moves
-- the job from `failed` back to `queued` (the one transition against the forward order of
-- statuses), so the earlier verdict is kept here rather than lost.
CREATE TABLE job_replays (
    id              UUID PRIMARY KEY,
    job_id          UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- The job's attempt counter when it was dead-lettered; attempts after it belong to the replay.
    attempts_before INTEGER NOT NULL,
    -- The attempt budget the job had then.
    max_attempts    INTEGER NOT NULL,
    error_code      TEXT,
    error_message   TEXT,
    failed_at       TIMESTAMPTZ,
    -- Prefix of the admin key that asked for the replay.
    replayed_by     TEXT NOT NULL,
    replayed_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX job_replays_job_idx ON job_replays (job_id, replayed_at);
-- Listing dead letters, newest first.
CREATE INDEX jobs_dead_letter_idx ON jobs (finished_at DESC, id DESC) WHERE status = 'failed' AND error_code = 'retries_exhausted';
