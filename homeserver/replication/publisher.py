"""The main process's side of replication: every commit, on Redis.

What it publishes on the deployment's channel (``redis.py``), one JSON
message each, numbered by ``seq`` within this run of the process (``run``):

- ``commit``: one committed transaction's record (``record.py``), sent from
  the write hub's database-thread hook, so in commit order and always before
  the position message that covers it (both go through the reactor's queue
  in that order, on one Redis connection);
- ``position``: the global stream is persisted up to ``upto``; also sent
  once a second while idle (a heartbeat: a reader that missed a message
  notices the gap in ``seq`` within a second). The last one is also kept
  under a key, for a reader that starts or reconnects;
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
    """Publishes the main process's writes (module docstring)."""

    def __init__(self, reactor: Any, server_name: str, redis: "RedisConfig",
                 tracker: "StreamTracker", push_actions: "PushActions") -> None:
        self.reactor = reactor
        self.tracker = tracker
        self.push_actions = push_actions
        self.channel = channel_name(server_name)
        self.key = position_key(server_name)
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
        hub.on_persisted(self.persisted)

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
        verdicts = {}
        for event, _ in committed.events:
            found = self.push_actions.recent_actions(event.event_id)
            if found:
                verdicts[event.event_id] = found
        # encoded here, off the reactor; the reactor only numbers it
        body = json.dumps(encode_committed(committed, verdicts), separators=(",", ":"))
        self.reactor.callFromThread(self._publish_commit, body)

    def tokens_changed(self) -> None:
        self._publish("tokens", {})

    def persisted(self, upto: int) -> None:
        self._publish_position(upto)

    def typing_changed(self, room_id: str, user_ids: list[str]) -> None:
        """The room's typists changed (edu/typing.py; not on the global stream)."""
        self._publish("typing", {"room": room_id, "users": user_ids})

    def invalidate(self, cache: str, keys: list[list[str]]) -> None:
        """Entries of ``cache`` changed here; readers drop theirs."""
        self._publish("invalidate", {"cache": cache, "keys": keys})

    # -- publishing -------------------------------------------------------------

    def _beat(self) -> None:
        self._publish_position(self.tracker.persisted_upto)

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
        return json.dumps({"t": kind, "run": self.run, "seq": self._seq, **fields},
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
