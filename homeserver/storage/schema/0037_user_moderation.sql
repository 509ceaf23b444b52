-- Moderating users (design: homeserver/admin/user_moderation.py).
-- shadow_banned: the user's sends, invites and typing seem to succeed and
-- reach nobody (Synapse's shadow-ban).
ALTER TABLE users ADD COLUMN shadow_banned SMALLINT NOT NULL DEFAULT 0;

-- A per-user rc_message override (Synapse's ratelimit_override): both 0 is
-- no limit at all.
CREATE TABLE ratelimit_override (
    user_id TEXT NOT NULL PRIMARY KEY,
    messages_per_second $BIGINT NOT NULL,
    burst_count $BIGINT NOT NULL
);

-- Each user's server notices room (server_notices config), one per user.
CREATE TABLE server_notice_rooms (
    user_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL
);
