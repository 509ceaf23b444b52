-- The federation sender's persisted state. Design: the module docstrings of
-- federation/sender.py and storage/federation_queue.py.

-- PDUs waiting for a destination: one row per (destination, event), by the
-- event's stream position (events.stream_ordering). room_nid lets catch-up
-- keep only the latest event of each room.
CREATE TABLE federation_pdu_queue (
    destination TEXT NOT NULL,
    stream_ordering $BIGINT NOT NULL,
    room_nid $BIGINT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
);

-- Per destination: the backoff after failed transactions. retry_interval
-- 0 means the destination is healthy; otherwise no transaction is tried
-- before retry_last_ts + retry_interval (ms), and the next try is in
-- catch-up mode.
CREATE TABLE federation_destinations (
    destination TEXT NOT NULL PRIMARY KEY,
    retry_last_ts $BIGINT NOT NULL,
    retry_interval $BIGINT NOT NULL
);

-- One row: every local, non-outlier event at a stream position up to here
-- has had its federation_pdu_queue rows written. At start the sender
-- enqueues the events past it (those committed before a crash had the
-- sender write their rows).
CREATE TABLE federation_sender_position (
    lock SMALLINT NOT NULL PRIMARY KEY,
    stream_ordering $BIGINT NOT NULL
);
