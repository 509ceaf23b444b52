"""A writing process's side of replication: every commit, on Redis.

The main process publishes, and so does each event writer
(``stream_writers.events``). What a writer publishes on the deployment's
channel (``redis.py``), one JSON message each, named by the writer (``w``)
and numbered by ``seq`` within this run of the process (``run``):

- ``commit``: one committed transaction's record (``record.py``), sent from
  the write hub's database-thread hook, so in commit order and always before
  the position message that covers it (both go through the reactor's queue
  in that order, on one Redis connection);
- ``position``: the writer's frontier (``tracker.py``) is ``upto``: with
  main the only writer, the global stream is persisted up to there; with
  event writers, everything of this writer's at or below it has committed
  and it takes nothing there any more. Also sent once a second while idle
  (a heartbeat: a process that missed a message notices the gap in ``seq``
  within a second). The last one is also kept under the writer's key, for
  a process that starts or reconnects;
- ``tokens``: some access token was deleted (readers drop their token cache);
- ``typing``: a room's typists now (typing lives in memory, off the global
  stream; a reader mirrors main's);
- ``invalidate``: entries of a named cache changed (``key_counts``: the
  devices whose one-time key counts changed).

A message published while Redis is unreachable waits in the client's queue
(bounded by ``MAX_PENDING``; beyond it messages are dropped, and readers see
the gap in ``seq`` and catch up from the database).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

from twisted.internet import task

from homeserver.replication.record import encode_committed
from homeserver.replication.redis import channel_name, command_connection, position_key

if TYPE_CHECKING:
    from homeserver.config import RedisConfig
    from homeserver.push.actions import PushActions
    from homeserver.storage.hub import Committed, WriteHub
    from homeserver.storage.streams import StreamTracker

logger = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
MAX_PENDING = 10_000


class ReplicationPublisher:
    """Publishes a writing process's writes (module docstring)."""

    def __init__(self, reactor: Any, server_name: str, redis: "RedisConfig",
                 tracker: "StreamTracker", push_actions: "PushActions",
                 writer: str = "main") -> None:
        self.reactor = reactor
        self.tracker = tracker
        self.push_actions = push_actions
        self.writer = writer
        self.channel = channel_name(server_name)
        self.key = position_key(server_name, writer)
        # records another writer made, fed to this process's hub by the
        # follower: not ours to publish (ids of the records, and a flag for
        # the reactor-side hooks)
        self.replaying_commits: set[int] = set()
        self.replaying = False
        self._frontier_due = False
        self.run = secrets.token_hex(8)
        self._redis_config = redis
        self._redis: Any = None
        self._seq = 0
        self._pending = 0
        self.dropped = 0
        self._heartbeat = task.LoopingCall(self._beat)
        self._last_upto = -1

    def subscribe_to(self, hub: "WriteHub") -> None:
        """Hear every commit (the HomeServer calls this from its one list)."""
        hub.subscribe(self.on_commit)
        hub.on_tokens_changed(self.tokens_changed)
        on_frontier = getattr(self.tracker, "on_frontier", False)
        if on_frontier is False:
            # the only writer: its "persisted up to" is its frontier
            hub.on_persisted(self.persisted)
        else:
            # one writer of several: its own frontier, not the minimum
            self.tracker.on_frontier = self.frontier_moved  # type: ignore[attr-defined]

    def start(self) -> None:
        self._redis = command_connection(self._redis_config)
        self._heartbeat.clock = self.reactor
        self._heartbeat.start(HEARTBEAT_S, now=True)

    async def stop(self) -> None:
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self._redis is not None:
            await self._redis.disconnect()

    # -- from the write hub ---------------------------------------------------

    def on_commit(self, committed: "Committed") -> None:
        """On the database thread: encode here, publish from the reactor."""
        if id(committed) in self.replaying_commits:
            return
        verdicts = {}
        for event, _ in committed.events:
            found = self.push_actions.recent_actions(event.event_id)
            if found:
                verdicts[event.event_id] = found
        # encoded here, off the reactor; the reactor only numbers it
        body = json.dumps(encode_committed(committed, verdicts), separators=(",", ":"))
        self.reactor.callFromThread(self._publish_commit, body)

    def tokens_changed(self) -> None:
        if not self.replaying:
            self._publish("tokens", {})

    def persisted(self, upto: int) -> None:
        self._publish_position(upto)

    def frontier_moved(self, upto: int) -> None:
        """This writer's frontier moved (reactor): said once the reactor's
        queue has run, so several moves make one message, and the commit
        records queued before it go first."""
        if not self._frontier_due:
            self._frontier_due = True
            self.reactor.callLater(0, self._say_frontier)

    def _say_frontier(self) -> None:
        self._frontier_due = False
        self._publish_position(self._frontier())

    def typing_changed(self, room_id: str, user_ids: list[str]) -> None:
        """The room's typists changed (edu/typing.py; not on the global stream)."""
        self._publish("typing", {"room": room_id, "users": user_ids})

    def invalidate(self, cache: str, keys: list[list[str]]) -> None:
        """Entries of ``cache`` changed here; readers drop theirs."""
        self._publish("invalidate", {"cache": cache, "keys": keys})

    # -- publishing -------------------------------------------------------------

    def _frontier(self) -> int:
        local = getattr(self.tracker, "local_frontier", None)
        return int(local) if local is not None else self.tracker.persisted_upto

    def _beat(self) -> None:
        self._publish_position(self._frontier())

    def _publish_position(self, upto: int) -> None:
        self._last_upto = upto
        message = self._message("position", {"upto": upto})
        if message is None:
            return
        self._send("SET", self.key, message)
        self._send("PUBLISH", self.channel, message)

    def _publish_commit(self, body: str) -> None:
        message = self._message("commit", {})
        if message is not None:
            self._send("PUBLISH", self.channel, message[:-1] + ',"c":' + body + "}")

    def _publish(self, kind: str, fields: dict[str, Any]) -> None:
        message = self._message(kind, fields)
        if message is not None:
            self._send("PUBLISH", self.channel, message)

    def _message(self, kind: str, fields: dict[str, Any]) -> str | None:
        self._seq += 1
        if self._redis is None or self._pending >= MAX_PENDING:
            self.dropped += 1  # readers see the gap in seq and catch up
            return None
        return json.dumps({"t": kind, "w": self.writer, "run": self.run, "seq": self._seq,
                           **fields},
                          separators=(",", ":"))

    def _send(self, *command: str) -> None:
        self._pending += 1
        d = self._redis.execute_command(*command)

        def done(result: Any) -> None:
            self._pending -= 1

        def failed(failure: Any) -> None:
            self._pending -= 1
            logger.warning("Redis %s failed: %s", command[0], failure.getErrorMessage())

        d.addCallbacks(done, failed)
