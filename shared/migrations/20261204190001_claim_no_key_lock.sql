-- Claims lock the tenant row FOR NO KEY UPDATE instead of FOR UPDATE. Two claims of one tenant
-- still exclude each other, so the running-job count taken after the lock stays exact, but a
-- claim no longer blocks the key-share lock every job INSERT takes on the same row for its
-- foreign key: submissions of a tenant stop queueing behind its claims.
CREATE OR REPLACE FUNCTION reelq_claim_job(p_job UUID, p_tenant UUID, p_token UUID, p_ttl_ms DOUBLE PRECISION)
RETURNS SETOF jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_cap INTEGER;
BEGIN
    SELECT max_running_jobs INTO v_cap FROM tenants WHERE id = p_tenant FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH claimed AS (
        UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_token = p_token,
                        lease_expires_at = now() + make_interval(secs => p_ttl_ms / 1000.0),
                        heartbeat_at = now(), started_at = COALESCE(started_at, now()),
                        stage = 'starting', updated_at = now()
        WHERE id = p_job AND tenant_id = p_tenant
          AND (status = 'queued' OR (status = 'running' AND (lease_token IS NULL OR lease_expires_at < now())))
          -- Batch work may use all but one of a tenant's slots, so the tenant's interactive
          -- jobs always find room.
          AND (SELECT count(*) FROM jobs r
               WHERE r.tenant_id = p_tenant AND r.status = 'running' AND r.lease_token IS NOT NULL
                 AND r.lease_expires_at >= now() AND r.id <> p_job)
              < v_cap - CASE WHEN jobs.priority = 'batch' AND v_cap > 1 THEN 1 ELSE 0 END
        RETURNING *
    )
    SELECT * FROM claimed;
END
$$;
