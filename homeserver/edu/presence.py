"""Presence: online, unavailable or offline, a status message, and how
recently the user was active.

The state of each local user the server has seen is kept in memory
(``_UserState``) and is the truth for that user; every change a client must
hear about (presence, status message, ``currently_active``) is written to the
``presence`` table with a new global stream position, then the users who
share a room with the user (and the user) are woken. The last active time
moves at every sync and message without a new position: clients see
``currently_active`` instead, and the time is persisted at most once a
minute (``LAST_ACTIVE_GRANULARITY_MS``) or with the next change.

The rules, as Synapse's:

- a /sync with ``set_presence`` absent or ``online``, a PUT of ``online``,
  or a message sent: online, currently active, last active now;
- a /sync with ``set_presence=unavailable``: unavailable; ``offline``: no
  effect at all (the client is not counted as syncing);
- ``currently_active`` ends a minute after the last activity;
- online becomes unavailable after 5 minutes without activity
  (``IDLE_TIMEOUT_MS``);
- online or unavailable becomes offline 30 seconds after the user's last sync
  ended (``SYNC_ONLINE_TIMEOUT_MS``). ``user_syncing`` sees a sync begin, not
  end, so each call gives the user ``LONG_POLL_ALLOWANCE_MS`` more on top, so
  a user long-polling does not flicker offline. A caller that also calls
  ``sync_ended`` when the request (or WebSocket) finishes gets Synapse's exact
  rule: never offline while a sync is in progress, offline 30 seconds after
  the last one ends. A user who sets their presence or sends a message
  without syncing goes offline 30 seconds later, as with Synapse.

One timer per user (``ctx.clock``) fires at the next moment one of these
rules could apply, re-evaluates them and re-arms itself. Writes of one user
are serialised by a per-user lock, and each writes the newest state, so the
row never goes back to an older one. At start, the users a previous run left
online or unavailable get the 30 seconds to sync again.

With ``presence.enabled: false`` (Synapse's key) nothing is tracked: setting
is accepted and ignored, everyone reads as offline, /sync gets no presence.

Over federation (``presence.federation``, on by default): every change of a
local user that is written is also pushed, as an ``m.presence`` EDU, to the
servers of the users who share a room with them (``EduHandler.send_presence``);
updates from other servers (``on_remote_presence``) go into the same table,
for users who share a room with a local user, and wake those local users.
As between Synapse servers, presence over federation is kept alive by
re-sending: a local user who is not offline and whose presence has not gone
out for ``FEDERATION_PING_MS`` (25 minutes) is pushed again, and a remote
user not offline whose server has said nothing of them for
``FEDERATION_TIMEOUT_MS`` (30 minutes) is set offline here (their server
may have gone away). A sweep every ``FEDERATION_SWEEP_MS`` does both.
A join (``on_commit``, from the write hub) starts a shared room with both
sides' presence: our joining user's goes to the room's other servers, and
our users' in the room go to the server of a remote user who joined. That
may arrive before our own join is done: presence of users who share no room
with us is held a minute (``EARLY_PRESENCE_MS``) for a join of ours to take.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import DeferredLock

from homeserver.errors import forbidden, not_found
from homeserver.storage.presence import PresenceRow

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.edus import EduHandler
    from homeserver.storage import Stores
    from homeserver.storage.hub import Committed
    from homeserver.storage.streams import StreamTracker
    from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

ONLINE = "online"
UNAVAILABLE = "unavailable"
OFFLINE = "offline"
PRESENCE_STATES = (ONLINE, UNAVAILABLE, OFFLINE)

IDLE_TIMEOUT_MS = 5 * 60_000
LAST_ACTIVE_GRANULARITY_MS = 60_000
SYNC_ONLINE_TIMEOUT_MS = 30_000
LONG_POLL_ALLOWANCE_MS = 90_000
FEDERATION_PING_MS = 25 * 60_000
FEDERATION_TIMEOUT_MS = 30 * 60_000
FEDERATION_SWEEP_MS = 60_000
# presence that arrived before the room it is for (our join still under
# way): kept this long, for at most this many users
EARLY_PRESENCE_MS = 60_000
EARLY_PRESENCE_HELD = 1_000


@dataclass(slots=True)
class _UserState:
    presence: str = OFFLINE
    status_msg: str | None = None
    last_active_ts: int = 0
    currently_active: bool = False
    # (presence, status_msg, currently_active) as the row holds them; None: no row
    persisted: tuple[str, str | None, bool] | None = None
    persisted_last_active_ts: int = 0
    # when the user goes offline unless they sync again (0: no deadline)
    offline_at_ms: int = 0
    syncs_in_flight: int = 0
    timer: Any = None
    timer_at_ms: int = 0
    # when its presence last went out over federation
    federation_sent_ms: int = 0

    @classmethod
    def from_row(cls, row: PresenceRow | None) -> "_UserState":
        if row is None:
            return cls()
        return cls(row.presence, row.status_msg, row.last_active_ts, row.currently_active,
                   (row.presence, row.status_msg, row.currently_active), row.last_active_ts)

    def visible(self) -> tuple[str, str | None, bool]:
        return self.presence, self.status_msg, self.currently_active


def mark_active(state: _UserState, now_ms: int) -> None:
    state.presence = ONLINE
    state.last_active_ts = now_ms
    state.currently_active = True


def apply_timeouts(state: _UserState, now_ms: int, syncing: bool = False) -> None:
    """The idle and offline rules, at ``now_ms``; ``syncing``: a sync of the
    user is known to be in progress, so they do not go offline."""
    if state.presence == OFFLINE:
        return
    if syncing and state.offline_at_ms and now_ms >= state.offline_at_ms:
        state.offline_at_ms = now_ms + SYNC_ONLINE_TIMEOUT_MS
    elif state.offline_at_ms and now_ms >= state.offline_at_ms:
        state.presence = OFFLINE
        state.currently_active = False
        state.offline_at_ms = 0
        state.syncs_in_flight = 0
        return
    idle_for = now_ms - state.last_active_ts
    if state.presence == ONLINE and idle_for >= IDLE_TIMEOUT_MS:
        state.presence = UNAVAILABLE
    if state.currently_active and idle_for >= LAST_ACTIVE_GRANULARITY_MS:
        state.currently_active = False


def next_check_ms(state: _UserState) -> int | None:
    """When ``apply_timeouts`` could next change something (None: never)."""
    if state.presence == OFFLINE:
        return None
    times = []
    if state.offline_at_ms:
        times.append(state.offline_at_ms)
    if state.presence == ONLINE:
        times.append(state.last_active_ts + IDLE_TIMEOUT_MS)
    if state.currently_active:
        times.append(state.last_active_ts + LAST_ACTIVE_GRANULARITY_MS)
    return min(times) if times else None


def format_presence(presence: str, status_msg: str | None, last_active_ts: int,
                    currently_active: bool, now_ms: int) -> dict[str, Any]:
    """The content of an m.presence event (and of GET .../status)."""
    content: dict[str, Any] = {"presence": presence}
    if last_active_ts:
        content["last_active_ago"] = max(0, now_ms - last_active_ts)
    if status_msg:
        content["status_msg"] = status_msg
    if presence == ONLINE:
        content["currently_active"] = currently_active
    return content


class PresenceHandler:
    # pushes our users' changes to other servers; set by HomeServer._wire_late
    # (it hands remote presence back to us)
    edu_handler: "EduHandler"

    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 stream_tracker: "StreamTracker", notifier: "Notifier") -> None:
        self.ctx = ctx
        self.stores = stores
        self.store = stores.presence
        # where the global stream is: the position a presence write may take
        self.stream_tracker = stream_tracker
        self.notifier = notifier
        self.enabled = bool(ctx.config.presence["enabled"])
        # False in a reader process: presence is the main process's; a
        # reader tells it of each sync's start and end through report_sync
        # (user, set_presence, started) instead (docs/scale-out.md)
        self.sync_tracking = True
        self.report_sync: Callable[[str, str | None, bool], None] | None = None
        # local users seen since start (offline ones too: a few fields each)
        self._states: dict[str, _UserState] = {}
        self._write_locks: dict[str, DeferredLock] = {}
        self._started = False
        # whether sync_ended is called: only then do in-flight counts mean anything
        self._sync_ends_reported = False
        self._start_lock = DeferredLock()
        self._stopped = False
        # The highest stream position of a presence write this run (None:
        # none yet, taken as everything up to the position at first read),
        # and writes still running: a sync whose range starts at or after
        # the first, while none runs, has no presence to read.
        self._last_write_pos: int | None = None
        self._writes_running = 0
        # remote users not offline -> when their server last spoke of them
        self._remote_heard: dict[str, int] = {}
        # presence of remote users who share no room with us yet: user ->
        # (received ms, update), taken when one of our users joins their room
        self._early: OrderedDict[str, tuple[int, tuple[str, str | None, int, bool]]] = \
            OrderedDict()
        self._sweep_timer: Any = None

    async def start(self) -> None:
        """At server start: remote users a previous run saw online get the
        full timeout from now; the federation sweep begins."""
        if not self.enabled or not self.ctx.config.presence["federation"]:
            return
        now = self.ctx.now_ms()
        suffix = ":" + self.ctx.hostname
        for row in await self.store.get_not_offline(None):
            if not row.user_id.endswith(suffix):
                self._remote_heard.setdefault(row.user_id, now)
        self._sweep_timer = self.ctx.clock.callLater(FEDERATION_SWEEP_MS / 1000, self._sweep)

    def stop(self) -> None:
        """The server is stopping: no timer may fire against a closed database."""
        for state in self._states.values():
            if state.timer is not None and state.timer.active():
                state.timer.cancel()
            state.timer = None
        if self._sweep_timer is not None and self._sweep_timer.active():
            self._sweep_timer.cancel()
        self._sweep_timer = None
        self._stopped = True

    def _sweep(self) -> None:
        self._sweep_timer = None
        if self._stopped:
            return
        self.ctx.run_in_background(self._sweep_now())
        self._sweep_timer = self.ctx.clock.callLater(FEDERATION_SWEEP_MS / 1000, self._sweep)

    async def _sweep_now(self) -> None:
        now = self.ctx.now_ms()
        for user_id, state in list(self._states.items()):
            if state.presence != OFFLINE and state.persisted is not None \
                    and now - state.federation_sent_ms >= FEDERATION_PING_MS:
                try:
                    await self._send_over_federation(user_id, state)
                except Exception:
                    logger.exception("presence: could not re-send %s", user_id)
        for user_id, heard in list(self._remote_heard.items()):
            if now - heard < FEDERATION_TIMEOUT_MS:
                continue
            self._remote_heard.pop(user_id, None)
            try:
                await self._remote_timed_out(user_id)
            except Exception:
                logger.exception("presence: could not time out %s", user_id)

    async def _send_over_federation(self, user_id: str, state: _UserState) -> None:
        state.federation_sent_ms = self.ctx.now_ms()
        visible = state.visible()
        mates = await self.stores.rooms.get_room_mates(user_id)
        self.edu_handler.send_presence(
            user_id, mates, format_presence(visible[0], visible[1], state.last_active_ts,
                                            visible[2], self.ctx.now_ms()))

    # -- joins: presence for servers newly sharing a room --

    def on_commit(self, committed: "Committed") -> None:
        """Database thread: hands the joins among the committed events to
        the reactor (``_share_on_join``)."""
        if not self.enabled or not self.ctx.config.presence["federation"]:
            return
        joins = [(e.room_id, e.state_key) for e, _ in committed.events
                 if e.type == "m.room.member" and e.state_key is not None
                 and e.membership == "join"]
        if joins:
            self.ctx.reactor.callFromThread(self._on_joins, joins, self.ctx.now_ms())

    def _on_joins(self, joins: list[tuple[str, str]], joined_at: int) -> None:
        for room_id, user_id in joins:
            self.ctx.run_in_background(self._share_on_join(room_id, user_id, joined_at))

    async def _share_on_join(self, room_id: str, user_id: str, joined_at: int) -> None:
        """As Synapse: a server whose user just joined a room hears the
        presence of our users in it, and our user who just joined is
        announced to the room's other servers, so a new federated chat
        starts with both sides' presence rather than at the next change
        (which may be 25 minutes away). Offline users are not sent, nor
        those whose presence is being or was sent since the join (to their
        room mates then, the newcomers among them)."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            return
        members = await self.stores.rooms.get_members(room.room_nid)
        if self.ctx.is_mine(user_id):
            senders, to = [user_id], list(members)
            if self._early:
                await self._take_early(m for m in members if not self.ctx.is_mine(m))
        else:
            senders = [m for m in members if self.ctx.is_mine(m)]
            to = [user_id]
        for sender in senders:
            state = await self._get_state(sender)
            if state.presence == OFFLINE or state.persisted != state.visible() \
                    or state.federation_sent_ms >= joined_at:
                # offline; or a write under way, which sends to the room
                # mates it reads after the join; or one that did so
                continue
            visible = state.visible()
            self.edu_handler.send_presence(
                sender, to, format_presence(visible[0], visible[1], state.last_active_ts,
                                            visible[2], self.ctx.now_ms()))

    def _hold_early(self, user_id: str, update: tuple[str, str | None, int, bool]) -> None:
        now = self.ctx.now_ms()
        self._early[user_id] = (now, update)
        self._early.move_to_end(user_id)
        while self._early and (len(self._early) > EARLY_PRESENCE_HELD
                               or now - next(iter(self._early.values()))[0] > EARLY_PRESENCE_MS):
            self._early.popitem(last=False)

    async def _take_early(self, members: Iterable[str]) -> None:
        """Presence held for ``members`` (our user just joined their room)."""
        now = self.ctx.now_ms()
        for member in members:
            held = self._early.pop(member, None)
            if held is None or now - held[0] > EARLY_PRESENCE_MS:
                continue
            presence, status_msg, last_active_ago, currently_active = held[1]
            await self.on_remote_presence(member, presence, status_msg,
                                          last_active_ago + now - held[0], currently_active)

    async def _remote_timed_out(self, user_id: str) -> None:
        """Nothing heard of a remote user for the timeout: offline here."""
        lock = self._write_locks.get(user_id)
        if lock is None:
            lock = self._write_locks[user_id] = DeferredLock()
        async with lock:
            if user_id in self._remote_heard:
                return  # their server spoke meanwhile
            row = await self.store.get_presence(user_id)
            if row is None or row.presence == OFFLINE:
                return
            self._writes_running += 1
            try:
                stream_id = await self.store.set_presence(user_id, OFFLINE, row.status_msg,
                                                          row.last_active_ts, False)
            finally:
                self._writes_running -= 1
            self._last_write_pos = max(self._last_write_pos or 0, stream_id)
        if not lock.locked and not lock.waiting:
            self._write_locks.pop(user_id, None)
        mates = await self.stores.rooms.get_room_mates(user_id)
        local = {u for u in mates if self.ctx.is_mine(u)}
        self.notifier.notify_users(local, stream_id, presence=True)

    # -- what clients and other handlers call -----------------------------------

    async def user_syncing(self, user_id: str, set_presence: str | None) -> None:
        """A /sync request of ``user_id`` began (call at every request)."""
        if not self.enabled or set_presence == OFFLINE or not self.ctx.is_mine(user_id):
            return
        if not self.sync_tracking:
            if self.report_sync is not None:
                self.report_sync(user_id, set_presence, True)
            return
        state = await self._get_state(user_id)
        now = self.ctx.now_ms()
        before = state.visible()
        state.syncs_in_flight += 1
        state.offline_at_ms = max(state.offline_at_ms,
                                  now + SYNC_ONLINE_TIMEOUT_MS + LONG_POLL_ALLOWANCE_MS)
        if set_presence == UNAVAILABLE:
            state.presence = UNAVAILABLE
            state.currently_active = False
        else:
            mark_active(state, now)
        await self._changed(user_id, state, before, now)

    def sync_ended(self, user_id: str, set_presence: str | None) -> None:
        """Optional: a sync request (or connection) that ``user_syncing`` was
        told about finished (same arguments). Once the server reports ends, a
        user with a sync in progress never goes offline, and goes offline
        exactly ``SYNC_ONLINE_TIMEOUT_MS`` after their last one ends."""
        if not self.enabled or set_presence == OFFLINE:
            return  # user_syncing did not count it
        if not self.sync_tracking:
            if self.report_sync is not None and self.ctx.is_mine(user_id):
                self.report_sync(user_id, set_presence, False)
            return
        self._sync_ends_reported = True
        state = self._states.get(user_id)
        if state is None or state.syncs_in_flight <= 0:
            return
        state.syncs_in_flight -= 1
        if state.syncs_in_flight == 0 and state.presence != OFFLINE:
            now = self.ctx.now_ms()
            state.offline_at_ms = now + SYNC_ONLINE_TIMEOUT_MS
            self._arm(user_id, state, now)

    async def user_activity(self, user_id: str) -> None:
        """``user_id`` did something (sent a message): online and currently active."""
        if not self.enabled or not self.ctx.is_mine(user_id):
            return
        state = await self._get_state(user_id)
        now = self.ctx.now_ms()
        before = state.visible()
        mark_active(state, now)
        state.offline_at_ms = max(state.offline_at_ms, now + SYNC_ONLINE_TIMEOUT_MS)
        await self._changed(user_id, state, before, now)

    async def set_status(self, user_id: str, presence: str, status_msg: str | None) -> None:
        """PUT .../presence/{userId}/status: the user sets their own presence."""
        if not self.enabled:
            return
        state = await self._get_state(user_id)
        now = self.ctx.now_ms()
        before = state.visible()
        if presence == ONLINE:
            mark_active(state, now)
        else:
            state.presence = presence
            state.currently_active = False
        state.status_msg = status_msg
        if presence != OFFLINE:
            state.offline_at_ms = max(state.offline_at_ms, now + SYNC_ONLINE_TIMEOUT_MS)
        await self._changed(user_id, state, before, now)

    async def get_status(self, requester_id: str, user_id: str) -> dict[str, Any]:
        """GET .../presence/{userId}/status: visible to the user and to the users
        who share a joined room with them (403 otherwise)."""
        if not self.enabled:
            return {"presence": OFFLINE}
        if user_id != requester_id:
            if self.ctx.is_mine(user_id) and await self.stores.users.get_user(user_id) is None:
                raise not_found(f"Unknown user {user_id}")
            if not await self.stores.rooms.get_room_mates(requester_id, [user_id]):
                raise forbidden("You are not allowed to see their presence")
        now = self.ctx.now_ms()
        await self._ensure_started()
        state = self._states.get(user_id)
        if state is not None:
            return format_presence(state.presence, state.status_msg, state.last_active_ts,
                                   state.currently_active, now)
        row = await self.store.get_presence(user_id)
        if row is None:
            return {"presence": OFFLINE}
        return format_presence(row.presence, row.status_msg, row.last_active_ts,
                               row.currently_active, now)

    async def get_presence_events(self, user_id: str, since: int | None,
                                  until: int, newly_met: Iterable[str] = (),
                                  ) -> list[dict[str, Any]]:
        """The m.presence events /sync sends ``user_id``: of the users sharing a
        joined room with them (and their own) whose presence changed at global
        positions in (since, until]; with ``since`` None, the presence of all of
        them that are not offline (or are offline with a status message).

        ``newly_met`` are users who joined a room of ``user_id`` in the range:
        their presence comes too, changed or not (offline when they never set
        one), as Synapse sends it, since the client has never seen it."""
        if not self.enabled:
            return []
        events = await self._presence_events(user_id, since, until)
        extra = sorted(set(newly_met) - {user_id} - {e["sender"] for e in events})
        rows = await self.store.get_presence_of(extra) if extra else {}
        now = self.ctx.now_ms()
        for other in extra:
            row = rows.get(other)
            content = (format_presence("offline", None, 0, False, now) if row is None
                       else self._format_row(row, now))
            events.append({"type": "m.presence", "sender": other, "content": content})
        return events

    async def _presence_events(self, user_id: str, since: int | None,
                               until: int) -> list[dict[str, Any]]:
        if self._last_write_pos is None:
            self._last_write_pos = self.stream_tracker.max_allocated
        if since is not None and since >= self._last_write_pos and not self._writes_running:
            return []
        if since is None:
            rows = await self.store.get_visible_presence(user_id, until)
        elif since >= until:
            return []
        else:
            rows = await self.store.get_presence_changes(user_id, since, until)
        return self._events_of_rows(rows)

    async def get_presence_events_of(self, user_ids: list[str], since: int | None,
                                     until: int) -> list[dict[str, Any]]:
        """The m.presence events of ``user_ids`` (whoever asks: the members of
        a room read by a non-member, which the old ``/events`` and room
        ``initialSync`` give), as ``get_presence_events`` shapes them."""
        if not self.enabled or (since is not None and since >= until):
            return []
        return self._events_of_rows(await self.store.get_presence_changes_of(
            user_ids, since, until))

    def _events_of_rows(self, rows: list[PresenceRow]) -> list[dict[str, Any]]:
        now = self.ctx.now_ms()
        return [{"type": "m.presence", "sender": row.user_id,
                 "content": self._format_row(row, now)} for row in rows]

    def _format_row(self, row: PresenceRow, now: int) -> dict[str, Any]:
        last_active = row.last_active_ts
        state = self._states.get(row.user_id)
        if state is not None:
            # the time in memory is newer than the row's (persisted once a minute)
            last_active = max(last_active, state.last_active_ts)
        return format_presence(row.presence, row.status_msg, last_active,
                               row.currently_active, now)

    # -- state, timers and writes ---------------------------------------------

    async def _ensure_started(self) -> None:
        """Once per run: users a previous run left online must sync again."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            now = self.ctx.now_ms()
            for row in await self.store.get_not_offline(self.ctx.hostname):
                if row.user_id in self._states:
                    continue
                state = self._states[row.user_id] = _UserState.from_row(row)
                state.offline_at_ms = now + SYNC_ONLINE_TIMEOUT_MS
                self._arm(row.user_id, state, now)
            self._started = True

    async def _get_state(self, user_id: str) -> _UserState:
        await self._ensure_started()
        state = self._states.get(user_id)
        if state is not None:
            return state
        row = await self.store.get_presence(user_id)
        # another request may have loaded it meanwhile: keep theirs
        return self._states.setdefault(user_id, _UserState.from_row(row))

    async def _changed(self, user_id: str, state: _UserState,
                       before: tuple[str, str | None, bool], now: int) -> None:
        """After a change to ``state``: re-arm its timer and write what must be."""
        self._arm(user_id, state, now)
        if state.visible() != before or state.persisted is None:
            await self._write(user_id, state)
        elif state.last_active_ts - state.persisted_last_active_ts >= LAST_ACTIVE_GRANULARITY_MS:
            state.persisted_last_active_ts = state.last_active_ts
            self.ctx.run_in_background(self.store.set_last_active(user_id, state.last_active_ts))

    def _arm(self, user_id: str, state: _UserState, now: int) -> None:
        if self._stopped:
            return
        at = next_check_ms(state)
        timer = state.timer
        if timer is not None and timer.active():
            if at is not None and state.timer_at_ms <= at:
                return  # it fires first and re-arms itself then
            timer.cancel()
        state.timer = None
        if at is None:
            return
        state.timer_at_ms = at
        state.timer = self.ctx.clock.callLater(max(0, at - now) / 1000, self._on_timer, user_id)

    def _on_timer(self, user_id: str) -> None:
        state = self._states.get(user_id)
        if state is None:
            return
        state.timer = None
        now = self.ctx.now_ms()
        before = state.visible()
        apply_timeouts(state, now, self._sync_ends_reported and state.syncs_in_flight > 0)
        self._arm(user_id, state, now)
        if state.visible() != before:
            self.ctx.run_in_background(self._write(user_id, state))

    async def _write(self, user_id: str, state: _UserState) -> None:
        """Persist ``state`` as it is when this user's earlier writes are done,
        then wake whoever must hear about it."""
        lock = self._write_locks.get(user_id)
        if lock is None:
            lock = self._write_locks[user_id] = DeferredLock()
        async with lock:
            visible = state.visible()
            if visible == state.persisted:
                return  # an earlier queued write stored this state already
            last_active = state.last_active_ts
            self._writes_running += 1
            try:
                stream_id = await self.store.set_presence(user_id, visible[0], visible[1],
                                                          last_active, visible[2])
            finally:
                self._writes_running -= 1
            self._last_write_pos = max(self._last_write_pos or 0, stream_id)
            state.persisted = visible
            state.persisted_last_active_ts = last_active
        if not lock.locked and not lock.waiting:
            self._write_locks.pop(user_id, None)
        users = await self.stores.rooms.get_room_mates(user_id)
        users.add(user_id)
        self.notifier.notify_users(users, stream_id, presence=True)
        state.federation_sent_ms = self.ctx.now_ms()
        self.edu_handler.send_presence(
            user_id, users, format_presence(visible[0], visible[1], last_active, visible[2],
                                            self.ctx.now_ms()))

    # -- users of other servers -------------------------------------------------

    async def on_remote_presence(self, user_id: str, presence: str, status_msg: str | None,
                                 last_active_ago: int, currently_active: bool) -> None:
        """An m.presence update from ``user_id``'s server (checked by
        ``federation/edus.py``): stored like a local user's, so the local users
        who share a room with them see it in /sync. Users who share no room
        with a local user are not stored: nobody here may see them."""
        if not self.enabled or not self.ctx.config.presence["federation"] \
                or self.ctx.is_mine(user_id):
            return
        mates = await self.stores.rooms.get_room_mates(user_id)
        local = {u for u in mates if self.ctx.is_mine(u)}
        if not local:
            # perhaps early: a room's server sends its users' presence as it
            # sees our user's join, maybe before we have finished joining
            logger.debug("holding presence of %s: shares no room with us yet", user_id)
            self._hold_early(user_id, (presence, status_msg, last_active_ago, currently_active))
            return
        last_active = max(0, self.ctx.now_ms() - last_active_ago)
        if presence != ONLINE:
            currently_active = False
        if presence == OFFLINE:
            self._remote_heard.pop(user_id, None)
        else:
            self._remote_heard[user_id] = self.ctx.now_ms()
        lock = self._write_locks.get(user_id)
        if lock is None:
            lock = self._write_locks[user_id] = DeferredLock()
        async with lock:
            row = await self.store.get_presence(user_id)
            if row is not None and (row.presence, row.status_msg, row.currently_active) \
                    == (presence, status_msg, currently_active):
                # nothing a client must hear about: only the time moves
                if last_active > row.last_active_ts:
                    await self.store.set_last_active(user_id, last_active)
                stream_id = None
            else:
                self._writes_running += 1
                try:
                    stream_id = await self.store.set_presence(
                        user_id, presence, status_msg, last_active, currently_active)
                finally:
                    self._writes_running -= 1
                self._last_write_pos = max(self._last_write_pos or 0, stream_id)
        if not lock.locked and not lock.waiting:
            self._write_locks.pop(user_id, None)
        if stream_id is not None:
            self.notifier.notify_users(local, stream_id, presence=True)
