-- Receipts: one row per (room, user, receipt type, thread), holding the
-- event it points at. Design: the module docstring of storage/receipts.py.
--
-- thread_id is '' for an unthreaded receipt, 'main' for the main timeline,
-- else a thread root's event ID: an unthreaded receipt and threaded ones
-- coexist. data is the receipt's JSON (ts, ...). stream_id is the global
-- stream position of the last write of the row, so /sync finds what
-- changed in a range of positions through receipts_stream.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL,
    data TEXT NOT NULL,
    stream_id $BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_stream ON receipts (stream_id);
