-- The media admin API (design: the module docstring of homeserver/admin/media.py).
-- quarantined_by: the admin who quarantined the file (NULL: served); a
-- quarantined file answers 404 everywhere, thumbnails too. safe_from_quarantine:
-- protected, no quarantine touches it. last_access_ts: the last download or
-- thumbnail (written in batches), what deleting old media and purging the
-- remote cache go by.
ALTER TABLE local_media ADD COLUMN quarantined_by TEXT;
ALTER TABLE local_media ADD COLUMN safe_from_quarantine SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE local_media ADD COLUMN last_access_ts $BIGINT;
ALTER TABLE remote_media ADD COLUMN quarantined_by TEXT;
ALTER TABLE remote_media ADD COLUMN last_access_ts $BIGINT;
CREATE INDEX local_media_user_created ON local_media (user_id, created_ts);
CREATE INDEX remote_media_last_access ON remote_media (last_access_ts);
