-- One global, monotonic stream position for everything persisted. A sequence
-- is outside transactions, so concurrent writers never conflict on it.
CREATE SEQUENCE global_stream_seq;
