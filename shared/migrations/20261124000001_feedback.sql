-- Creators' feedback on hashtag suggestions: the tags they will actually post a video with,
-- kept as labelled examples for the hashtag trainer. One row per job; posting again replaces it.

CREATE TABLE feedback (
    job_id      UUID PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    video_id    UUID REFERENCES videos (id) ON DELETE SET NULL,
    -- The chosen tags, normalised to lower case with a leading '#', in the creator's order.
    hashtags    TEXT[] NOT NULL CHECK (cardinality(hashtags) BETWEEN 1 AND 30),
    -- What the hashtags analysis suggested for the job when the feedback was given, so that the
    -- trainer can tell accepted suggestions from rejected ones and from tags the creator added.
    suggested   TEXT[] NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The trainer reads what changed since its last pull.
CREATE INDEX feedback_updated_idx ON feedback (updated_at);
CREATE INDEX feedback_tenant_idx ON feedback (tenant_id, updated_at DESC);
