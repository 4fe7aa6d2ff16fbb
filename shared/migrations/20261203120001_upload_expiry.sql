-- Presigned uploads are bound to the size declared when the slot was handed out, and slots
-- never completed expire.

-- The size the client declared for a presigned upload; completion refuses any other size.
-- NULL for streamed uploads, whose size is what arrived.
ALTER TABLE videos ADD COLUMN declared_size BIGINT CHECK (declared_size > 0);
-- The expiry sweep reads the oldest pending uploads.
CREATE INDEX videos_pending_idx ON videos (created_at) WHERE status = 'pending';
