-- The admin API's room moderation: blocked rooms and room deletions.
-- Design: the module docstring of homeserver/admin/room_deletion.py.

-- Rooms no local user may join or be invited to (Synapse's blocked_rooms).
CREATE TABLE blocked_rooms (
    room_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ts $BIGINT NOT NULL
);

-- One row per DELETE /_synapse/admin/v1|v2/rooms/{roomId}. status goes
-- scheduled -> shutting_down -> purging -> complete (or failed); a row not
-- yet complete or failed is resumed when the server starts. params: the
-- request's JSON; result: the shutdown's JSON (kicked users, new room, ...).
CREATE TABLE room_deletions (
    delete_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    requester TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    result TEXT NOT NULL,
    created_ts $BIGINT NOT NULL
);
CREATE INDEX room_deletions_room ON room_deletions (room_id);
CREATE INDEX room_deletions_status ON room_deletions (status);
