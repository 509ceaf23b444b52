-- Events received over federation. Design: storage/federation_events.py.

-- 1: the event passed the auth rules against its own state but not against
-- the room's current state ("soft failure"): kept in the DAG, never in a
-- timeline (no stream position) and never a forward extremity.
ALTER TABLE events ADD COLUMN soft_failed SMALLINT NOT NULL DEFAULT 0;

-- PUT /send/{txnId} is idempotent: the response to each transaction an
-- origin sent, for a retry of it.
CREATE TABLE federation_inbound_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response TEXT NOT NULL,
    received_ts $BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_inbound_txns_ts ON federation_inbound_txns (received_ts);

-- The stripped state another server sent with an invite to a room we are
-- not in (shown to the invitee in /sync's invite_state).
CREATE TABLE remote_invite_state (
    event_nid $BIGINT NOT NULL PRIMARY KEY,
    stripped_state TEXT NOT NULL
);

-- prev_events of a stored event that we did not hold when we stored it
-- (a gap in the DAG): the event_edges row is made when the event arrives.
CREATE TABLE event_edges_pending (
    event_nid $BIGINT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_nid, prev_event_id)
);
CREATE INDEX event_edges_pending_prev ON event_edges_pending (prev_event_id);
