-- A presigned upload may declare its SHA-256: storage then verifies the bytes against it, and
-- completion checks the checksum storage kept instead of reading the whole object again.

-- Lower-case hex SHA-256 the client declared; NULL when it declared none (completion then reads
-- the object to hash it) and for streamed uploads.
ALTER TABLE videos ADD COLUMN declared_sha256 TEXT CHECK (declared_sha256 ~ '^[0-9a-f]{64}$');
