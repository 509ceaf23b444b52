-- Full-text search of messages, and the user directory.
-- Design: the module docstrings of storage/search.py and
-- storage/user_directory.py.

-- One row per searchable event (m.room.message body, m.room.name name,
-- m.room.topic topic), written in the event's persist transaction by a
-- persist hook and deleted when the event is redacted. room_nid,
-- stream_ordering and sender are copies of the event's, so a search reads
-- this table alone until it has its page. vector is to_tsvector('english',
-- value), as Synapse's; queries use websearch_to_tsquery, which accepts any
-- input.
CREATE TABLE event_search (
    event_nid BIGINT NOT NULL PRIMARY KEY,
    room_nid BIGINT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    sender TEXT NOT NULL,
    key TEXT NOT NULL,
    vector tsvector NOT NULL
);
CREATE INDEX event_search_fts ON event_search USING GIN (vector);
CREATE INDEX event_search_room_stream ON event_search (room_nid, stream_ordering);
-- "recent" order over common words walks this backwards
CREATE INDEX event_search_stream ON event_search (stream_ordering);

-- Every user the directory may show: local users and everyone seen joining
-- a room. search_key is the user ID and display name, case-folded in Python
-- (so matching is case-insensitive beyond ASCII on both engines).
CREATE TABLE user_directory (
    user_id TEXT NOT NULL PRIMARY KEY,
    display_name TEXT,
    avatar_url TEXT,
    search_key TEXT NOT NULL
);

-- Local users there already (lower() is close enough for them; their next
-- join or profile change writes the Python case folding).
INSERT INTO user_directory (user_id, display_name, avatar_url, search_key)
    SELECT u.user_id, p.displayname, p.avatar_url,
           lower(u.user_id || ' ' || COALESCE(p.displayname, ''))
    FROM users AS u LEFT JOIN profiles AS p ON p.user_id = u.user_id;
