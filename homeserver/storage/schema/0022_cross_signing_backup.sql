-- Cross-signing keys and their signatures, and server-side key backups.
-- Design: the module docstrings of storage/cross_signing.py and
-- storage/key_backup.py.

-- The current master, self-signing and user-signing key of each user (local
-- users upload them; remote users' arrive by m.signing_key_update or a
-- federated /user/keys/query). key_json is the key object as uploaded.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    -- 'master', 'self_signing' or 'user_signing'
    key_type TEXT NOT NULL,
    -- the key's one ed25519 public key (unpadded base64)
    public_key TEXT NOT NULL,
    key_json TEXT NOT NULL,
    stream_id $BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload: signer user_id's key
-- key_id ("ed25519:...") signed target_user_id's device target_device_id (a
-- device ID, or a cross-signing key's public key). Merged into the target's
-- key object when it is served.
CREATE TABLE e2e_cross_signing_signatures (
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_device_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_device_id, user_id, key_id)
);

-- Key backup versions per user; version numbers grow per user and are never
-- reused. A deleted version keeps its row (deleted = 1) so that its number is
-- not handed out again.
CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version $BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    -- bumped on every change to the version's keys
    etag $BIGINT NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (user_id, version)
);

-- The backed-up megolm sessions of one backup version.
CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version $BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index $BIGINT NOT NULL,
    forwarded_count $BIGINT NOT NULL,
    -- 0 or 1
    is_verified INTEGER NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
