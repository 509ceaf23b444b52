-- Users who asked, when deactivating, for their messages to be erased
-- (client-server API "Account deactivation", erase: true): their events are
-- served redacted to other servers and to users who were not in the room.
CREATE TABLE erased_users (
    user_id TEXT NOT NULL PRIMARY KEY
);
