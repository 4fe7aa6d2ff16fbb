-- The catalogue songs are recognised against: each track's acoustic fingerprint (Chromaprint
-- items) and an inverted index of its items' keys, so that an excerpt's keys find candidate
-- (track, offset) pairs with one indexed join.

CREATE TABLE tracks (
    id            BIGSERIAL PRIMARY KEY,
    title         TEXT NOT NULL DEFAULT '',
    artist        TEXT NOT NULL DEFAULT '',
    -- Where the audio came from: an audio upload of the operator's tenant, or a sound of the
    -- pulled data.
    video_id      UUID REFERENCES videos (id) ON DELETE SET NULL,
    music_id      TEXT REFERENCES music (id) ON DELETE SET NULL,
    duration_secs REAL NOT NULL CHECK (duration_secs > 0),
    -- Chromaprint items (32 bits each, stored as their signed reading), one per 0.124 s.
    fingerprint   INTEGER[] NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tracks_music_idx ON tracks (music_id) WHERE music_id IS NOT NULL;

-- Two keys per item (see reelq_media::fingerprint::keys) → where they occur. Every column is in
-- the index, so candidate lookups read the index alone.
CREATE TABLE track_keys (
    key       INTEGER NOT NULL,
    track_id  BIGINT NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL
);
CREATE INDEX track_keys_key_idx ON track_keys (key, track_id, position);
CREATE INDEX track_keys_track_idx ON track_keys (track_id);
