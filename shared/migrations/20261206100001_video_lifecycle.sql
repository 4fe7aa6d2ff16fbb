-- The end of a video's life: deletion on request, erasure of a tenant's data, and retention of
-- uploads, outputs and finished jobs.

-- A stored upload whose bytes retention removed: its jobs and results stay, and the row says
-- when the bytes went. New jobs cannot name it.
ALTER TABLE videos DROP CONSTRAINT videos_status_check;
ALTER TABLE videos ADD CONSTRAINT videos_status_check CHECK (status IN ('pending', 'stored', 'expired'));
ALTER TABLE videos ADD COLUMN expired_at TIMESTAMPTZ;
-- The retention sweep reads the oldest stored uploads.
CREATE INDEX videos_stored_idx ON videos (stored_at) WHERE status = 'stored';

-- Deleting a video deletes its jobs through the foreign key; without this index every such
-- delete would scan the whole jobs table.
CREATE INDEX jobs_video_idx ON jobs (video_id);

-- The retention sweep of finished jobs reads the oldest first.
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE status IN ('succeeded', 'failed', 'cancelled');

-- The retention sweep of `mux` outputs reads the oldest results whose file is still kept.
CREATE INDEX results_kept_outputs_idx ON results (created_at) WHERE analysis = 'mux' AND NOT (payload ? 'expired_at');

-- Objects still to be removed from storage after their rows were deleted: the rows go first,
-- in one transaction, so nothing can refer to an object once it is owed here. A row is done
-- when a pass that began after `settle_at` removed everything: until then a worker whose job
-- was cancelled by the deletion, or a presigned PUT already handed out, could still write.
-- Holds ids and keys only, never content.
CREATE TABLE object_deletions (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   UUID NOT NULL,
    -- 'video' (DELETE /v1/videos/{id}) or 'tenant' (an admin's erasure of a tenant's data).
    reason      TEXT NOT NULL CHECK (reason IN ('video', 'tenant')),
    -- The video for reason 'video'.
    video_id    UUID,
    keys        TEXT[] NOT NULL DEFAULT '{}',
    prefixes    TEXT[] NOT NULL DEFAULT '{}',
    settle_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    next_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX object_deletions_due_idx ON object_deletions (next_at);
