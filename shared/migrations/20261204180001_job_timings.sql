-- Where a finished job's time went, on the attempt that finished it: download, inspect, decode and
-- each analysis run, as [{"stage": ..., "ms": ...}] in the order they ran. Written with the
-- job's completion; NULL for jobs that have not succeeded and for jobs finished before this
-- column existed.
ALTER TABLE jobs ADD COLUMN timings JSONB;
