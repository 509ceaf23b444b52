-- One global, monotonic stream position for everything persisted. SQLite has
-- a single writer, so a counter row serialises nothing that is not already.
CREATE TABLE stream_positions (
    stream_name TEXT NOT NULL PRIMARY KEY,
    position INTEGER NOT NULL
);
INSERT INTO stream_positions (stream_name, position) VALUES ('global', 0);
