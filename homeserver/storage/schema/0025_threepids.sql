-- Third-party identifiers (3PIDs): e-mail addresses (and phone numbers)
-- attached to accounts, the identity servers they were bound on, and the
-- validation sessions that prove ownership of an address. Design: the
-- module docstring of storage/threepids.py.
--
-- user_threepids: an address belongs to one account at most; address is
-- stored as given for msisdn and lowercased for email (as Synapse does).
CREATE TABLE user_threepids (
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    user_id TEXT NOT NULL,
    validated_at $BIGINT NOT NULL,
    added_at $BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- which identity server each binding this server made lives on, so it can
-- be undone on /3pid/delete, /3pid/unbind and deactivation
CREATE TABLE user_threepid_id_server (
    user_id TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
);

-- a requestToken session: the address, the client's secret, the token
-- mailed out (only its SHA-256) and when it was validated (NULL: not yet)
CREATE TABLE threepid_validation_sessions (
    session_id TEXT NOT NULL PRIMARY KEY,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    last_send_attempt $BIGINT NOT NULL,
    token_hash TEXT NOT NULL,
    token_expires_ts $BIGINT NOT NULL,
    next_link TEXT,
    validated_at $BIGINT
);
CREATE UNIQUE INDEX threepid_validation_sessions_secret
    ON threepid_validation_sessions (client_secret, medium, address);
