-- Messages stored before full-text search existed are indexed by a
-- background job at start (storage/search.py, SearchStore.index_history):
-- every event up to target_nid, in event_nid order, done_nid the progress.
-- The row goes when the job is done. On a new database there is nothing to do.
CREATE TABLE search_history_job (
    lock SMALLINT NOT NULL PRIMARY KEY DEFAULT 1,
    done_nid $BIGINT NOT NULL,
    target_nid $BIGINT NOT NULL
);
INSERT INTO search_history_job (lock, done_nid, target_nid)
    SELECT 1, 0, event_nid FROM events ORDER BY event_nid DESC LIMIT 1;
