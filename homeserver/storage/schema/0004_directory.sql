-- Room aliases and the published room directory.
-- Design: the module docstring of storage/directory.py.

-- Local aliases (#localpart:our.server) and the room each points to.
-- creator is the user who made the alias: they may always delete it.
CREATE TABLE room_aliases (
    room_alias TEXT NOT NULL PRIMARY KEY,
    room_nid $BIGINT NOT NULL,
    creator TEXT NOT NULL,
    created_ts $BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_nid);

-- The rooms published in this server's room directory (a row: "public").
CREATE TABLE room_directory (
    room_nid $BIGINT NOT NULL PRIMARY KEY,
    published_ts $BIGINT NOT NULL
);
