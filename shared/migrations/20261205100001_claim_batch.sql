-- Claims several jobs in one call: the deliveries a worker received together. For each tenant
-- in the batch, in id order (so two batches never wait on each other's tenant locks in a
-- cycle), the tenant row is locked once FOR NO KEY UPDATE and its running jobs are counted
-- once; its jobs are then claimed interactive first, in the order given, while the cap allows.
-- Batch work may use all but one of a tenant's slots, so its interactive jobs always find room.
-- The lock makes the count exact: no other claim of the tenant runs until this one commits.
CREATE OR REPLACE FUNCTION reelq_claim_jobs(p_jobs UUID[], p_tenants UUID[], p_tokens UUID[], p_ttl_ms DOUBLE PRECISION)
RETURNS SETOF jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_tenant  UUID;
    v_cap     INTEGER;
    v_running INTEGER;
    v_want    RECORD;
    v_row     jobs%ROWTYPE;
BEGIN
    FOR v_tenant IN SELECT DISTINCT t FROM unnest(p_tenants) AS t ORDER BY 1 LOOP
        SELECT max_running_jobs INTO v_cap FROM tenants WHERE id = v_tenant FOR NO KEY UPDATE;
        CONTINUE WHEN NOT FOUND;
        SELECT count(*) INTO v_running FROM jobs r
        WHERE r.tenant_id = v_tenant AND r.status = 'running' AND r.lease_token IS NOT NULL AND r.lease_expires_at >= now();
        -- `= ANY` keeps this an index lookup of the batch's ids whatever plan is cached; a job
        -- named twice is one row and takes the token of its first mention.
        FOR v_want IN
            SELECT j.id, p_tokens[pos] AS token, j.priority
            FROM jobs j, array_position(p_jobs, j.id) AS pos
            WHERE j.id = ANY(p_jobs) AND j.tenant_id = v_tenant AND p_tenants[pos] = v_tenant
            ORDER BY j.priority = 'batch', pos
        LOOP
            CONTINUE WHEN v_running >= v_cap - CASE WHEN v_want.priority = 'batch' AND v_cap > 1 THEN 1 ELSE 0 END;
            UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_token = v_want.token,
                            lease_expires_at = now() + make_interval(secs => p_ttl_ms / 1000.0),
                            heartbeat_at = now(), started_at = COALESCE(started_at, now()),
                            stage = 'starting', updated_at = now()
            WHERE id = v_want.id AND tenant_id = v_tenant
              AND (status = 'queued' OR (status = 'running' AND (lease_token IS NULL OR lease_expires_at < now())))
            RETURNING * INTO v_row;
            IF FOUND THEN
                v_running := v_running + 1;
                RETURN NEXT v_row;
            END IF;
        END LOOP;
    END LOOP;
END
$$;
