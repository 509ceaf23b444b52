"""The API before /sync: ``GET /events``, ``GET /initialSync`` and
``GET /rooms/{roomId}/initialSync``, as views over the same stream.

The spec deprecates them but keeps them, and Synapse and older clients (and
room previews: ``/events?room_id=`` is how a guest or any non-member follows
a ``world_readable`` room) still use them. Nothing here has a store or a
notion of its own: tokens are sync tokens (``sync/tokens.py``), timelines
are read with ``RoomReader.paginate`` under the same history visibility
rules as ``/messages``, state with ``RoomReader.get_state``, presence,
receipts, typing and account data from the stores and services ``/sync``
reads, and a long-poll waits on the same notifier.

``/events`` (``from``, ``timeout``, ``limit``, ``room_id``): what happened
after ``from`` (no ``from``: from now, so the first call only gives a
token), as a flat ``chunk`` of events, each with its ``room_id``: the
timeline events of the user's rooms (or of ``room_id`` alone, which the
user must be allowed to read: joined, departed up to the leave, or
``world_readable``), in stream order, at most ``limit``; then presence,
``m.typing``, ``m.receipt`` and account data. When more timeline events
were there than ``limit``, ``end`` stops just after the last one given, so
the next call continues with no gap. An empty chunk waits on the notifier
up to ``timeout`` (a non-member following a room with ``room_id`` is woken
by the room's events as its members are: ``Notifier.add_peeker``). Guests
must name a room (Synapse's 400), since the global stream is not theirs.

``/initialSync``: per room of the user (joined and invited; departed too with
``archived=true``) the latest ``limit`` visible events, the current state
(at the leave for a departed room) and the room's account data; plus the
user's presence view, receipts and global account data. The room form gives
one room, peekable ones included, with its members' presence and receipts.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError
from homeserver.events.model import Event
from homeserver.http.request import Requester
from homeserver.rooms.access import ReadAccess
from homeserver.storage.rooms import Membership, RoomInfo
from homeserver.sync.tokens import StreamToken, pagination_token

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.edu.presence import PresenceHandler
    from homeserver.edu.typing import TypingManager
    from homeserver.rooms.access import RoomReader
    from homeserver.storage import Stores
    from homeserver.storage.sync import RoomMembership
    from homeserver.sync.handler import SyncHandler
    from homeserver.sync.notifier import Notifier

MEMBER = "m.room.member"
# Synapse's defaults: /events waits 30 s, and gives 10 events per call
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_TIMEOUT_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class EventsParams:
    from_token: str | None
    timeout_ms: int
    limit: int
    room_id: str | None


def _access_of(m: "RoomMembership") -> ReadAccess:
    """How a member (or former member) reads the room, from their membership row."""
    info = RoomInfo(m.room_nid, m.room_id, m.room_version, None)
    membership = Membership(m.membership, m.event_id, 0, m.stream_ordering, False)
    until = None if m.membership == "join" else m.stream_ordering
    return ReadAccess(info, membership, until, None)


class EventStream:
    """``/events`` and the two ``initialSync`` forms."""

    def __init__(self, ctx: "ServerContext", stores: "Stores", reader: "RoomReader",
                 sync: "SyncHandler", notifier: "Notifier", typing: "TypingManager",
                 presence: "PresenceHandler") -> None:
        self.ctx = ctx
        self.stores = stores
        self.reader = reader
        self.sync = sync
        self.notifier = notifier
        self.typing = typing
        self.presence = presence

    # -- /events ------------------------------------------------------------

    async def get_events(self, requester: Requester, params: EventsParams) -> dict[str, Any]:
        user_id = requester.user_id
        if requester.is_guest and params.room_id is None:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "Guest users must specify room_id param")
        if params.from_token is not None:
            since = self.sync.parse_since(params.from_token)
        peek: ReadAccess | None = None
        if params.room_id is not None:
            peek = await self.reader.check_read(user_id, params.room_id)
        following = peek is not None and (peek.membership is None
                                           or peek.membership.membership != "join")
        # a user reading the stream is online, as a syncing one is (not a
        # guest: Synapse's affect_presence)
        affects_presence = not requester.is_guest
        if affects_presence:
            await self.presence.user_syncing(user_id, None)
        if params.from_token is None:
            # from now on: after the presence change this request just made
            since = self.sync.current_token()
        if following:
            assert params.room_id is not None
            self.notifier.add_peeker(params.room_id, user_id)
        try:
            return await self._long_poll(requester, since, params, peek)
        finally:
            if following:
                assert params.room_id is not None
                self.notifier.remove_peeker(params.room_id, user_id)
            if affects_presence:
                self.presence.sync_ended(user_id, None)

    async def _long_poll(self, requester: Requester, since: StreamToken,
                         params: EventsParams, peek: ReadAccess | None) -> dict[str, Any]:
        clock = self.ctx.clock
        timeout = min(max(params.timeout_ms, 0), MAX_TIMEOUT_MS)
        deadline = clock.seconds() + timeout / 1000
        while True:
            counter = self.notifier.counter(requester.user_id)
            body = await self._events_since(requester, since, params.limit, peek)
            remaining = deadline - clock.seconds()
            if body["chunk"] or remaining <= 0:
                return body
            if not await self.notifier.wait(requester.user_id, counter,
                                            int(remaining * 1000)):
                return body

    async def _events_since(self, requester: Requester, since: StreamToken, limit: int,
                            peek: ReadAccess | None) -> dict[str, Any]:
        user_id = requester.user_id
        until = self.sync.current_token()
        start, end = since.global_pos, until.global_pos
        if peek is not None:
            rooms = [peek]
            extra_events: list[tuple[int, str, Event]] = []
        else:
            rooms, extra_events = await self._rooms_of(user_id, start, end)
        # the timeline events of every room after ``start``, in stream order
        candidates: list[tuple[int, str, Event]] = list(extra_events)
        # a page that stopped scanning before it was full (a long hidden
        # stretch) has read only up to its next position: stop there
        scanned_to = end
        for access in rooms:
            page = await self.reader.paginate(user_id, access, from_pos=start, to_pos=end,
                                              backwards=False, limit=limit + 1)
            candidates.extend((pos, access.room.room_id, e)
                              for pos, e in zip(page.positions, page.events, strict=True))
            if not page.exhausted and len(page.events) <= limit:
                scanned_to = min(scanned_to, page.next_pos)
        candidates = [c for c in candidates if c[0] <= scanned_to]
        end = scanned_to
        taken = heapq.nsmallest(limit + 1, candidates, key=lambda c: c[0])
        if len(taken) > limit:
            taken = taken[:limit]
            end = taken[-1][0] if taken else start
        serialized: dict[str, dict[str, Any]] = {}
        for room_id, events in _by_room(taken):
            for e in _v1(await self.reader.serialize(requester, room_id, events)):
                serialized[e["event_id"]] = e
        chunk = [serialized[e.event_id] for _, _, e in taken if e.event_id in serialized]
        room_ids = [a.room.room_id for a in rooms]
        chunk.extend(await self._presence(user_id, start, end, peek))
        for room_id, users in self.typing.get_typing(room_ids, since.typing_pos).items():
            chunk.append({"type": "m.typing", "room_id": room_id,
                          "content": {"user_ids": users}})
        receipts = await self.stores.receipts.get_receipt_events(room_ids, start, end, user_id)
        for room_id, content in receipts.items():
            chunk.append({"type": "m.receipt", "room_id": room_id, "content": content})
        if peek is None:
            chunk.extend(await self._account_data(user_id, start, end))
        end_token = replace(until, global_pos=end)
        return {"start": str(since), "end": str(end_token), "chunk": chunk}

    async def _rooms_of(self, user_id: str, start: int, end: int,
                        ) -> tuple[list[ReadAccess], list[tuple[int, str, Event]]]:
        """The rooms whose timeline the user follows between the positions:
        those they are joined to, and those they left in the range (up to the
        leave); and their invites of the range, which are all they see of
        those rooms."""
        rooms: list[ReadAccess] = []
        invites: list[tuple[int, str, Event]] = []
        for m in await self.stores.sync.get_memberships(user_id, end):
            if m.membership == "join":
                rooms.append(_access_of(m))
            elif m.stream_ordering > start:
                if m.membership in ("leave", "ban"):
                    rooms.append(_access_of(m))
                elif m.membership == "invite":
                    event = await self.stores.events.get_event(m.event_id)
                    if event is not None:
                        invites.append((m.stream_ordering, m.room_id, event))
        return rooms, invites

    async def _presence(self, user_id: str, start: int, end: int,
                        peek: ReadAccess | None) -> list[dict[str, Any]]:
        if peek is None:
            return _old_presence(await self.presence.get_presence_events(user_id, start, end))
        # a room followed by ID: the presence of its members
        members = await self.stores.rooms.get_members(peek.room.room_nid)
        return _old_presence(await self.presence.get_presence_events_of(members, start, end))

    async def _account_data(self, user_id: str, start: int,
                            end: int) -> list[dict[str, Any]]:
        global_data, by_room = await self.stores.account_data.get_account_data_since(
            user_id, start, end)
        out: list[dict[str, Any]] = [{"type": t, "content": c}
                                     for t, c in global_data.items()]
        for room_id, items in by_room.items():
            out.extend({"type": t, "content": c, "room_id": room_id}
                       for t, c in items.items())
        return out

    # -- initialSync ----------------------------------------------------------

    async def initial_sync(self, requester: Requester, limit: int,
                           archived: bool) -> dict[str, Any]:
        """GET /initialSync: every room of the user, as it is now."""
        user_id = requester.user_id
        now = self.sync.current_token()
        end = now.global_pos
        memberships = await self.stores.sync.get_memberships(user_id, end)
        wanted = ("join", "invite", "leave", "ban") if archived else ("join", "invite")
        global_data, by_room = await self.stores.account_data.get_account_data_since(
            user_id, 0, end)
        public = {r.room_id for r in await self.stores.directory.get_published_rooms()}
        rooms: list[dict[str, Any]] = []
        for m in memberships:
            if m.membership not in wanted:
                continue
            room: dict[str, Any] = {
                "room_id": m.room_id, "membership": m.membership,
                "visibility": "public" if m.room_id in public else "private"}
            if m.membership == "invite":
                invite = await self.stores.events.get_event(m.event_id)
                if invite is not None:
                    room["inviter"] = invite.sender
                    room["invite"] = _v1(await self.reader.serialize(
                        requester, m.room_id, [invite]))[0]
                rooms.append(room)
                continue
            access = _access_of(m)
            room["messages"] = await self._recent(requester, access, limit, now)
            room["state"] = await self._state(requester, access)
            room["account_data"] = [{"type": t, "content": c}
                                    for t, c in by_room.get(m.room_id, {}).items()]
            rooms.append(room)
        joined = [m.room_id for m in memberships if m.membership == "join"]
        receipts = await self.stores.receipts.get_receipt_events(joined, None, end, user_id)
        return {
            "end": str(now),
            "rooms": rooms,
            "presence": _old_presence(
                await self.presence.get_presence_events(user_id, None, end)),
            "account_data": [{"type": t, "content": c} for t, c in global_data.items()],
            "receipts": [{"type": "m.receipt", "room_id": r, "content": c}
                         for r, c in receipts.items()],
        }

    async def room_initial_sync(self, requester: Requester, room_id: str,
                                limit: int) -> dict[str, Any]:
        """GET /rooms/{roomId}/initialSync: one room as the user may see it
        (403 when they may not: see ``RoomReader.check_read``)."""
        user_id = requester.user_id
        access = await self.reader.check_read(user_id, room_id)
        now = self.sync.current_token()
        membership = access.membership.membership if access.membership is not None else None
        # a non-member reading a world_readable room reads it as a member
        # would, as on Synapse
        if membership not in ("join", "leave", "ban"):
            membership = "join"
        body: dict[str, Any] = {
            "room_id": room_id,
            "membership": membership,
            "messages": await self._recent(requester, access, limit, now),
            "state": await self._state(requester, access),
            "presence": [],
            "receipts": [],
        }
        if access.until_stream is None:
            members = [k[1] for k, e in (await self.reader.get_state(access, MEMBER)).items()
                       if e.membership == "join"]
            body["presence"] = _old_presence(await self.presence.get_presence_events_of(
                members, None, now.global_pos))
            receipts = await self.stores.receipts.get_receipt_events(
                [room_id], None, now.global_pos, user_id)
            if room_id in receipts:
                body["receipts"] = [{"type": "m.receipt", "room_id": room_id,
                                     "content": receipts[room_id]}]
        _, by_room = await self.stores.account_data.get_account_data_since(
            user_id, 0, now.global_pos)
        body["account_data"] = [{"type": t, "content": c}
                                for t, c in by_room.get(room_id, {}).items()]
        return body

    async def _recent(self, requester: Requester, access: ReadAccess, limit: int,
                      now: StreamToken) -> dict[str, Any]:
        """``messages``: the latest ``limit`` events the user may see, oldest
        first, with the tokens around them."""
        end = now.global_pos if access.until_stream is None else access.until_stream
        events: list[Event] = []
        start = end
        if limit > 0:
            page = await self.reader.paginate(requester.user_id, access, from_pos=end,
                                              to_pos=None, backwards=True, limit=limit)
            events = list(reversed(page.events))
            if page.positions:
                start = min(page.positions) - 1
        end_token = str(now) if access.until_stream is None else pagination_token(end)
        return {
            "chunk": _v1(await self.reader.serialize(requester, access.room.room_id, events)),
            "start": pagination_token(start),
            "end": end_token,
        }

    async def _state(self, requester: Requester, access: ReadAccess) -> list[dict[str, Any]]:
        snapshot_access = access
        if access.until_stream is not None and access.membership is not None:
            pos = await self.stores.events.get_event_position(access.membership.event_id)
            if pos is not None:
                snapshot_access = replace(access, snapshot_nid=pos.snapshot_nid)
        state = await self.reader.get_state(snapshot_access)
        events = sorted(state.values(), key=lambda e: (e.depth, e.event_id))
        return _v1(await self.reader.serialize(requester, access.room.room_id, events))


def _v1(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events in this API's format: the client format plus the sender again
    as ``user_id``, which its clients (and SyTest) read."""
    for e in events:
        e["user_id"] = e["sender"]
    return events


def _old_presence(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Presence events as this API has always given them: the user in
    ``content.user_id`` as well as in ``sender`` (Synapse's shape)."""
    return [{**e, "content": {**e["content"], "user_id": e["sender"]}} for e in events]


def _by_room(taken: list[tuple[int, str, Event]]) -> list[tuple[str, list[Event]]]:
    """The events grouped by room, each group in stream order."""
    groups: dict[str, list[Event]] = {}
    for _, room_id, event in taken:
        groups.setdefault(room_id, []).append(event)
    return list(groups.items())
