-- Device-list changes only one user is told about (/sync device_lists.changed
-- and /keys/changes of ``viewer``): a user's new user-signing key (only they
-- see it) and their signatures of other users' master keys (only the signer
-- sees that the signed user "changed"). One row per (viewer, user): readers
-- only ask "changed since X?".
CREATE TABLE device_list_private_changes (
    viewer TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stream_id $BIGINT NOT NULL,
    PRIMARY KEY (viewer, user_id)
);
CREATE INDEX device_list_private_changes_stream
    ON device_list_private_changes (viewer, stream_id);
