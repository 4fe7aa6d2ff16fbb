-- Wider tags learned from pulled posts: a tag that posts carrying `hashtag` often carry too and
-- that more posts carry overall (#gym beside #legday). Replaced wholesale after each pull; the
-- worker links them in its hashtag vocabulary, as the curated seed's broader tags are.
CREATE TABLE hashtag_links (
    hashtag      TEXT NOT NULL,
    wider        TEXT NOT NULL,
    -- Pulled posts carrying both, and the share of those carrying `hashtag` that carry `wider`.
    together     INTEGER NOT NULL,
    share        DOUBLE PRECISION NOT NULL,
    computed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (hashtag, wider),
    CHECK (hashtag <> wider)
);
