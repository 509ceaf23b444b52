-- Redactions and timestamp lookups.
-- Design: the module docstrings of storage/events.py and rooms/redaction.py.

-- Which events a redaction redacts. redacts is an event ID, not a NID: a
-- redaction may arrive before the event it redacts. Only redactions that
-- passed the redaction checks are recorded; readers apply the earliest.
CREATE TABLE event_redactions (
    redacts TEXT NOT NULL,
    redaction_nid $BIGINT NOT NULL,
    PRIMARY KEY (redacts, redaction_nid)
);

-- GET /rooms/{roomId}/timestamp_to_event
CREATE INDEX events_room_ts ON events (room_nid, origin_server_ts);
