-- Personal suggestions: jobs may name a creator (an id the tenant chooses, in options.creator),
-- and the feedback on that creator's jobs is their history of chosen hashtags.

-- The creator of the job the feedback is on, copied from its options when the feedback is saved.
ALTER TABLE feedback ADD COLUMN creator TEXT;
UPDATE feedback f SET creator = j.options->>'creator' FROM jobs j WHERE j.id = f.job_id AND j.options ? 'creator';
-- A creator's latest posts, newest first.
CREATE INDEX feedback_creator_idx ON feedback (tenant_id, creator, updated_at DESC) WHERE creator IS NOT NULL;
