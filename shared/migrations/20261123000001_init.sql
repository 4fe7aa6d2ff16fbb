-- reelq schema: tenants and their keys, videos, jobs with fenced leases, results, the
-- transactional outbox and webhook deliveries. PostgreSQL is the source of truth for job state.

CREATE TABLE tenants (
    id               UUID PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    -- How many of this tenant's jobs may hold a live lease at once.
    max_running_jobs INTEGER NOT NULL DEFAULT 8 CHECK (max_running_jobs > 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The public part of the key, shown in listings so that a key can be told apart.
    prefix       TEXT NOT NULL,
    -- SHA-256 of the whole key. Keys are 32 random bytes, so a fast hash is enough.
    key_hash     BYTEA NOT NULL UNIQUE,
    label        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ
);

CREATE TABLE videos (
    id            UUID PRIMARY KEY,
    tenant_id     UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    object_key    TEXT NOT NULL,
    -- 'pending' until the bytes are in storage and checked, then 'stored'.
    status        TEXT NOT NULL CHECK (status IN ('pending', 'stored')),
    size_bytes    BIGINT,
    sha256        TEXT,
    content_type  TEXT,
    container     TEXT,
    probe         JSONB,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    stored_at     TIMESTAMPTZ
);
CREATE INDEX videos_tenant_idx ON videos (tenant_id, created_at DESC);

CREATE TABLE jobs (
    id               UUID PRIMARY KEY,
    tenant_id        UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    video_id         UUID REFERENCES videos (id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    analyses         TEXT[] NOT NULL,
    options          JSONB NOT NULL DEFAULT '{}'::jsonb,
    priority         TEXT NOT NULL CHECK (priority IN ('interactive', 'batch')),
    -- Incremented by every claim: the fencing number of the current holder.
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    -- Set while a worker holds the job; every write a worker makes is conditional on it.
    lease_token      UUID,
    lease_expires_at TIMESTAMPTZ,
    heartbeat_at     TIMESTAMPTZ,
    progress         REAL NOT NULL DEFAULT 0,
    stage            TEXT,
    error_code       TEXT,
    error_message    TEXT,
    callback_url     TEXT,
    idempotency_key  TEXT,
    request_hash     TEXT,
    trace_context    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX jobs_tenant_created_idx ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX jobs_running_idx ON jobs (tenant_id) WHERE status = 'running' AND lease_token IS NOT NULL;
CREATE INDEX jobs_expired_lease_idx ON jobs (lease_expires_at) WHERE status = 'running';

CREATE TABLE results (
    job_id         UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    analysis       TEXT NOT NULL,
    payload        JSONB NOT NULL,
    model_versions JSONB NOT NULL DEFAULT '{}'::jsonb,
    attempt        INTEGER NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, analysis)
);

-- Messages to publish to RabbitMQ, written in the same transaction as the state they announce.
CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    routing_key  TEXT NOT NULL,
    payload      JSONB NOT NULL,
    headers      JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id              UUID PRIMARY KEY,
    job_id          UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    payload         JSONB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    abandoned_at    TIMESTAMPTZ,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (job_id)
);
CREATE INDEX webhook_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
