-- Job ids are UUIDv7, ordered by creation time, and a job finishes after it is created: the
-- finished-job retention sweep reads old jobs by a primary-key range instead, so finishing a job
-- maintains one index fewer.
DROP INDEX jobs_finished_idx;
