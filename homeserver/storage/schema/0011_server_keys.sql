-- Other servers' signing keys. Design: the module docstring of storage/server_keys.py.

-- One row per (server, key ID) we hold a verify key for. valid_until_ts is
-- the response's valid_until_ts for a current key and expired_ts for an old
-- one; fetched_ts caps how long it counts for events (v5+ rooms, 7 days).
-- key_json is the whole signed response the key came in (canonical JSON),
-- served again when we act as a notary.
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts $BIGINT NOT NULL,
    fetched_ts $BIGINT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
