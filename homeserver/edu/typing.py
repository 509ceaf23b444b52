"""Typing notifications, in memory.

Who is typing where lives only in this process: a room's typing set maps
each typing user to the timer that stops them (the client's timeout, capped
at two minutes). A user stops typing when they say so, when the timer fires,
or when they leave the room (``left_room``). Sending a message does not
stop them: clients say so themselves, as Synapse expects.

Users of other servers type here too (``set_remote_typing``, from their
server's m.typing EDUs, with a fixed timeout since the EDU carries none).
Every start, renewal and stop of a local user is sent to the other servers
in the room (``EduHandler.send_typing``); a remote user's never is.

Typing has its own stream, separate from the global one: a counter that
starts at 0 at every run of the server (the sync token carries the run's
epoch, ``ctx.epoch``, so a token of an earlier run reads as 0) and goes up by
one at every change of any room's typing set. Each room remembers the
position of its last change; ``get_typing`` answers "which of these rooms
changed after position X" by walking the rooms in order of last change,
newest first, and stopping at X: the cost grows with the rooms that changed,
not with every room that ever had a typist. A room whose set became empty
stays in that order (clients need the empty list to clear their display)
until there are too many such rooms; then the oldest are forgotten and a
reader from before the forgotten positions gets an empty list for each of
its rooms without a record.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from homeserver.errors import forbidden

if TYPE_CHECKING:
    from homeserver.admin.user_moderation import UserModeration
    from homeserver.appservice.scheduler import AppServiceScheduler
    from homeserver.context import ServerContext
    from homeserver.federation.edus import EduHandler
    from homeserver.storage.rooms import RoomStore
    from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

# A client may not keep a user typing for longer than this without renewing.
MAX_TYPING_TIMEOUT_MS = 120_000

# Rooms with nobody typing whose last change is remembered; past this the
# oldest are forgotten.
MAX_IDLE_ROOMS = 10_000


class TypingManager:
    # tells the other servers in the room; set by HomeServer._wire_late (it
    # hands their users' typing back to us)
    edu_handler: "EduHandler"
    # application services with receive_ephemeral hear of changes: set by
    # HomeServer._wire_late (None: no services)
    app_services: "AppServiceScheduler | None" = None
    # a shadow-banned user's typing reaches nobody: set by HomeServer._wire_late
    user_moderation: "UserModeration | None" = None

    def __init__(self, ctx: "ServerContext", rooms: "RoomStore", notifier: "Notifier") -> None:
        self.ctx = ctx
        self.rooms = rooms
        self.notifier = notifier
        self._position = 0
        # room ID -> user ID -> the timer that stops them typing
        self._typing: dict[str, dict[str, Any]] = {}
        # room ID -> position of its last change, oldest change first
        self._changed: OrderedDict[str, int] = OrderedDict()
        # changes at or below this position may have been forgotten
        self._forgotten_upto = 0
        # told each room's typists after every change (the replication
        # publisher, with several processes; set by HomeServer)
        self.on_change: Callable[[str, list[str]], None] | None = None

    # -- writers -------------------------------------------------------------

    async def set_typing(self, user_id: str, room_id: str, typing: bool,
                         timeout_ms: int) -> None:
        """Start (for ``timeout_ms``, capped) or stop ``user_id`` typing in the room.

        Raises 403 M_FORBIDDEN unless the user is joined to the room.
        """
        if self.user_moderation is not None and self.user_moderation.is_shadow_banned(user_id):
            return  # seems to succeed (admin/user_moderation.py)
        room = await self.rooms.get_room(room_id)
        membership = (await self.rooms.get_membership(user_id, room.room_nid)
                      if room is not None else None)
        if membership is None or membership.membership != "join":
            raise forbidden(f"User {user_id} not in room {room_id}")
        self._set(user_id, room_id, typing, timeout_ms)
        if typing and self.ctx.is_mine(user_id):
            # Every renewal goes out too: the other servers time remote
            # typists out on their own (30 s) and the client renews sooner.
            self.edu_handler.send_typing(room_id, user_id, True)

    def set_remote_typing(self, user_id: str, room_id: str, typing: bool,
                          timeout_ms: int) -> None:
        """A user of another server started (for ``timeout_ms``: the m.typing
        EDU has none, the caller picks it) or stopped typing. The caller
        (``federation/edus.py``) has checked their server and membership."""
        self._set(user_id, room_id, typing, timeout_ms)

    def _set(self, user_id: str, room_id: str, typing: bool, timeout_ms: int) -> None:
        if not typing:
            self._stop(user_id, room_id)
            return
        delay = max(0, min(timeout_ms, MAX_TYPING_TIMEOUT_MS)) / 1000
        users = self._typing.setdefault(room_id, {})
        timer = users.get(user_id)
        if timer is not None and timer.active():
            # already typing: only the deadline moves, nobody here needs telling
            timer.reset(delay)
            return
        users[user_id] = self.ctx.clock.callLater(delay, self._expire, user_id, room_id)
        self._changed_room(room_id)

    def left_room(self, user_id: str, room_id: str) -> None:
        """``user_id`` is no longer joined to the room: they are no longer typing."""
        self._stop(user_id, room_id)

    def _expire(self, user_id: str, room_id: str) -> None:
        users = self._typing.get(room_id)
        if users is not None and user_id in users:
            del users[user_id]
            self._room_emptied(room_id)
            self._changed_room(room_id)
            self._tell_servers_stopped(user_id, room_id)

    def _stop(self, user_id: str, room_id: str) -> None:
        users = self._typing.get(room_id)
        if users is None:
            return
        timer = users.pop(user_id, None)
        if timer is None:
            return
        if timer.active():
            timer.cancel()
        self._room_emptied(room_id)
        self._changed_room(room_id)
        self._tell_servers_stopped(user_id, room_id)

    def _tell_servers_stopped(self, user_id: str, room_id: str) -> None:
        if self.ctx.is_mine(user_id):
            self.edu_handler.send_typing(room_id, user_id, False)

    def _room_emptied(self, room_id: str) -> None:
        if not self._typing.get(room_id, True):
            del self._typing[room_id]

    def _changed_room(self, room_id: str) -> None:
        self._position += 1
        self._changed[room_id] = self._position
        self._changed.move_to_end(room_id)
        if len(self._changed) > len(self._typing) + MAX_IDLE_ROOMS:
            self._forget_idle_rooms()
        self.notifier.notify_room(room_id, None)
        if self.on_change is not None:
            self.on_change(room_id, sorted(self._typing.get(room_id, ())))
        if self.app_services is not None:
            self.app_services.on_typing(room_id, sorted(self._typing.get(room_id, ())))

    def _forget_idle_rooms(self) -> None:
        """Drop the oldest half of the records of rooms where nobody types."""
        idle = [r for r in self._changed if r not in self._typing]
        for room_id in idle[:len(idle) // 2 + 1]:
            self._forgotten_upto = max(self._forgotten_upto, self._changed.pop(room_id))

    # -- a reader process (docs/scale-out.md) --------------------------------------

    def mirror(self, room_id: str, user_ids: list[str]) -> None:
        """The main process's typists of the room changed to ``user_ids``.
        No timers here: the main process stops them and says so."""
        if user_ids:
            self._typing[room_id] = dict.fromkeys(user_ids)
        else:
            self._typing.pop(room_id, None)
        self._changed_room(room_id)

    def forget_all_typing(self) -> None:
        """Nobody types, as far as this process knows (it may have missed
        changes); the main process's next changes and renewals say again."""
        for room_id in list(self._typing):
            del self._typing[room_id]
            self._changed_room(room_id)

    # -- readers -------------------------------------------------------------

    def current_position(self) -> int:
        return self._position

    def rooms_changed_since(self, since_pos: int) -> list[str]:
        """Every room (whoever is in it) whose typing set changed after
        ``since_pos`` (0: every room with a remembered change, as Synapse's
        initial sync lists every room whose typing changed since it
        started). Rooms whose record was forgotten are not listed."""
        if since_pos >= self._position:
            return []
        if since_pos <= 0:
            return list(self._changed)
        changed = []
        for room_id in reversed(self._changed):
            if self._changed[room_id] <= since_pos:
                break
            changed.append(room_id)
        return changed

    def get_typing(self, room_ids: Iterable[str], since_pos: int) -> dict[str, list[str]]:
        """Room ID -> sorted user IDs typing now, for those of ``room_ids`` whose
        typing set changed after ``since_pos`` (0: the rooms with a
        remembered change). The list may be empty: the client must clear
        its display (a client that stopped typing just before another's
        initial sync is seen to stop there too, as on Synapse)."""
        if since_pos >= self._position:
            return {}
        wanted = room_ids if isinstance(room_ids, (set, frozenset, dict)) else set(room_ids)
        result: dict[str, list[str]] = {}
        if since_pos <= 0:
            if len(self._changed) < len(wanted):
                return {r: sorted(self._typing.get(r, ())) for r in self._changed
                        if r in wanted}
            return {r: sorted(self._typing.get(r, ())) for r in wanted if r in self._changed}
        if since_pos < self._forgotten_upto:
            # changes may have been forgotten: tell every room its current set
            return {room_id: sorted(self._typing.get(room_id, ())) for room_id in wanted}
        for room_id in reversed(self._changed):
            if self._changed[room_id] <= since_pos:
                break
            if room_id in wanted:
                result[room_id] = sorted(self._typing.get(room_id, ()))
        return result
