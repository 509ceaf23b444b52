-- End-to-end encryption keys of devices. Design: the module docstring of
-- storage/e2e_keys.py.

-- The device keys a local device uploaded (key_json: the signed object as
-- uploaded). Served only while the device exists (joined with devices).
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys: each is handed out once (/keys/claim deletes it).
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- Fallback keys: one per device and algorithm, handed out when the one-time
-- keys run out, and marked used (not deleted) when they are.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Outbound device list updates of local users: the last stream_id sent
-- (m.device_list_update's stream_id / prev_id chain; also the stream_id of
-- GET /user/devices) and, per device, a digest of what was announced, so a
-- change is announced once per device that really changed.
CREATE TABLE e2e_device_list_outbound (
    user_id TEXT NOT NULL PRIMARY KEY,
    stream_id $BIGINT NOT NULL
);
CREATE TABLE e2e_device_list_announced (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- The cached device lists of remote users: the stream_id the cache is
-- current as of, and each device with its keys (NULL: no keys).
CREATE TABLE e2e_remote_device_lists (
    user_id TEXT NOT NULL PRIMARY KEY,
    stream_id $BIGINT NOT NULL
);
CREATE TABLE e2e_remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    keys_json TEXT,
    PRIMARY KEY (user_id, device_id)
);
