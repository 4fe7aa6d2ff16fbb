-- A catalogue track made from an upload is derived data of that upload: deleting the upload
-- (or erasing its tenant) removes the track and its keys, and adding the same upload again
-- replaces its track rather than adding a second one.
ALTER TABLE tracks DROP CONSTRAINT tracks_video_id_fkey;
ALTER TABLE tracks ADD CONSTRAINT tracks_video_id_fkey FOREIGN KEY (video_id) REFERENCES videos (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX tracks_video_idx ON tracks (video_id) WHERE video_id IS NOT NULL;
