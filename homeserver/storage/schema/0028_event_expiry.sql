-- Self-destructing messages (MSC2228, enable_ephemeral_messages): when each
-- event carrying org.matrix.self_destruct_after loses its content. A row
-- goes when the event is pruned.
CREATE TABLE event_expiry (
    event_id TEXT NOT NULL PRIMARY KEY,
    expiry_ts $BIGINT NOT NULL
);
CREATE INDEX event_expiry_ts ON event_expiry (expiry_ts);
