"""Several processes on one database: replication over Redis (docs/scale-out.md).

- ``record.py``: a committed write (``storage/hub.py`` ``Committed``) as JSON
  and back, the one record every process hears;
- ``publisher.py``: the main process publishes each commit, each advance of
  its "persisted up to" position and cache invalidations on Redis;
- ``follower.py``: a reader process feeds its notifier, sync fast path and
  caches from them, and catches up from the database when it missed any;
- ``tracker.py``: a reader's view of the global stream's positions;
- ``forward.py``: a reader hands the requests it does not serve to the main
  process over HTTP;
- ``redis.py``: the Redis connections (txredisapi), imported only when
  ``redis.enabled`` is set.

None of this is imported by a single-process server.
"""
