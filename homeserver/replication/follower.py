"""Replication heard: the stream writers' writes, in every other process.

A sync reader follows the main process; with event writers configured
(``stream_writers.events``) every process follows every stream writer but
itself (main and the event writers included), keeping each writer's
``run`` and ``seq`` apart. Each message of a writer (``publisher.py``) is
applied in the order it arrives:

- ``commit``: the record goes to this process's own write hub subscribers
  (recent activity for the fast path, the ignore-list cache, ...) exactly as
  the main process's went to its own, and the users it concerns are woken
  as the main process's handlers wake them there (the notifier holds each
  wake-up until the position is persisted);
- ``position``: the writer's frontier; this process's "persisted up to"
  (the minimum over the writers, ``tracker.py``) may move, and the notifier
  wakes whoever waits for the writes below it;
- ``typing``: the room's typists, mirrored (a missed change is repaired by
  forgetting every typist when catching up: clients renew typing within
  seconds);
- ``tokens`` and ``invalidate``: caches drop what changed.

Catching up. A process notices it may have missed messages when it
(re)subscribes, when a writer's message's ``seq`` is not the next one, or
when a writer restarted (another ``run``). It then catches up from the
database, by position, without needing the records it missed:

1. while it catches up, messages that arrive are kept aside;
2. it reads each writer's last position message (a Redis key; a writer that
   never ran has none and counts from the database's position), then
   the database's highest allocated position F: every commit holding a
   position above F is published after the subscription began (it arrives
   here), and every commit published before the key was written lies at or
   below F (a message sent before the key but still on its way is applied
   when it arrives, without counting as a gap);
3. it restarts the fast path's memory as complete from F (a sync from below
   F reads the database), drops its caches, takes the key's position, then
   applies the messages kept aside;
4. it wakes every waiting sync: each reads the database from its token,
   finds what it missed and answers.

So nothing is lost and nothing repeats: a sync's answer always reads the
range from its token to "persisted up to", from memory only where memory is
known complete.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.replication.record import decode_committed
from homeserver.replication.redis import (
    SubscriberFactory,
    channel_name,
    command_connection,
    position_key,
)
from homeserver.storage.hub import Committed
from homeserver.storage.streams import ONLY_USER, PRESENCE, TO_DEVICE, current_stream_id

if TYPE_CHECKING:
    from homeserver.config import RedisConfig
    from homeserver.context import ServerContext
    from homeserver.edu.typing import TypingManager
    from homeserver.push.actions import PushActions
    from homeserver.replication.publisher import ReplicationPublisher
    from homeserver.replication.tracker import ReaderStreamTracker, WriterStreamTracker
    from homeserver.storage import Stores
    from homeserver.storage.database import Database
    from homeserver.sync.notifier import Notifier
    from homeserver.sync.recent import RecentActivity

logger = logging.getLogger(__name__)


class ReplicationFollower:
    """Applies the stream writers' replication messages (module docstring)."""

    def __init__(self, ctx: "ServerContext", redis: "RedisConfig", worker_name: str,
                 db: "Database", tracker: "ReaderStreamTracker | WriterStreamTracker",
                 recent: "RecentActivity", notifier: "Notifier", stores: "Stores",
                 push_actions: "PushActions", typing: "TypingManager",
                 writers: tuple[str, ...] = ("main",),
                 publisher: "ReplicationPublisher | None" = None) -> None:
        self.ctx = ctx
        self.db = db
        self.hub = db.hub
        self.tracker = tracker
        self.recent = recent
        self.notifier = notifier
        self.stores = stores
        self.push_actions = push_actions
        self.typing = typing
        self.channel = channel_name(ctx.hostname)
        self.name = worker_name
        # the writers this process follows (not itself)
        self.writers = tuple(w for w in writers if w != worker_name)
        # this process's own publisher: what it replays is not its to publish
        self.publisher = publisher
        self._redis_config = redis
        self._client_name = f"homeserver/{ctx.hostname}/{worker_name}"
        # what drops every cache the replication keeps true (server.py fills it)
        self.on_reset: list[Callable[[], None]] = []
        # cache name -> what drops the given keys (the "invalidate" messages)
        self.invalidators: dict[str, Callable[[list[Any]], None]] = {}
        self._redis: Any = None
        self._subscriber: SubscriberFactory | None = None
        # writer -> (run, last seq applied)
        self._runs: dict[str, tuple[str | None, int]] = {}
        self._resyncing = False
        self._buffer: list[dict[str, Any]] = []
        self._ready: defer.Deferred[None] = defer.Deferred()
        self.connected = False
        self.catch_ups = 0  # how many times it caught up from the database (tests)
        self.applied = 0

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe and return once this process knows where the stream is."""
        self._redis = command_connection(self._redis_config)
        self._subscriber = SubscriberFactory(
            self._redis_config, self.channel, self._client_name, self._on_subscribed,
            self._on_message, self._on_lost)
        self._subscriber.start(self.ctx.reactor)
        await self._ready

    async def stop(self) -> None:
        if self._subscriber is not None:
            await self._subscriber.disconnect()
        if self._redis is not None:
            await self._redis.disconnect()

    def _on_subscribed(self) -> None:
        logger.info("replication: subscribed to %s", self.channel)
        self.connected = True
        self._start_catch_up()

    def _on_lost(self) -> None:
        if self.connected:
            logger.warning("replication: lost the Redis subscription; catching up once back")
        self.connected = False

    # -- messages -------------------------------------------------------------------

    def _on_message(self, text: str) -> None:
        try:
            message = json.loads(text)
            run, seq = message["run"], message["seq"]
            if not isinstance(run, str) or not isinstance(seq, int):
                raise ValueError("bad run or seq")
        except (ValueError, KeyError, TypeError):
            logger.warning("replication: ignored a malformed message")
            return
        writer = message.get("w", "main")
        if writer not in self.writers:
            return  # our own, or a process that writes nothing we follow
        if self._resyncing:
            self._buffer.append(message)
            return
        last_run, last_seq = self._runs.get(writer, (None, 0))
        if run == last_run and seq <= last_seq:
            # sent before the position key this process caught up to, and
            # still on its way then: at or below the memory's floor
            self._apply(message)
            return
        if run != last_run or seq != last_seq + 1:
            logger.info("replication: missed messages of %s (run %s seq %d after %s %d)",
                        writer, run, seq, last_run, last_seq)
            self._buffer.append(message)
            self._start_catch_up()
            return
        self._runs[writer] = (run, seq)
        self._apply(message)

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        try:
            if kind == "commit":
                committed, verdicts = decode_committed(message["c"])
                self._apply_commit(committed, verdicts)
            elif kind == "position":
                self._advance(int(message["upto"]), str(message.get("w", "main")))
            elif kind == "typing":
                self.typing.mirror(str(message["room"]), [str(u) for u in message["users"]])
            elif kind == "tokens":
                self._after_commit(Committed((), (), {}, tokens_changed=True))
            elif kind == "invalidate":
                invalidate = self.invalidators.get(str(message["cache"]))
                if invalidate is not None:
                    invalidate(list(message["keys"]))
        except (KeyError, TypeError, ValueError):
            logger.exception("replication: could not apply a %s message", kind)

    def _apply_commit(self, committed: Committed,
                      verdicts: dict[str, dict[str, tuple[int, int]]]) -> None:
        self.applied += 1
        for event_id, found in verdicts.items():
            self.push_actions.remember_actions(event_id, found)
        if committed.positions:
            self.tracker.saw(max(committed.positions))
            replaying = self.publisher.replaying_commits if self.publisher else None
            if replaying is not None:
                replaying.add(id(committed))
            try:
                self.hub.committed_txn(committed)
            finally:
                if replaying is not None:
                    replaying.discard(id(committed))
        self._wake(committed)
        if self.hub.has_named(committed):
            self._after_commit(committed)

    def _after_commit(self, committed: Committed) -> None:
        if self.publisher is not None:
            self.publisher.replaying = True
        try:
            self.hub.after_commit(committed)
        finally:
            if self.publisher is not None:
                self.publisher.replaying = False

    def _advance(self, upto: int, writer: str) -> None:
        if self.tracker.advance(upto, writer):
            self.hub.persisted(self.tracker.persisted_upto)

    def _wake(self, committed: Committed) -> None:
        """Who the main process's handlers woke for this write, woken here."""
        notifier = self.notifier
        at_events = set()
        for event, pos in committed.events:
            at_events.add(pos)
            room_id = event.json.get("room_id")
            if isinstance(room_id, str):
                notifier.on_new_event(room_id, event.type, event.state_key, pos)
        for pos, scopes in committed.scopes.items():
            if pos in at_events:
                continue
            for room_id, user_id in scopes:
                if room_id is None:
                    continue
                if room_id == PRESENCE and user_id is not None:
                    self.ctx.run_in_background(self._wake_room_mates(user_id, pos))
                elif room_id == ONLY_USER or room_id.startswith(TO_DEVICE):
                    if user_id is not None:
                        notifier.notify_users([user_id], pos)
                else:
                    notifier.notify_room(room_id, pos, (user_id,) if user_id else ())

    async def _wake_room_mates(self, user_id: str, pos: int) -> None:
        users = await self.stores.rooms.get_room_mates(user_id)
        self.notifier.notify_users(users | {user_id}, pos, presence=True)

    # -- catching up from the database ------------------------------------------------

    def _start_catch_up(self) -> None:
        if self._resyncing:
            return
        self._resyncing = True
        self.ctx.run_in_background(self._catch_up())

    async def _catch_up(self) -> None:
        try:
            # the keys first, then the database's position: every commit
            # published before a key was written then lies at or below
            # the floor, so one still on its way here cannot be missed
            raws = {}
            for writer in self.writers:
                raws[writer] = await self._redis.get(position_key(self.ctx.hostname, writer))
            floor = await current_stream_id(self.db)
            devices = await self.stores.to_device.get_devices_with_messages()
        except Exception as e:
            # Redis or the database went away again: the next subscription
            # (or the next message, whose seq will not follow) tries again
            logger.warning("replication: catching up failed (%s); will retry", e)
            self._runs = {}
            self._resyncing = False
            return
        # from here on, nothing awaits: no message slips between the steps
        self.catch_ups += 1
        self.recent.restart(floor, devices)
        for reset in self.on_reset:
            reset()
        self._runs = {}
        for writer, raw in raws.items():
            if not raw:
                # never ran since this Redis began: nothing of its in flight
                # (a writer says its position before it takes any)
                self._advance(floor, writer)
                continue
            try:
                state = json.loads(raw)
                self._runs[writer] = (str(state["run"]), int(state["seq"]))
                self._advance(int(state["upto"]), writer)
            except (ValueError, KeyError, TypeError):
                logger.warning("replication: ignored a malformed position key of %s", writer)
        buffered, self._buffer = self._buffer, []
        for message in buffered:
            writer = message.get("w", "main")
            last_run, last_seq = self._runs.get(writer, (None, 0))
            if message["run"] != last_run:
                # the writer (re)started since the key was written
                self._runs[writer] = (message["run"], message["seq"])
            else:
                self._runs[writer] = (last_run, max(last_seq, message["seq"]))
            self._apply(message)
        self._resyncing = False
        if not self._ready.called:
            self._ready.callback(None)
        logger.info("replication: caught up from the database (memory from %d, "
                    "persisted up to %d)", floor, self.tracker.persisted_upto)
        # each waiting sync reads what it may have missed from the database
        self.notifier.wake_everyone()
