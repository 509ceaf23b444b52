-- OpenID tokens a user hands to a third party (integration managers), which
-- exchanges them at /_matrix/federation/v1/openid/userinfo for the user ID.
-- Design: the module docstring of storage/openid.py. Stored hashed, as
-- access tokens are.
CREATE TABLE openid_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts $BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
