-- Rooms, events, the DAG, state snapshots, current state and memberships.
-- Design: the module docstrings of storage/events.py, storage/state.py
-- and storage/rooms.py.

-- Room IDs interned to integers (NIDs). current_snapshot_nid is the state
-- after the room's forward extremities, kept equal to current_state.
CREATE TABLE rooms (
    room_nid $SERIAL_PK,
    room_id TEXT NOT NULL UNIQUE,
    room_version TEXT NOT NULL,
    creator TEXT,
    current_snapshot_nid $BIGINT,
    -- 1 while the room's state is partial (joined over federation with
    -- "faster joins" and not all state fetched yet)
    partial_state SMALLINT NOT NULL DEFAULT 0,
    created_ts $BIGINT NOT NULL
);

-- (type, state_key) pairs interned to integers.
CREATE TABLE state_keys (
    state_key_nid $SERIAL_PK,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    UNIQUE (event_type, state_key)
);

-- Every event we hold. json is the PDU as canonical JSON. state_key_nid is
-- NULL for non-state events; snapshot_nid is the state after the event;
-- replaces_nid the state event it replaced in the room's state, if any.
CREATE TABLE events (
    event_nid $SERIAL_PK,
    event_id TEXT NOT NULL UNIQUE,
    room_nid $BIGINT NOT NULL,
    stream_ordering $BIGINT,
    depth $BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT,
    state_key_nid $BIGINT,
    sender TEXT NOT NULL,
    origin_server_ts $BIGINT NOT NULL,
    json TEXT NOT NULL,
    rejected_reason TEXT,
    outlier SMALLINT NOT NULL DEFAULT 0,
    snapshot_nid $BIGINT,
    replaces_nid $BIGINT
);
CREATE UNIQUE INDEX events_stream ON events (stream_ordering);
CREATE INDEX events_room_stream ON events (room_nid, stream_ordering);
-- For state garbage collection: is a snapshot still some event's state?
-- (Many events share a snapshot: PostgreSQL's B-tree deduplication keeps
-- this small.)
CREATE INDEX events_snapshot ON events (snapshot_nid);

-- The DAG: prev_events and auth_events, by NID.
CREATE TABLE event_edges (
    event_nid $BIGINT NOT NULL,
    prev_event_nid $BIGINT NOT NULL,
    PRIMARY KEY (event_nid, prev_event_nid)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_nid);

CREATE TABLE event_auth_edges (
    event_nid $BIGINT NOT NULL,
    auth_event_nid $BIGINT NOT NULL,
    PRIMARY KEY (event_nid, auth_event_nid)
);

-- The events of a room that no other event names as a prev_event.
CREATE TABLE forward_extremities (
    room_nid $BIGINT NOT NULL,
    event_nid $BIGINT NOT NULL,
    PRIMARY KEY (room_nid, event_nid)
);

-- State snapshots. A snapshot is a list of blocks, one per bucket: the
-- state's (state key NID -> event NID) entries are split into bucket_count
-- buckets by a hash of the state key NID, and each bucket's entries form a
-- block, stored once however many snapshots share it (block_hash, the raw
-- 32-byte SHA-256). A change of one state key makes one new block; the
-- others are reused. Snapshots are not reference-counted: one is in use
-- while an event (events.snapshot_nid) or a room (rooms.current_snapshot_nid)
-- points at it, and garbage collection finds the others by query. ref_count
-- on a block counts the snapshots that list it (it changes only when a
-- snapshot is created or deleted). Garbage collection deletes what reaches
-- zero.
CREATE TABLE state_snapshots (
    snapshot_nid $SERIAL_PK,
    room_nid $BIGINT NOT NULL,
    snapshot_hash $BLOB NOT NULL UNIQUE,
    bucket_count INTEGER NOT NULL,
    entry_count INTEGER NOT NULL
);

CREATE TABLE state_snapshot_blocks (
    snapshot_nid $BIGINT NOT NULL,
    bucket INTEGER NOT NULL,
    block_nid $BIGINT NOT NULL,
    PRIMARY KEY (snapshot_nid, bucket)
);

CREATE TABLE state_blocks (
    block_nid $SERIAL_PK,
    block_hash $BLOB NOT NULL UNIQUE,
    ref_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX state_blocks_unreferenced ON state_blocks (ref_count);

CREATE TABLE state_block_entries (
    block_nid $BIGINT NOT NULL,
    state_key_nid $BIGINT NOT NULL,
    event_nid $BIGINT NOT NULL,
    PRIMARY KEY (block_nid, state_key_nid)
);

-- The room's state now, for fast reads.
CREATE TABLE current_state (
    room_nid $BIGINT NOT NULL,
    state_key_nid $BIGINT NOT NULL,
    event_nid $BIGINT NOT NULL,
    PRIMARY KEY (room_nid, state_key_nid)
);

-- Every user's latest membership of every room (local and remote users).
CREATE TABLE room_memberships (
    user_id TEXT NOT NULL,
    room_nid $BIGINT NOT NULL,
    membership TEXT NOT NULL,
    event_nid $BIGINT NOT NULL,
    stream_ordering $BIGINT NOT NULL,
    forgotten SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_nid)
);
CREATE INDEX room_memberships_room ON room_memberships (room_nid, membership);

-- Client transaction IDs of sent events, so a retried PUT .../send/{txnId}
-- (even after a restart) returns the event it created the first time.
-- scope is the device ID, or "token:<id>" for a token without a device.
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    room_nid $BIGINT NOT NULL,
    txn_id TEXT NOT NULL,
    event_nid $BIGINT NOT NULL,
    created_ts $BIGINT NOT NULL,
    PRIMARY KEY (user_id, scope, room_nid, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_nid);
