-- A pulled video's own file, when a dump brought one beside its metadata: the object key in the
-- bucket. The trainer embeds its frames, so examples with a video carry image features too.
ALTER TABLE scraped_videos ADD COLUMN video_key TEXT;
