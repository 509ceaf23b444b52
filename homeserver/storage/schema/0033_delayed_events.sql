-- Delayed events (MSC4140): events a user asked to be sent later, kept here
-- until sent or cancelled so a restart loses none. ``send_ts`` moves on a
-- restart request; ``state_key`` is NULL for a message event.
CREATE TABLE delayed_events (
    delay_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT,
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT,
    content TEXT NOT NULL,
    delay_ms $BIGINT NOT NULL,
    send_ts $BIGINT NOT NULL,
    -- user, device and client transaction ID of a delayed message send: a
    -- retried request gets the delay_id it got first
    txn_key TEXT UNIQUE
);
CREATE INDEX delayed_events_send_ts ON delayed_events (send_ts);
CREATE INDEX delayed_events_user ON delayed_events (user_id, send_ts);
CREATE INDEX delayed_events_state ON delayed_events (room_id, event_type, state_key);
