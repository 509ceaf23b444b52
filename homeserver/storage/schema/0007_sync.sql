-- Device-list changes for /sync's device_lists: the global stream position
-- of each user's latest device change (a device added, renamed or removed;
-- later also device keys). One row per user: /sync only asks "changed since
-- X?".
CREATE TABLE device_list_changes (
    user_id TEXT NOT NULL PRIMARY KEY,
    stream_id $BIGINT NOT NULL
);
CREATE INDEX device_list_changes_stream ON device_list_changes (stream_id);
-- "Which rooms' memberships of this user changed since X" for /sync.
CREATE INDEX room_memberships_user_stream ON room_memberships (user_id, stream_ordering);
