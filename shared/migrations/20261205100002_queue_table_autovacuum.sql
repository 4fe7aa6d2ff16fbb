-- The queue's tables churn: every job is inserted, claimed and finished (three row versions),
-- and every outbox row is inserted and deleted within milliseconds. PostgreSQL's defaults
-- vacuum and analyse a table only once a fifth of it has changed, which for a busy queue means
-- long stretches of dead rows and plans made for a table a fraction of its size. These tables
-- are vacuumed and analysed after a fixed number of changes instead.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
                        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000);
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 10000,
                      autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_vacuum_insert_threshold = 10000,
                      autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 10000);
ALTER TABLE results SET (autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.05);
