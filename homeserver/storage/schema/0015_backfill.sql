-- Events fetched with /backfill (history from before we joined a room over
-- federation) go into the timeline BELOW every position we ever assigned:
-- they get negative stream positions, counting down from here. They never
-- appear in an incremental /sync (no "since" is below zero), only in
-- /messages and initial syncs. Design: storage/federation_events.py.
CREATE TABLE backfill_stream (
    lock SMALLINT NOT NULL PRIMARY KEY DEFAULT 1,
    position $BIGINT NOT NULL
);
INSERT INTO backfill_stream (lock, position) VALUES (1, 0);
