-- Sliding sync (MSC4186) with $LAZY members: which member events (user ID ->
-- event ID, JSON) the connection holds for the room as of that response, so
-- a later response sends a timeline sender's member event only when the
-- client lacks it or it changed.
ALTER TABLE sliding_sync_rooms ADD COLUMN lazy_members TEXT;
