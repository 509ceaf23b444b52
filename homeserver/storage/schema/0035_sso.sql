-- Signing in without a password here: login tokens, the users of identity
-- providers, and OIDC sign-ins in progress. Design: docs/sso.md and the
-- module docstrings of homeserver/storage/sso.py and homeserver/accounts/sso.py.

-- Short-lived, single-use tokens for m.login.token (issued by SSO and by
-- POST /login/get_token); only their SHA-256 is kept. used_ts is set by the
-- one login that spends a token.
CREATE TABLE login_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    expiry_ts $BIGINT NOT NULL,
    used_ts $BIGINT,
    -- the identity provider (idp_id) that signed the user in, if any, and
    -- its session there (the ID token's sid), for back-channel logout
    auth_provider_id TEXT,
    auth_provider_session_id TEXT
);
CREATE INDEX login_tokens_expiry ON login_tokens (expiry_ts);

-- The account an identity provider's subject signs in to (Synapse's
-- user_external_ids): the second sign-in finds the same user.
CREATE TABLE user_external_ids (
    auth_provider TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (auth_provider, external_id)
);
CREATE INDEX user_external_ids_user ON user_external_ids (user_id);

-- A browser's sign-in in progress, named by the SHA-256 of the random value in
-- its cookie. kind 'oidc': sent to the provider, waiting for the callback
-- (data: state, nonce, PKCE verifier); kind 'username': back from the
-- provider, the user still to choose a username (data: subject, attributes).
-- Spent (deleted) by the step that uses it; stale rows go after a lifetime.
CREATE TABLE sso_sessions (
    session_hash TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    idp_id TEXT NOT NULL,
    client_redirect_url TEXT NOT NULL,
    data TEXT NOT NULL,
    created_ts $BIGINT NOT NULL
);
CREATE INDEX sso_sessions_created ON sso_sessions (created_ts);

-- The devices an identity provider's session signed in (Synapse's
-- device_auth_providers): the provider's back-channel logout of that
-- session (sid) logs them out.
CREATE TABLE device_auth_providers (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    auth_provider_id TEXT NOT NULL,
    auth_provider_session_id TEXT NOT NULL
);
CREATE INDEX device_auth_providers_session
    ON device_auth_providers (auth_provider_id, auth_provider_session_id);
CREATE INDEX device_auth_providers_device ON device_auth_providers (user_id, device_id);

-- The spec's OAuth 2.0 API with this server as the authorization server
-- (homeserver/accounts/oauth_server.py): clients registered dynamically
-- (RFC 7591; metadata: their JSON), and authorization codes (only their
-- SHA-256 kept), each spent by one token request.
CREATE TABLE oauth_clients (
    client_id TEXT NOT NULL PRIMARY KEY,
    metadata TEXT NOT NULL,
    created_ts $BIGINT NOT NULL
);

CREATE TABLE oauth_codes (
    code_hash TEXT NOT NULL PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    expiry_ts $BIGINT NOT NULL,
    used_ts $BIGINT
);
CREATE INDEX oauth_codes_expiry ON oauth_codes (expiry_ts);

-- The device authorization grant (RFC 8628): a device without a browser
-- shows user_code; the user approves it on another; the device polls with
-- device_code (only its SHA-256 kept). status: pending, approved, denied,
-- spent (its tokens issued).
CREATE TABLE oauth_device_grants (
    device_code_hash TEXT NOT NULL PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    device_id TEXT NOT NULL,
    status TEXT NOT NULL,
    user_id TEXT,
    expiry_ts $BIGINT NOT NULL,
    last_poll_ts $BIGINT NOT NULL
);
CREATE INDEX oauth_device_grants_expiry ON oauth_device_grants (expiry_ts);
