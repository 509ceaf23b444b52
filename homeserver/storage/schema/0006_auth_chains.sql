-- The auth-chain index ("chain cover"): auth chains and the auth difference
-- of state resolution as queries, not graph walks. Design: the module
-- docstring of storage/auth_chains.py.

-- Chain IDs, allocated by the sequence so concurrent rooms never collide.
CREATE TABLE event_auth_chain_ids (
    chain_id $SERIAL_PK,
    room_nid $BIGINT NOT NULL
);

-- Each indexed event's place: the events of a chain before it (lower
-- sequence numbers) are all in its auth chain.
CREATE TABLE event_auth_chains (
    event_nid $BIGINT NOT NULL PRIMARY KEY,
    chain_id $BIGINT NOT NULL,
    sequence_number $BIGINT NOT NULL,
    UNIQUE (chain_id, sequence_number)
);

-- The event at (origin chain, origin seq) has the events of the target
-- chain up to target seq in its auth chain. Stored only where that is more
-- than the origin chain's earlier events already reach.
CREATE TABLE event_auth_chain_links (
    origin_chain_id $BIGINT NOT NULL,
    origin_sequence_number $BIGINT NOT NULL,
    target_chain_id $BIGINT NOT NULL,
    target_sequence_number $BIGINT NOT NULL,
    PRIMARY KEY (origin_chain_id, origin_sequence_number, target_chain_id)
);

-- Events not indexed yet because an auth event (auth_event_id) is missing
-- or not indexed itself. explicit is 1 when the event lists it in its
-- auth_events (the DAG edge is added when it arrives), 0 for the implicit
-- create event of a v12 room or an edge already in event_auth_edges.
CREATE TABLE event_auth_chain_pending (
    event_nid $BIGINT NOT NULL,
    auth_event_id TEXT NOT NULL,
    explicit SMALLINT NOT NULL,
    PRIMARY KEY (event_nid, auth_event_id)
);
CREATE INDEX event_auth_chain_pending_auth ON event_auth_chain_pending (auth_event_id);

-- Rooms whose events predate the index: ensure_indexed() indexes them.
CREATE TABLE event_auth_chain_backfill (
    room_nid $BIGINT NOT NULL PRIMARY KEY
);
INSERT INTO event_auth_chain_backfill (room_nid) SELECT room_nid FROM rooms;
