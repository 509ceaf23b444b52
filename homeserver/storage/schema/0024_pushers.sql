-- Pushers: where a user's notifications go (push.md, "Pushers"). Design:
-- the module docstrings of storage/pushers.py and push/pushers.py.
--
-- One row per (user, app_id, pushkey). device_id is the device of the
-- access token that created the pusher: deleting the device deletes its
-- pushers. data is the client's data object as JSON (url, format, custom
-- keys). pushkey_ts is when the pushkey was last set (ms).
-- last_stream_ordering is the stream position of the last notification
-- handled (sent, or given up on), so a restart resumes from there;
-- failing_since_ts is when the current notification's first attempt
-- failed (NULL while all is well).
CREATE TABLE pushers (
    id $SERIAL_PK,
    user_id TEXT NOT NULL,
    device_id TEXT,
    kind TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    pushkey_ts $BIGINT NOT NULL,
    last_stream_ordering $BIGINT NOT NULL,
    failing_since_ts $BIGINT,
    UNIQUE (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_pushkey ON pushers (app_id, pushkey);
CREATE INDEX pushers_device ON pushers (user_id, device_id);
