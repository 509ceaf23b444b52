-- Presence: one row per user whose presence the server has ever known.
-- Design: the module docstrings of edu/presence.py and storage/presence.py.
--
-- stream_id is the global stream position of the last change a client must
-- hear about (presence, status_msg, currently_active); last_active_ts is
-- also written on its own, at most once a minute per user, without a new
-- position. currently_active is 0 or 1.
CREATE TABLE presence (
    user_id TEXT NOT NULL PRIMARY KEY,
    presence TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts $BIGINT NOT NULL DEFAULT 0,
    currently_active SMALLINT NOT NULL DEFAULT 0,
    stream_id $BIGINT NOT NULL
);
-- /sync: "whose presence changed after position X".
CREATE INDEX presence_stream ON presence (stream_id);
