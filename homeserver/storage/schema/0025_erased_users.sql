-- Users who asked, when deactivating their account, to be erased
-- (POST /account/deactivate with erase: true). Their events are then shown
-- redacted to anyone who was not joined to the room when they were sent
-- (rooms/visibility.py). Local users only; a row is never removed.
CREATE TABLE erased_users (
    user_id TEXT PRIMARY KEY NOT NULL
);
