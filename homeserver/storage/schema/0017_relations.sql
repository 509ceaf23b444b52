-- Relations between events (m.annotation, m.replace, m.thread, m.reference,
-- and any other rel_type). Design: the module docstring of storage/relations.py.
--
-- One row per timeline event whose content.m.relates_to names a rel_type and
-- an event_id, written in the event's persist transaction by a persist hook
-- (storage/event_hooks.py) and deleted when the child event is redacted, so
-- aggregations and /relations never see a redacted child. relates_to is the
-- parent's event ID (the parent may not have arrived yet). aggregation_key
-- is the annotation key (reactions), else NULL.
CREATE TABLE event_relations (
    event_nid $BIGINT NOT NULL PRIMARY KEY,
    room_nid $BIGINT NOT NULL,
    relates_to TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    event_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    aggregation_key TEXT
);
-- /relations, bundled aggregations and duplicate-annotation checks
CREATE INDEX event_relations_parent ON event_relations (relates_to, rel_type);
-- /threads: the room's thread relations
CREATE INDEX event_relations_room ON event_relations (room_nid, rel_type);
