-- Reports of content that users send to the server's admins: an event, a
-- whole room, or a user (client-server API, "Reporting Content"). Design:
-- the module docstring of storage/reports.py. Rows are kept until an admin
-- deals with them (the admin API reads them, newest first).
CREATE TABLE reports (
    id $SERIAL_PK,
    -- 'event', 'room' or 'user'
    kind TEXT NOT NULL,
    reporter TEXT NOT NULL,
    -- the room of an event or room report
    room_id TEXT,
    -- the reported event of an event report
    event_id TEXT,
    -- the reported user, or the sender of the reported event
    target_user_id TEXT,
    reason TEXT,
    -- the score older clients still send with event reports (-100..0)
    score $BIGINT,
    received_ts $BIGINT NOT NULL
);
CREATE INDEX reports_received ON reports (received_ts);
CREATE INDEX reports_room ON reports (room_id);
