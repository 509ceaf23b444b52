"""Presence of users who sync on reader processes (docs/scale-out.md).

Presence is the main process's: a sync makes its user online there
(``edu/presence.py`` ``user_syncing`` and ``sync_ended``). A reader tells
main when each sync of one of its users starts and ends, on the channel
``homeserver/<server_name>/to_main``, and that it is alive, every
``ALIVE_S``:

    {"t":"sync","run":"<reader's run>","instance":"sync1","user":"@a:x",
     "presence":null,"started":true}
    {"t":"alive","run":"<reader's run>","instance":"sync1"}
    {"t":"active","run":"<writer's run>","instance":"writer1","user":"@a:x"}

An event writer says the same of its users' syncs, and ``active`` when one
of them sent an event there (a sender is online and currently active, as
``user_activity`` makes them on one process), at most once per
``ACTIVE_EVERY_S`` for a user.

A reader reports transitions only, not every long-poll: "started" when a
user (with one ``set_presence``) goes from no sync in flight there to one,
"ended" once they have had none for ``END_GRACE_S`` (a client's next
long-poll follows the last within milliseconds; without this, 1,000
receivers at 5 messages a second would be 10,000 reports a second, all on
the main process). So a user who stops syncing goes offline ``END_GRACE_S``
later than on one process. Main counts each reader run's syncs and hands
every start and end to its presence handler, as if the sync ran there. A reader that falls
silent for ``DEAD_AFTER_S`` (killed, cut off from Redis) has its syncs ended,
so its users go offline on the usual timeout unless they sync elsewhere.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from typing import TYPE_CHECKING, Any

from twisted.internet import task

from homeserver.replication.redis import SubscriberFactory, command_connection

if TYPE_CHECKING:
    from homeserver.config import RedisConfig
    from homeserver.context import ServerContext
    from homeserver.edu.presence import PresenceHandler

logger = logging.getLogger(__name__)

ALIVE_S = 2.0
DEAD_AFTER_S = 10.0
END_GRACE_S = 5.0
ACTIVE_EVERY_S = 1.0


def to_main_channel(server_name: str) -> str:
    return f"homeserver/{server_name}/to_main"


class SyncReporter:
    """A reader's side: tells main of its users' syncs."""

    def __init__(self, ctx: "ServerContext", redis: "RedisConfig", worker_name: str) -> None:
        self.ctx = ctx
        self.channel = to_main_channel(ctx.hostname)
        self.instance = worker_name
        self.run = secrets.token_hex(8)
        self._redis_config = redis
        self._redis: Any = None
        self._alive = task.LoopingCall(self._say_alive)
        # (user, set_presence) -> syncs in flight here; -> the timer that
        # reports the end once none has followed for END_GRACE_S
        self._in_flight: Counter[tuple[str, str | None]] = Counter()
        self._ending: dict[tuple[str, str | None], Any] = {}
        # user -> when their activity was last reported
        self._active: dict[str, float] = {}

    def start(self) -> None:
        self._redis = command_connection(self._redis_config)
        self._alive.clock = self.ctx.reactor
        self._alive.start(ALIVE_S, now=True)

    async def stop(self) -> None:
        if self._alive.running:
            self._alive.stop()
        for timer in self._ending.values():
            if timer.active():
                timer.cancel()
        self._ending.clear()
        if self._redis is not None:
            await self._redis.disconnect()

    def report(self, user_id: str, set_presence: str | None, started: bool) -> None:
        """``PresenceHandler.report_sync``: a sync of ``user_id`` began or ended."""
        key = (user_id, set_presence)
        if started:
            self._in_flight[key] += 1
            ending = self._ending.pop(key, None)
            if ending is not None:
                ending.cancel()  # still syncing, as far as main knows
            elif self._in_flight[key] == 1:
                self._send_sync(key, True)
            return
        if self._in_flight[key] <= 0:
            return
        self._in_flight[key] -= 1
        if self._in_flight[key] == 0:
            del self._in_flight[key]
            if key not in self._ending:
                self._ending[key] = self.ctx.clock.callLater(END_GRACE_S, self._ended, key)

    async def user_activity(self, user_id: str) -> None:
        """``EventCreator``'s presence hook on an event writer: ``user_id`` sent."""
        now = self.ctx.clock.seconds()
        if now - self._active.get(user_id, 0.0) < ACTIVE_EVERY_S:
            return
        if len(self._active) > 10_000:
            self._active = {u: t for u, t in self._active.items()
                            if now - t < ACTIVE_EVERY_S}
        self._active[user_id] = now
        self._send({"t": "active", "user": user_id})

    def _ended(self, key: tuple[str, str | None]) -> None:
        self._ending.pop(key, None)
        if key not in self._in_flight:
            self._send_sync(key, False)

    def _send_sync(self, key: tuple[str, str | None], started: bool) -> None:
        self._send({"t": "sync", "user": key[0], "presence": key[1], "started": started})

    def _say_alive(self) -> None:
        self._send({"t": "alive"})

    def _send(self, fields: dict[str, Any]) -> None:
        if self._redis is None:
            return
        message = json.dumps({**fields, "run": self.run, "instance": self.instance},
                             separators=(",", ":"))
        d = self._redis.execute_command("PUBLISH", self.channel, message)
        d.addErrback(lambda f: logger.debug("reporting a sync failed: %s", f.getErrorMessage()))


