-- Accounts, devices, tokens, profiles, account data, filters and
-- user-interactive auth sessions.

CREATE TABLE users (
    user_id TEXT NOT NULL PRIMARY KEY,
    password_hash TEXT,
    creation_ts $BIGINT NOT NULL,
    admin SMALLINT NOT NULL DEFAULT 0,
    is_guest SMALLINT NOT NULL DEFAULT 0,
    deactivated SMALLINT NOT NULL DEFAULT 0,
    user_type TEXT
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts $BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens are stored only as the SHA-256 of the token: they are 32
-- random bytes, so a fast hash is as good as a slow one and keeps every
-- request's lookup cheap.
CREATE TABLE access_tokens (
    id $SERIAL_PK,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT,
    valid_until_ms $BIGINT,
    refresh_token_id $BIGINT,
    -- 1 once a token from a refresh has been used (retires the old pair)
    used SMALLINT NOT NULL DEFAULT 0,
    created_ts $BIGINT NOT NULL
);
CREATE INDEX access_tokens_user ON access_tokens (user_id, device_id);

CREATE TABLE refresh_tokens (
    id $SERIAL_PK,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    expiry_ts $BIGINT,
    ultimate_session_expiry_ts $BIGINT,
    -- set once the token has been exchanged; the old one stays usable until
    -- the new pair is first used, as the spec allows for lost responses
    next_token_id $BIGINT,
    created_ts $BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id, device_id);

CREATE TABLE profiles (
    user_id TEXT NOT NULL PRIMARY KEY,
    displayname TEXT,
    avatar_url TEXT
);

-- room_id is '' for global account data.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id $BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);

CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id $BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

CREATE TABLE ui_auth_sessions (
    session_id TEXT NOT NULL PRIMARY KEY,
    creation_ts $BIGINT NOT NULL,
    method TEXT NOT NULL,
    uri TEXT NOT NULL,
    description TEXT NOT NULL,
    clientdict TEXT NOT NULL,
    -- the user the session acts for, once known (logged-in requests)
    user_id TEXT,
    -- JSON object: stage type -> result (user id or true)
    completed TEXT NOT NULL,
    -- JSON object: server-side data such as the chosen registration token
    serverdict TEXT NOT NULL
);

CREATE TABLE registration_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    uses_allowed INTEGER,
    pending INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time $BIGINT
);

-- Nonces handed out by the shared-secret admin registration endpoint.
CREATE TABLE registration_nonces (
    nonce TEXT NOT NULL PRIMARY KEY,
    created_ts $BIGINT NOT NULL
);
