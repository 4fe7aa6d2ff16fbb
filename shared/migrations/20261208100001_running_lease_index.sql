-- The running-job count of a claim reads the index of running jobs by tenant and, now, by lease
-- expiry: `lease_expires_at >= now()` bounds the scan to the leases of the last lease length.
-- Index entries of jobs that have since finished stay until vacuum removes them, and while
-- another client holds an old snapshot open (a long report, a stuck session) vacuum can remove
-- none: keyed by tenant alone, every claim then counted through all the jobs the tenant ran
-- since that snapshot, and claims slowed for as long as it stayed open.
CREATE INDEX jobs_running_lease_idx ON jobs (tenant_id, lease_expires_at) WHERE status = 'running' AND lease_token IS NOT NULL;
DROP INDEX jobs_running_idx;
