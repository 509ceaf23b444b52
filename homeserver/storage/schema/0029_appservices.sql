-- Application services (homeserver/appservice/, docs/appservices.md).
--
-- How far each service has got through the event stream: every event at or
-- below stream_pos has been looked at and, if of interest, put in one of
-- its transactions; last_txn_id is the last transaction ID it was given.
CREATE TABLE appservice_stream (
    appservice_id TEXT NOT NULL PRIMARY KEY,
    stream_pos $BIGINT NOT NULL,
    last_txn_id $BIGINT NOT NULL
);
-- Transactions made but not yet acknowledged by the service, each with its
-- events in stream order (a JSON list of event IDs) and, for a service with
-- receive_ephemeral, its ephemeral data (a JSON list of typing and receipt
-- events, or NULL): sent again, with the same ID and content, until the
-- service answers 200, after a restart too.
CREATE TABLE appservice_txns (
    appservice_id TEXT NOT NULL,
    txn_id $BIGINT NOT NULL,
    event_ids TEXT NOT NULL,
    ephemeral TEXT,
    PRIMARY KEY (appservice_id, txn_id)
);
-- Rooms a service published in its own room lists (PUT
-- /directory/list/appservice/{networkId}/{roomId}), apart from the main list.
CREATE TABLE appservice_room_list (
    appservice_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    room_nid $BIGINT NOT NULL,
    PRIMARY KEY (appservice_id, network_id, room_nid)
);
