-- Message and media retention (design: homeserver/rooms/retention.py and
-- homeserver/admin/retention_jobs.py): when each purge job last ran, so a
-- job keeps its interval across restarts (a server restarted more often
-- than a job's interval still runs it).
CREATE TABLE retention_job_runs (
    job TEXT NOT NULL PRIMARY KEY,
    last_run_ts $BIGINT NOT NULL
);

-- Suspended users (Synapse's PUT /_synapse/admin/v1/suspend/{userId},
-- MSC3823): they read, and cannot send, join, invite or change their profile.
ALTER TABLE users ADD COLUMN suspended SMALLINT NOT NULL DEFAULT 0;

-- Each quarantine and release of a media file, in order (Synapse's
-- GET /_synapse/admin/v1/media/quarantine_changes); origin is our server
-- name for local media.
CREATE TABLE media_quarantine_changes (
    change_id $SERIAL_PK,
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    quarantined SMALLINT NOT NULL,
    ts $BIGINT NOT NULL
);
