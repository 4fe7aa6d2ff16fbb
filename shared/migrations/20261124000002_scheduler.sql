-- The scheduler's data: videos pulled from TikTok (the Research API or imported dumps) with
-- engagement snapshots over time, their music, the run history of each schedule, the daily API
-- quota ledger, and the trending hashtags computed after each pull. Also the admin flag of API
-- keys, which guards the routes that operate the scheduler.

ALTER TABLE api_keys ADD COLUMN is_admin BOOLEAN NOT NULL DEFAULT false;

CREATE TABLE music (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    author      TEXT NOT NULL DEFAULT '',
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per TikTok video, keyed by TikTok's own id: pulling the same video again updates it.
CREATE TABLE scraped_videos (
    id             TEXT PRIMARY KEY,
    description    TEXT NOT NULL DEFAULT '',
    -- ISO 3166-1 alpha-2 code, upper case; NULL when the source does not say.
    region         TEXT,
    create_time    TIMESTAMPTZ NOT NULL,
    -- Lower case, without '#'.
    hashtags       TEXT[] NOT NULL DEFAULT '{}',
    music_id       TEXT REFERENCES music (id) ON DELETE SET NULL,
    -- Where the row came from: 'tiktok' or 'dump'.
    source         TEXT NOT NULL,
    first_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX scraped_videos_hashtags_idx ON scraped_videos USING GIN (hashtags);
CREATE INDEX scraped_videos_region_time_idx ON scraped_videos (region, create_time);
CREATE INDEX scraped_videos_music_idx ON scraped_videos (music_id);

-- Engagement counters as seen at one moment; a video gains a row per pull, so growth can be
-- measured. Readers use the latest row per video.
CREATE TABLE video_snapshots (
    video_id  TEXT NOT NULL REFERENCES scraped_videos (id) ON DELETE CASCADE,
    taken_at  TIMESTAMPTZ NOT NULL,
    views     BIGINT NOT NULL CHECK (views >= 0),
    likes     BIGINT NOT NULL CHECK (likes >= 0),
    comments  BIGINT NOT NULL CHECK (comments >= 0),
    shares    BIGINT NOT NULL CHECK (shares >= 0),
    PRIMARY KEY (video_id, taken_at)
);

-- The schedules a scheduler knows, registered at its start, so that the api can refuse to
-- trigger a name no scheduler would run. `checkpoint` is where an interrupted pull resumes.
CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,
    cron        TEXT NOT NULL,
    source      TEXT NOT NULL,
    checkpoint  JSONB,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE schedule_runs (
    id            UUID PRIMARY KEY,
    schedule      TEXT NOT NULL,
    -- 'cron' (a slot of the schedule's expression) or 'manual' (POST /v1/admin/runs).
    trigger       TEXT NOT NULL CHECK (trigger IN ('cron', 'manual')),
    -- The cron slot this run stands for; NULL for manual runs. Unique, so that replicas that
    -- all see the slot come due insert it once.
    scheduled_for TIMESTAMPTZ,
    -- pending → running → succeeded | partial (stopped cleanly, for example at the daily quota)
    -- | failed.
    status        TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'partial', 'failed')),
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at    TIMESTAMPTZ,
    ended_at      TIMESTAMPTZ,
    -- Which scheduler process ran it.
    runner        TEXT,
    videos        INTEGER NOT NULL DEFAULT 0,
    requests      INTEGER NOT NULL DEFAULT 0,
    error_code    TEXT,
    error         TEXT,
    UNIQUE (schedule, scheduled_for)
);
-- At most one run of a schedule waits or runs at a time.
CREATE UNIQUE INDEX schedule_runs_active_idx ON schedule_runs (schedule) WHERE status IN ('pending', 'running');
CREATE INDEX schedule_runs_requested_idx ON schedule_runs (requested_at DESC, id DESC);

-- Requests and records used per API and UTC day. Reserved before each request, so that
-- replicas and restarts share one budget.
CREATE TABLE api_quota (
    api       TEXT NOT NULL,
    day       DATE NOT NULL,
    requests  INTEGER NOT NULL DEFAULT 0,
    records   INTEGER NOT NULL DEFAULT 0,
    -- Set when the API itself said the day's quota is spent, whatever the counts say.
    exhausted BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (api, day)
);

-- Hashtags whose share of recent videos grew, per region ('' for all regions together),
-- replaced wholesale after each pull.
CREATE TABLE trending_hashtags (
    region          TEXT NOT NULL,
    hashtag         TEXT NOT NULL,
    score           DOUBLE PRECISION NOT NULL,
    recent_count    INTEGER NOT NULL,
    previous_count  INTEGER NOT NULL,
    computed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (region, hashtag)
);
CREATE INDEX trending_hashtags_rank_idx ON trending_hashtags (region, score DESC);
