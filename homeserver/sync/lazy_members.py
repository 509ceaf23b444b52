"""Lazy-loaded members without the database: what each connection was sent,
and what each room's members and summary were when last read.

A client that asks for ``lazy_load_members`` (Element and every
matrix-js-sdk client do) gets, with each room's timeline, the member events
of the timeline's senders that it does not have yet. Three facts decide that
answer, and each is kept here so the sync fast path (``sync/fast_path.py``)
can give it from memory as the full builder (``sync/room_builder.py``) gives
it from the database:

- ``SentMembers``: which member event each connection (user, device and
  filter, as Synapse keeps its lazy-loading cache per device) was already
  sent in each room. Memory only, bounded: forgetting only means a member is
  sent again, which the spec allows.
- ``RoomFacts.members``: a room's member state as of a stream position (the
  member event IDs the full builder looked up, and the member events it
  serialised). It answers for a later position only while
  ``RecentActivity.unchanged_since`` (``sync/recent.py``) says no state
  event, redaction or relation touched the room since.
- ``RoomFacts.summary``: the room's member counts, its hero candidates and
  whether it has a name or alias, as of a position, with the same check: a
  room whose state section gains members gets a ``summary``.

The full builder fills ``RoomFacts`` as it reads; the fast path only reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.storage.cache import LruCache
from homeserver.storage.sync import pick_heroes

if TYPE_CHECKING:
    from homeserver.sync.filter import SyncFilter

# lazy-loaded members: connections x rooms remembered, and members per pair
MAX_SENT_MEMBER_ROOMS = 10_000
MAX_SENT_MEMBERS_PER_ROOM = 1_000
# rooms whose members and summary are remembered, and serialised member
# events per room
MAX_FACT_ROOMS = 1_000
MAX_SERIALISED_MEMBERS = 200

# (room, users, position, event IDs) -> whether those users' member events
# (and those events' relations) are unchanged after the position
MembersCheck = Callable[[str, Iterable[str], int, Iterable[str]], bool]
# (user ID, device ID or "", the sync filter, room ID)
Connection = tuple[str, str, "SyncFilter", str]


def connection(user_id: str, device_id: str | None, f: "SyncFilter",
               room_id: str) -> Connection:
    return (user_id, device_id or "", f, room_id)


class SentMembers:
    """Which member events each connection was sent per room: a sender whose
    member event the client already has need not get it again (the spec lets
    a server leave such redundant members out, and SyTest checks that
    Synapse does)."""

    def __init__(self, max_rooms: int = MAX_SENT_MEMBER_ROOMS) -> None:
        # connection -> member's user ID -> member event ID
        self._sent: LruCache[Connection, dict[str, str]] = LruCache(max_rooms)

    def get(self, key: Connection) -> dict[str, str]:
        return self._sent.get(key) or {}

    def record(self, key: Connection, reset: bool, members: dict[str, str]) -> None:
        """The connection was sent ``members`` (after nothing else, ``reset``:
        a full state)."""
        if not members and not reset:
            return
        known = {} if reset else dict(self.get(key))
        known.update(members)
        if len(known) > MAX_SENT_MEMBERS_PER_ROOM:
            # rather forget all than keep a huge room's whole member list
            known = dict(members) if len(members) <= MAX_SENT_MEMBERS_PER_ROOM else {}
        self._sent.put(key, known)


@dataclass
class RoomMembers:
    """Some of a room's member state as of ``as_of``: user ID -> their
    member event's ID (None: no member event), for the users the full builder
    looked up, and those member events as it serialised them (without
    ``unsigned.age``, which is added when served)."""

    as_of: int
    member_ids: dict[str, str | None]
    serialised: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class RoomSummary:
    """A room's member counts, its first members by join order (hero
    candidates, anybody included) and whether it has a name or alias, as of
    ``as_of``."""

    as_of: int
    counts: dict[str, int]
    candidates: tuple[tuple[str, str], ...]
    named: bool


class RoomFacts:
    """``RoomMembers`` and ``RoomSummary`` per room, bounded. Written on the
    reactor by the full builder, read by the fast path."""

    def __init__(self, max_rooms: int = MAX_FACT_ROOMS) -> None:
        self._lock = threading.Lock()
        self._members: LruCache[str, RoomMembers] = LruCache(max_rooms)
        self._summaries: LruCache[str, RoomSummary] = LruCache(max_rooms)

    def members(self, room_id: str) -> RoomMembers | None:
        return self._members.get(room_id)

    def summary(self, room_id: str) -> RoomSummary | None:
        return self._summaries.get(room_id)

    def missing(self, room_id: str, member_ids: dict[str, str | None]) -> list[str]:
        """The IDs among ``member_ids`` whose serialised events are not kept."""
        known = self._members.get(room_id)
        have = known.serialised if known is not None else {}
        return [e for e in member_ids.values() if e is not None and e not in have]

    def add_members(self, room_id: str, as_of: int, member_ids: dict[str, str | None],
                    serialised: list[dict[str, Any]], still_valid: MembersCheck) -> None:
        """What the full builder read of the room's member state at ``as_of``:
        the member event IDs of the users it looked up, and member events it
        serialised. Added to what is kept when that is still valid for these
        users (``still_valid``: ``RecentActivity.members_unchanged_since``),
        else in its place. Events whose form depends on who reads them (a
        transaction ID, a redaction) or that carry relations are not kept:
        they are never served from here."""
        with self._lock:
            known = self._members.get(room_id)
            if known is None or not (known.as_of <= as_of and still_valid(
                    room_id, member_ids, known.as_of, known.serialised)):
                if known is not None and known.as_of > as_of:
                    return  # an older read never replaces a newer one
                known = RoomMembers(as_of, {}, {})
            if len(known.member_ids) + len(member_ids) > MAX_SERIALISED_MEMBERS * 4:
                known.member_ids.clear()
            known.member_ids.update(member_ids)
            for event in serialised:
                unsigned = event.get("unsigned") or {}
                if (event.get("type") != "m.room.member" or "transaction_id" in unsigned
                        or "redacted_because" in unsigned or "redacted_by" in unsigned
                        or "m.relations" in unsigned):
                    continue
                event_id = event.get("event_id")
                if not isinstance(event_id, str) \
                        or known.member_ids.get(event.get("state_key") or "") != event_id:
                    continue
                if len(known.serialised) >= MAX_SERIALISED_MEMBERS:
                    known.serialised.clear()
                known.serialised[event_id] = {
                    **event, "unsigned": {k: v for k, v in unsigned.items() if k != "age"}}
            self._members.put(room_id, known)

    def add_summary(self, room_id: str, summary: RoomSummary) -> None:
        known = self._summaries.get(room_id)
        if known is None or known.as_of <= summary.as_of:
            self._summaries.put(room_id, summary)


def summary_dict(counts: dict[str, int], heroes: list[str] | None) -> dict[str, Any]:
    """The room summary; ``heroes`` None for a room with a name or alias."""
    body: dict[str, Any] = {
        "m.joined_member_count": counts.get("join", 0),
        "m.invited_member_count": counts.get("invite", 0),
    }
    if heroes is not None:
        body["m.heroes"] = heroes
    return body


def summary_body(summary: RoomSummary, user_id: str) -> dict[str, Any]:
    """``summary`` as ``user_id`` is sent it (the heroes are others)."""
    heroes = None if summary.named else pick_heroes(list(summary.candidates), user_id)
    return summary_dict(summary.counts, heroes)
