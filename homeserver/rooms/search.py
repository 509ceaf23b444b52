"""Server-side search: POST /search (``room_events``) and the user directory.

Message search reads the full-text index of ``storage/search.py`` in
batches, best first ("rank") or newest first ("recent"). The store keeps to
the rooms the searcher is joined to, or was, up to their leave; every batch
then goes through the same gates as any timeline read (``rooms/access.py``):
the room gate (``check_read``) and history visibility (``filter_visible``),
with the rest of the ``RoomEventFilter`` (types, ``contains_url``). Like
``RoomReader.paginate``, a page scans at most ``MAX_SCAN_BATCHES`` batches,
so a search whose matches are mostly hidden returns a short page and a
``next_batch`` rather than scanning the whole index.

``next_batch`` is ``r<stream position>`` (recent: results below that
position) or ``k<offset>`` (rank: that many matches already read), with
``/<room ID>`` appended for the token of a room group, which pages through
that room only ("recent" only: a rank offset counts every room's matches).
``count`` is the number of matches before the visibility checks, at most
``storage.search.COUNT_CAP`` (the spec asks only for an estimate); "rank"
ranks the newest ``storage.search.RANK_WINDOW`` matches. ``highlights`` are the words of the
search term (as Synapse gives them on SQLite): the stemmed forms that
matched are for the client to find.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError, invalid_param
from homeserver.events.model import Event
from homeserver.http.request import Requester
from homeserver.rooms.access import NO_FILTER, ReadAccess, RoomEventFilter
from homeserver.storage.search import SEARCH_KEYS, SearchHit, SearchQuery, search_words

if TYPE_CHECKING:
    from homeserver.moderation.gate import ModerationGate
    from homeserver.rooms.access import RoomReader
    from homeserver.storage import Stores
    from homeserver.storage.user_directory import UserDirectoryStore

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 10
MAX_LIMIT = 500
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100
MAX_SCAN_BATCHES = 5
GROUP_KEYS = ("room_id", "sender")

_TOKEN = re.compile(r"([rk])(-?\d{1,19})(?:/(.+))?", re.DOTALL)


@dataclass(frozen=True)
class EventContext:
    before_limit: int = DEFAULT_CONTEXT
    after_limit: int = DEFAULT_CONTEXT
    include_profile: bool = False


@dataclass(frozen=True)
class RoomEventsSearch:
    """A parsed ``search_categories.room_events``."""

    term: str
    keys: tuple[str, ...] = SEARCH_KEYS
    event_filter: RoomEventFilter = NO_FILTER
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    order_by: str = "rank"
    context: EventContext | None = None
    include_state: bool = False
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchToken:
    order_by: str
    position: int
    room_id: str | None = None

    def encode(self) -> str:
        text = f"{'r' if self.order_by == 'recent' else 'k'}{self.position}"
        return text + (f"/{self.room_id}" if self.room_id is not None else "")

    @classmethod
    def decode(cls, text: str, order_by: str) -> BatchToken:
        m = _TOKEN.fullmatch(text)
        if m is None or (m.group(1) == "r") != (order_by == "recent"):
            raise invalid_param("Invalid next_batch token")
        position = int(m.group(2))
        if order_by == "rank" and position < 0:
            raise invalid_param("Invalid next_batch token")
        return cls(order_by, position, m.group(3))


@dataclass
class _Scan:
    """What a search has read so far."""

    kept: list[tuple[SearchHit, Event]] = field(default_factory=list)
    cursor: int | None = None
    offset: int = 0
    exhausted: bool = False


class Searcher:
    """POST /search's room events. Built once by ``server.py`` (``hs.searcher``)."""

    def __init__(self, stores: "Stores", reader: "RoomReader") -> None:
        self.stores = stores
        self.reader = reader

    async def search_room_events(self, requester: Requester, request: RoomEventsSearch,
                                 token: BatchToken | None) -> dict[str, Any]:
        user_id = requester.user_id
        rooms = request.rooms
        if token is not None and token.room_id is not None:
            rooms = (token.room_id,) if rooms is None or token.room_id in rooms else ()
        f = request.event_filter
        query = SearchQuery(user_id=user_id, term=request.term, keys=request.keys,
                            rooms=rooms, not_rooms=request.not_rooms, senders=f.senders,
                            not_senders=f.not_senders)
        accesses: dict[str, ReadAccess | None] = {}
        scan = await self._scan(user_id, request, query, token, accesses)
        count = await self.stores.search.count(query)

        # one serialisation per room, not per result: each costs a few queries
        by_room: dict[str, list[Event]] = {}
        for hit, event in scan.kept:
            by_room.setdefault(hit.room_id, []).append(event)
        serialized: dict[str, dict[str, Any]] = {}
        for room_id, events in by_room.items():
            for event, out in zip(events, await self.reader.serialize(requester, room_id,
                                                                      events), strict=True):
                serialized[event.event_id] = out
        results = []
        for hit, event in scan.kept:
            item: dict[str, Any] = {"rank": hit.rank, "result": serialized[event.event_id]}
            access = accesses.get(hit.room_id)
            if request.context is not None and access is not None:
                item["context"] = await self._context(requester, access, hit, event,
                                                      request.context)
            results.append(item)

        next_batch: BatchToken | None = None
        if not scan.exhausted:
            position = scan.cursor if request.order_by == "recent" else scan.offset
            if position is not None:
                next_batch = BatchToken(request.order_by, position,
                                        token.room_id if token is not None else None)
        body: dict[str, Any] = {
            "results": results,
            "count": count,
            "highlights": search_words(request.term),
        }
        if next_batch is not None:
            body["next_batch"] = next_batch.encode()
        if request.group_by:
            body["groups"] = self._groups(request, scan, next_batch)
        if request.include_state:
            state: dict[str, Any] = {}
            for room_id in dict.fromkeys(hit.room_id for hit, _ in scan.kept):
                access = accesses.get(room_id)
                if access is not None:
                    room_state = await self.reader.get_state(access)
                    state[room_id] = await self.reader.serialize(
                        requester, room_id,
                        sorted(room_state.values(), key=lambda e: (e.depth, e.event_id)))
            body["state"] = state
        return body

    async def _scan(self, user_id: str, request: RoomEventsSearch, query: SearchQuery,
                    token: BatchToken | None,
                    accesses: dict[str, ReadAccess | None]) -> _Scan:
        scan = _Scan()
        if token is not None:
            if request.order_by == "recent":
                scan.cursor = token.position
            else:
                scan.offset = token.position
        batch = min(max(2 * request.limit, 20), 1000)
        for _ in range(MAX_SCAN_BATCHES):
            if len(scan.kept) >= request.limit:
                break
            hits = await self.stores.search.search_batch(
                query, order_by=request.order_by, before_stream=scan.cursor,
                offset=scan.offset, limit=batch)
            visible = await self._visible(user_id, hits, accesses)
            consumed = 0
            for hit in hits:
                consumed += 1
                scan.cursor = hit.stream_ordering
                scan.offset += 1
                event = visible.get(hit.event_id)
                if event is not None and request.event_filter.matches(event):
                    scan.kept.append((hit, event))
                    if len(scan.kept) >= request.limit:
                        break
            if len(hits) < batch and consumed == len(hits):
                scan.exhausted = True
                break
        return scan

    async def _access(self, user_id: str, room_id: str,
                      accesses: dict[str, ReadAccess | None]) -> ReadAccess | None:
        if room_id not in accesses:
            try:
                accesses[room_id] = await self.reader.check_read(user_id, room_id)
            except MatrixError:
                accesses[room_id] = None
        return accesses[room_id]

    async def _visible(self, user_id: str, hits: list[SearchHit],
                       accesses: dict[str, ReadAccess | None]) -> dict[str, Event]:
        """The events of ``hits`` that ``user_id`` may see, by event ID."""
        events = await self.stores.events.get_events([h.event_id for h in hits])
        by_room: dict[str, list[tuple[int, Event]]] = {}
        for hit in hits:
            event = events.get(hit.event_id)
            if event is not None:
                by_room.setdefault(hit.room_id, []).append((hit.stream_ordering, event))
        out: dict[str, Event] = {}
        for room_id, pairs in by_room.items():
            access = await self._access(user_id, room_id, accesses)
            if access is None:
                continue
            if access.until_stream is not None:
                pairs = [p for p in pairs if p[0] <= access.until_stream]
            pairs.sort(key=lambda p: p[0])
            # as RoomReader.paginate: a member sees everything since they joined
            joined_at = (access.membership.stream_ordering
                         if access.membership is not None
                         and access.membership.membership == "join" else None)
            to_check = [p for p in pairs if joined_at is None or p[0] <= joined_at]
            out.update((e.event_id, e) for p, e in pairs
                       if joined_at is not None and p > joined_at)
            for event in await self.reader.filter_visible(user_id, access, to_check):
                out[event.event_id] = event
        return out

    async def _context(self, requester: Requester, access: ReadAccess, hit: SearchHit,
                       event: Event, wanted: EventContext) -> dict[str, Any]:
        user_id = requester.user_id
        room_id = hit.room_id
        pos = hit.stream_ordering
        before = await self.reader.paginate(user_id, access, from_pos=pos - 1, to_pos=None,
                                            backwards=True, limit=wanted.before_limit)
        after = await self.reader.paginate(user_id, access, from_pos=pos, to_pos=None,
                                           backwards=False, limit=wanted.after_limit)
        context: dict[str, Any] = {
            "start": f"s{before.next_pos}",
            "end": f"s{after.next_pos}",
            "events_before": await self.reader.serialize(requester, room_id, before.events),
            "events_after": await self.reader.serialize(requester, room_id, after.events),
        }
        if wanted.include_profile:
            senders = list(dict.fromkeys(
                e.sender for e in [*before.events, event, *after.events]))
            ids = (await self.stores.events.get_state_at_events(
                [event.event_id], [("m.room.member", s) for s in senders])).get(
                    event.event_id, {})
            members = await self.stores.events.get_events(list(ids.values()))
            profiles: dict[str, dict[str, str]] = {}
            for (_, sender), member_id in ids.items():
                member = members.get(member_id)
                if member is None:
                    continue
                profiles[sender] = {k: v for k, v in member.content.items()
                                    if k in ("displayname", "avatar_url")
                                    and isinstance(v, str)}
            context["profile_info"] = profiles
        return context

    @staticmethod
    def _groups(request: RoomEventsSearch, scan: _Scan,
                next_batch: BatchToken | None) -> dict[str, Any]:
        groups: dict[str, Any] = {}
        for key in request.group_by:
            entries: dict[str, dict[str, Any]] = {}
            for hit, event in scan.kept:
                group_id = hit.room_id if key == "room_id" else event.sender
                order = hit.rank if request.order_by == "rank" else hit.stream_ordering
                entry = entries.setdefault(group_id, {"results": [], "order": order})
                entry["results"].append(event.event_id)
                entry["order"] = max(entry["order"], order)
            # a room's token pages through that room: by stream position only
            # (a rank offset counts matches of every room)
            if key == "room_id" and next_batch is not None and request.order_by == "recent":
                for room_id, entry in entries.items():
                    entry["next_batch"] = BatchToken(next_batch.order_by, next_batch.position,
                                                     room_id).encode()
            groups[key] = entries
        return groups


# -- the user directory ---------------------------------------------------------


async def search_user_directory(settings: dict[str, Any], store: "UserDirectoryStore",
                                user_id: str, term: str, limit: int,
                                gate: "ModerationGate | None" = None) -> dict[str, Any]:
    """POST /user_directory/search's answer: ``limit`` users and ``limited``.

    ``settings`` is the config's ``user_directory`` section; ``gate`` drops
    the users spam checker modules find spammy (after the limit, as Synapse
    does)."""
    if not settings["enabled"] or not term.strip():
        return {"results": [], "limited": False}
    found = await store.search(
        user_id, term, limit + 1, search_all=settings["search_all_users"],
        prefer_local=settings["prefer_local_users"])
    results = []
    for user in found[:limit]:
        entry: dict[str, Any] = {"user_id": user.user_id}
        if user.display_name is not None:
            entry["display_name"] = user.display_name
        if user.avatar_url is not None:
            entry["avatar_url"] = user.avatar_url
        results.append(entry)
    if gate is not None:
        results = await gate.hide_from_directory(results, user_id)
    return {"results": results, "limited": len(found) > limit}
