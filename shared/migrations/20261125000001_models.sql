-- The model registry: every trained version of a learned model (the hashtag classifier, the
-- virality regressor) with its held-out figures, the data window it saw and where its artifact
-- lies; at most one version of a model is promoted at a time. Also the embeddings the trainer
-- computed for its examples, so that a retrain embeds only what is new, and the system tenant
-- that owns internal jobs such as training.

-- Internal jobs (training) belong to this tenant. No API key is ever issued for it, so no
-- client sees its jobs; one runs at a time.
INSERT INTO tenants (id, name, max_running_jobs)
VALUES ('00000000-0000-0000-0000-000000000001', 'reelq-system', 1)
ON CONFLICT DO NOTHING;

CREATE TABLE model_versions (
    model            TEXT NOT NULL CHECK (model IN ('hashtags', 'virality')),
    version          TEXT NOT NULL,
    -- candidate (trained, being judged) → promoted | rejected; promoted → retired (a newer
    -- version was promoted) | rolled_back (an operator rolled it back). A retired version can
    -- be promoted again by a rollback.
    status           TEXT NOT NULL CHECK (status IN ('candidate', 'promoted', 'rejected', 'retired', 'rolled_back')),
    -- The training job that produced it.
    job_id           UUID REFERENCES jobs (id) ON DELETE SET NULL,
    -- Object key of the artifact in the bucket.
    artifact_key     TEXT NOT NULL,
    -- Held-out figures of this version.
    metrics          JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- The version it was judged against and that version's figures on the same held-out set.
    baseline_version TEXT,
    baseline_metrics JSONB,
    -- Why it was promoted or rejected, in words.
    decision         TEXT NOT NULL DEFAULT '',
    -- Posting times of the oldest and newest example it was trained and evaluated on.
    data_from        TIMESTAMPTZ,
    data_to          TIMESTAMPTZ,
    train_examples   INTEGER NOT NULL DEFAULT 0,
    eval_examples    INTEGER NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    promoted_at      TIMESTAMPTZ,
    retired_at       TIMESTAMPTZ,
    PRIMARY KEY (model, version)
);
CREATE UNIQUE INDEX model_versions_promoted_idx ON model_versions (model) WHERE status = 'promoted';
CREATE INDEX model_versions_created_idx ON model_versions (model, created_at DESC);

-- Embeddings of training examples: a pulled video's description (source 'scraped', item its
-- TikTok id) or a job with feedback (source 'feedback', item the job id). `text_hash` is the
-- SHA-256 of the embedded text, so that an edited description is embedded again.
CREATE TABLE example_embeddings (
    source      TEXT NOT NULL CHECK (source IN ('scraped', 'feedback')),
    item_id     TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('text', 'image')),
    model       TEXT NOT NULL,
    text_hash   TEXT NOT NULL DEFAULT '',
    vector      REAL[] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, item_id, kind, model)
);
