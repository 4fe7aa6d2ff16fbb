-- Claims several jobs in one call: the deliveries a worker received together. The batch's jobs
-- are read by primary key alone (`id = ANY`), which no stale statistics can turn into a scan of
-- a tenant's every job, and taken tenant by tenant in tenant id order (so two batches never wait
-- on each other's tenant locks in a cycle). Each tenant's row is locked once FOR NO KEY UPDATE
-- and its running jobs counted once; its jobs are then claimed interactive first, in the order
-- given, while the cap allows. Batch work may use all but one of a tenant's slots, so its
-- interactive jobs always find room. The lock makes the count exact: no other claim of the
-- tenant runs until this one commits. A job named twice is one row and takes the token of its
-- first mention; a job named with another tenant than its own is not claimed.
CREATE OR REPLACE FUNCTION reelq_claim_jobs(p_jobs UUID[], p_tenants UUID[], p_tokens UUID[], p_ttl_ms DOUBLE PRECISION)
RETURNS SETOF jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_tenant  UUID;
    v_found   BOOLEAN := FALSE;
    v_cap     INTEGER;
    v_running INTEGER;
    v_want    RECORD;
    v_row     jobs%ROWTYPE;
BEGIN
    FOR v_want IN
        SELECT j.id, j.tenant_id, j.priority, p_tokens[pos] AS token, p_tenants[pos] AS asked
        FROM jobs j, array_position(p_jobs, j.id) AS pos
        WHERE j.id = ANY(p_jobs)
        ORDER BY j.tenant_id, j.priority = 'batch', pos
    LOOP
        CONTINUE WHEN v_want.asked IS DISTINCT FROM v_want.tenant_id;
        IF v_tenant IS DISTINCT FROM v_want.tenant_id THEN
            v_tenant := v_want.tenant_id;
            SELECT max_running_jobs INTO v_cap FROM tenants WHERE id = v_tenant FOR NO KEY UPDATE;
            v_found := FOUND;
            IF v_found THEN
                SELECT count(*) INTO v_running FROM jobs r
                WHERE r.tenant_id = v_tenant AND r.status = 'running' AND r.lease_token IS NOT NULL
                  AND r.lease_expires_at >= now();
            END IF;
        END IF;
        CONTINUE WHEN NOT v_found;
        CONTINUE WHEN v_running >= v_cap - CASE WHEN v_want.priority = 'batch' AND v_cap > 1 THEN 1 ELSE 0 END;
        UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_token = v_want.token,
                        lease_expires_at = now() + make_interval(secs => p_ttl_ms / 1000.0),
                        heartbeat_at = now(), started_at = COALESCE(started_at, now()),
                        stage = 'starting', updated_at = now()
        WHERE id = v_want.id
          AND (status = 'queued' OR (status = 'running' AND (lease_token IS NULL OR lease_expires_at < now())))
        RETURNING * INTO v_row;
        IF FOUND THEN
            v_running := v_running + 1;
            RETURN NEXT v_row;
        END IF;
    END LOOP;
END
$$;
