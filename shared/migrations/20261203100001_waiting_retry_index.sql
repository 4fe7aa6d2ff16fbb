-- Jobs released for a retry wait for their delayed message with no lease; the reaper looks for
-- those whose message never came back, without scanning every running job.
CREATE INDEX jobs_waiting_retry_idx ON jobs (updated_at) WHERE status = 'running' AND lease_token IS NULL;