class ReaderSyncs:
    """Main's side: the readers' syncs, handed to the presence handler."""

    def __init__(self, ctx: "ServerContext", redis: "RedisConfig",
                 presence: "PresenceHandler") -> None:
        self.ctx = ctx
        self.presence = presence
        self.channel = to_main_channel(ctx.hostname)
        self._redis_config = redis
        self._subscriber: SubscriberFactory | None = None
        # reader run -> (user, set_presence) -> syncs in flight
        self._syncs: dict[str, Counter[tuple[str, str | None]]] = {}
        self._heard: dict[str, float] = {}
        self._sweep = task.LoopingCall(self._end_silent_readers)

    def start(self) -> None:
        self._subscriber = SubscriberFactory(
            self._redis_config, self.channel, f"homeserver/{self.ctx.hostname}/main",
            lambda: None, self._on_message, lambda: None)
        self._subscriber.start(self.ctx.reactor)
        self._sweep.clock = self.ctx.reactor
        self._sweep.start(ALIVE_S, now=False)

    async def stop(self) -> None:
        if self._sweep.running:
            self._sweep.stop()
        if self._subscriber is not None:
            await self._subscriber.disconnect()

    def syncing(self) -> int:
        """Syncs in flight on the readers (tests, metrics)."""
        return sum(sum(c.values()) for c in self._syncs.values())

    def _on_message(self, text: str) -> None:
        try:
            message = json.loads(text)
            run = str(message["run"])
            kind = message["t"]
        except (ValueError, KeyError, TypeError):
            logger.warning("presence: ignored a malformed message from a reader")
            return
        self._heard[run] = self.ctx.clock.seconds()
        if kind == "active":
            active = message.get("user")
            if isinstance(active, str) and self.ctx.is_mine(active):
                self.ctx.run_in_background(self.presence.user_activity(active))
            return
        if kind != "sync":
            return
        user_id, set_presence = message.get("user"), message.get("presence")
        if not isinstance(user_id, str) or not self.ctx.is_mine(user_id) or \
                not (set_presence is None or isinstance(set_presence, str)):
            return
        counts = self._syncs.setdefault(run, Counter())
        key = (user_id, set_presence)
        if message.get("started"):
            counts[key] += 1
            self.ctx.run_in_background(self.presence.user_syncing(user_id, set_presence))
        elif counts[key] > 0:
            counts[key] -= 1
            if not counts[key]:
                del counts[key]
            self.presence.sync_ended(user_id, set_presence)

    def _end_silent_readers(self) -> None:
        now = self.ctx.clock.seconds()
        for run, heard in list(self._heard.items()):
            if now - heard < DEAD_AFTER_S:
                continue
            del self._heard[run]
            counts = self._syncs.pop(run, Counter())
            if counts:
                logger.info("presence: a reader fell silent; ending its %d syncs",
                            sum(counts.values()))
            for (user_id, set_presence), n in counts.items():
                for _ in range(n):
                    self.presence.sync_ended(user_id, set_presence)
