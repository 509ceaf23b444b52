-- Simplified sliding sync (MSC4186): per connection, what it was sent.
-- A connection is (user, device, conn_id); a new one (a request without
-- `pos`) replaces the old. Each response hands out a `pos`, one row of
-- sliding_sync_positions (with the global stream position it covers).
-- sliding_sync_rooms says, per room, up to which stream position the
-- connection was sent the room and with which room config; a row belongs
-- to the response (pos_nid) that carried it, so a response the client never
-- processed (it retried with the older pos) is forgotten with its rows.
-- Design: homeserver/sync/sliding.py and docs/sliding-sync.md.
CREATE TABLE sliding_sync_connections (
    connection_nid $SERIAL_PK,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    created_ts $BIGINT NOT NULL,
    UNIQUE (user_id, device_id, conn_id)
);
-- old connections are forgotten (SlidingSyncStore.delete_connections_older_than)
CREATE INDEX sliding_sync_connections_created ON sliding_sync_connections (created_ts);

CREATE TABLE sliding_sync_positions (
    pos_nid $SERIAL_PK,
    connection_nid $BIGINT NOT NULL,
    stream_pos $BIGINT NOT NULL,
    created_ts $BIGINT NOT NULL
);
CREATE INDEX sliding_sync_positions_conn ON sliding_sync_positions (connection_nid);

CREATE TABLE sliding_sync_rooms (
    connection_nid $BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    pos_nid $BIGINT NOT NULL,
    -- the room was sent up to this global stream position
    sent_upto $BIGINT NOT NULL,
    membership TEXT NOT NULL,
    timeline_limit INTEGER NOT NULL,
    -- the room config's required_state, as JSON (sync/sliding_request.py)
    required_state TEXT NOT NULL,
    PRIMARY KEY (connection_nid, room_id, pos_nid)
);
