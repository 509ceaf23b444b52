-- Send-to-device messages. Design: the module docstring of storage/to_device.py.

-- Messages waiting for a local device, until the device acknowledges them
-- by syncing past their stream position. One request's messages share a
-- position; id orders messages within a position.
CREATE TABLE device_inbox (
    id $SERIAL_PK,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_id $BIGINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX device_inbox_device ON device_inbox (user_id, device_id, stream_id);

-- Messages for users of other servers: one m.direct_to_device EDU content
-- per destination and request, for the federation sender to deliver.
CREATE TABLE device_federation_outbox (
    id $SERIAL_PK,
    destination TEXT NOT NULL,
    stream_id $BIGINT NOT NULL,
    message TEXT NOT NULL,
    created_ts $BIGINT NOT NULL
);
CREATE INDEX device_federation_outbox_destination
    ON device_federation_outbox (destination, stream_id);

-- Transaction IDs of /sendToDevice requests already handled, per user and
-- scope (the device, else the access token): a retry stores nothing again.
CREATE TABLE to_device_txn_ids (
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts $BIGINT NOT NULL,
    PRIMARY KEY (user_id, scope, txn_id)
);
