"""What a /sync filter asks for, as typed values (pure, apart from loading one).

A sync filter (spec: "Filtering", ``definitions/sync_filter.yaml``) has a
presence and a global account-data ``EventFilter``, and a room filter: a
room allow/deny list, ``include_leave``, and four ``RoomEventFilter``
sections (``timeline``, ``state``, ``ephemeral``, ``account_data``). The
sections are ``rooms.access.RoomEventFilter`` values, the one type room
reads already apply; what that type does not carry (each section's own
``rooms`` / ``not_rooms``, ``include_redundant_members``,
``unread_thread_notifications``) is lifted onto ``SyncFilter``:

- Rooms. The room filter's ``rooms`` / ``not_rooms`` decide which rooms a
  sync mentions at all (``room_allowed``). Each section may name rooms too;
  a room is in a section only if both levels allow it
  (``section_room_allowed``): a room the timeline filter leaves out still
  shows its state, with an empty timeline (as Synapse filters per event).
- Members. ``lazy_load_members`` and ``include_redundant_members`` are read
  from the state section, as Synapse does; redundant members are only
  meaningful with lazy loading, so the field is false without it.
  ``unread_thread_notifications`` is read from the timeline section, where
  the spec puts it.
- Limits. The timeline limit defaults to 10 (Synapse's default) and is
  capped at 100 (Synapse's ``filter_timeline_limit``); a client asking for
  more gets ``limited`` and a ``prev_batch`` to page with. A limit of 0 is
  kept and means no timeline events. Other limits, when given, are clamped to
  1..1000; a missing one stays ``None`` (no limit).
- Types. ``*`` in ``types`` / ``not_types`` matches any run of characters,
  anywhere in the pattern, and nothing else is special (the spec's rule);
  ``homeserver/glob.py`` matches them in O(pattern x type) steps whatever the
  pattern. ``filter_schema`` refuses a pattern over 255 characters or with
  more than 20 ``*`` (400 ``M_BAD_JSON``); filters stored before that cap
  are still read, and still cheap.
- ``event_fields``: an empty list counts as absent (all fields), as on
  Synapse; ``apply_event_fields`` is the projection.

``parse_sync_filter`` trusts a body that passed ``filter_schema`` but
survives anything: a value of the wrong type counts as absent, non-strings
in a list are dropped (they could never match). ``FilterCache.load`` reads
the ``filter`` query parameter of ``/sync``, with Synapse's errors:

- inline JSON that does not decode: 400 ``M_NOT_JSON`` "Invalid filter JSON"
  (413 ``M_TOO_LARGE`` past 64 KiB, 400 ``M_BAD_JSON`` nested too deeply);
- inline JSON the schema refuses: 400 ``M_BAD_JSON`` naming the problem, as
  ``POST /filter`` says it (Synapse sends ``M_UNKNOWN`` with the schema's text);
- a filter ID that is not one of the user's: 400 ``M_INVALID_PARAM``
  "No such filter"; one that cannot be an ID at all: 400 ``M_INVALID_PARAM``
  "Invalid filter ID" (Synapse's two messages).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from homeserver.errors import Codes, MatrixError, invalid_param
from homeserver.http.parse import decode_json
from homeserver.rooms.access import RoomEventFilter, type_matches

# POST /filter and inline /sync filters are checked by the same schema
from homeserver.sync.filter_schema import check_filter

if TYPE_CHECKING:
    from homeserver.storage.filters import FilterStore

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 100
MAX_LIMIT = 1000
# An inline filter is a query parameter; as large as a client JSON body may be.
MAX_INLINE_FILTER_BYTES = 64 * 1024
# Stored filter IDs are 64-bit; the same grammar as GET /filter/{filterId}.
_FILTER_ID = re.compile(r"[0-9]{1,18}")

Section = Literal["timeline", "state", "ephemeral", "room_account_data"]


# -- matching -----------------------------------------------------------------------


def _fields_match(types: tuple[str, ...] | None, not_types: tuple[str, ...],
                  senders: tuple[str, ...] | None, not_senders: tuple[str, ...],
                  event_type: str, sender: str | None) -> bool:
    if any(type_matches(event_type, p) for p in not_types):
        return False
    if types is not None and not any(type_matches(event_type, p) for p in types):
        return False
    if sender is not None and sender in not_senders:
        return False
    # Something with no sender (account data) passes no sender allow-list, as on Synapse.
    if senders is not None and sender not in senders:
        return False
    return True


def room_event_matches(f: RoomEventFilter, event_type: str, sender: str | None,
                       content: Mapping[str, Any] | None = None) -> bool:
    """Whether a room section ``f`` keeps something by its type, sender and content.

    For what is not an ``Event`` (ephemeral events, room account data); types
    are matched as ``RoomEventFilter.matches`` matches them (``type_matches``:
    only ``*`` is special, and no pattern can make it backtrack)."""
    if not _fields_match(f.types, f.not_types, f.senders, f.not_senders, event_type, sender):
        return False
    if f.contains_url is not None:
        has_url = isinstance((content or {}).get("url"), str)
        return has_url == f.contains_url
    return True


def room_filter_blocks_all(f: RoomEventFilter) -> bool:
    """True when a room section can keep nothing (a sync may skip computing it)."""
    return f.limit == 0 or f.types == () or f.senders == () or "*" in f.not_types


# -- values -------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """A spec ``EventFilter``: the presence and global account-data sections."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()

    def matches(self, event_type: str, sender: str | None) -> bool:
        return _fields_match(self.types, self.not_types, self.senders, self.not_senders,
                             event_type, sender)

    def blocks_all(self) -> bool:
        """True when nothing can match (a sync may skip computing the section)."""
        return self.types == () or self.senders == () or "*" in self.not_types


@dataclass(frozen=True)
class RoomScope:
    """A ``rooms`` / ``not_rooms`` pair; ``not_rooms`` wins."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()

    def allows(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


ALL_ROOMS = RoomScope()


@dataclass(frozen=True)
class SyncFilter:
    presence: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    timeline: RoomEventFilter = RoomEventFilter(limit=DEFAULT_TIMELINE_LIMIT)
    state: RoomEventFilter = RoomEventFilter()
    ephemeral: RoomEventFilter = RoomEventFilter()
    room_account_data: RoomEventFilter = RoomEventFilter()
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    # each room section's own rooms / not_rooms
    timeline_scope: RoomScope = ALL_ROOMS
    state_scope: RoomScope = ALL_ROOMS
    ephemeral_scope: RoomScope = ALL_ROOMS
    room_account_data_scope: RoomScope = ALL_ROOMS

    @property
    def timeline_limit(self) -> int:
        """How many timeline events a room gets at most (0..MAX_TIMELINE_LIMIT)."""
        limit = self.timeline.limit
        return DEFAULT_TIMELINE_LIMIT if limit is None else limit

    def room_allowed(self, room_id: str) -> bool:
        """Whether a sync mentions this room at all (the room filter's lists)."""
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def section_room_allowed(self, section: Section, room_id: str) -> bool:
        """Whether ``section`` of this room is filled: both levels must allow it."""
        scope: RoomScope = getattr(self, f"{section}_scope")
        return self.room_allowed(room_id) and scope.allows(room_id)

    def timeline_room_allowed(self, room_id: str) -> bool:
        return self.section_room_allowed("timeline", room_id)

    def state_room_allowed(self, room_id: str) -> bool:
        return self.section_room_allowed("state", room_id)

    def ephemeral_room_allowed(self, room_id: str) -> bool:
        return self.section_room_allowed("ephemeral", room_id)

    def room_account_data_room_allowed(self, room_id: str) -> bool:
        return self.section_room_allowed("room_account_data", room_id)


DEFAULT_SYNC_FILTER = SyncFilter()


# -- parsing ------------------------------------------------------------------------


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> tuple[str, ...] | None:
    """A list of strings (others dropped: they match nothing); None when not a list."""
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _clamp(value: int | None, low: int, high: int) -> int | None:
    return None if value is None else max(low, min(high, value))


def _event_filter(value: Any) -> EventFilter:
    body = _object(value)
    return EventFilter(
        limit=_clamp(_int(body.get("limit")), 1, MAX_LIMIT),
        types=_strings(body.get("types")),
        not_types=_strings(body.get("not_types")) or (),
        senders=_strings(body.get("senders")),
        not_senders=_strings(body.get("not_senders")) or (),
    )


def _room_event_filter(body: dict[str, Any], limit: int | None) -> RoomEventFilter:
    # Cleaned before RoomEventFilter sees it: its from_json trusts list items.
    clean: dict[str, Any] = {}
    for key in ("types", "not_types", "senders", "not_senders"):
        strings = _strings(body.get(key))
        if strings is not None:
            clean[key] = list(strings)
    for key in ("contains_url", "lazy_load_members"):
        if isinstance(body.get(key), bool):
            clean[key] = body[key]
    return replace(RoomEventFilter.from_json(clean), limit=limit)


def _scope(body: dict[str, Any]) -> RoomScope:
    return RoomScope(_strings(body.get("rooms")), _strings(body.get("not_rooms")) or ())


def parse_sync_filter(body: Any) -> SyncFilter:
    """The ``SyncFilter`` a filter JSON object asks for; never raises."""
    body = _object(body)
    room = _object(body.get("room"))
    timeline = _object(room.get("timeline"))
    state = _object(room.get("state"))
    ephemeral = _object(room.get("ephemeral"))
    room_account_data = _object(room.get("account_data"))

    timeline_limit = _int(timeline.get("limit"))
    timeline_limit = (DEFAULT_TIMELINE_LIMIT if timeline_limit is None
                      else _clamp(timeline_limit, 0, MAX_TIMELINE_LIMIT))

    def section_limit(section: dict[str, Any]) -> int | None:
        return _clamp(_int(section.get("limit")), 1, MAX_LIMIT)

    lazy = state.get("lazy_load_members") is True
    fields = _strings(body.get("event_fields"))
    top = _scope(room)
    return SyncFilter(
        presence=_event_filter(body.get("presence")),
        account_data=_event_filter(body.get("account_data")),
        rooms=top.rooms,
        not_rooms=top.not_rooms,
        include_leave=room.get("include_leave") is True,
        timeline=_room_event_filter(timeline, timeline_limit),
        state=_room_event_filter(state, section_limit(state)),
        ephemeral=_room_event_filter(ephemeral, section_limit(ephemeral)),
        room_account_data=_room_event_filter(room_account_data,
                                             section_limit(room_account_data)),
        lazy_load_members=lazy,
        include_redundant_members=lazy and state.get("include_redundant_members") is True,
        unread_thread_notifications=timeline.get("unread_thread_notifications") is True,
        event_fields=fields or None,
        event_format="federation" if body.get("event_format") == "federation" else "client",
        timeline_scope=_scope(timeline),
        state_scope=_scope(state),
        ephemeral_scope=_scope(ephemeral),
        room_account_data_scope=_scope(room_account_data),
    )


INLINE_FILTER_CACHE_SIZE = 1_000
STORED_FILTER_CACHE_SIZE = 10_000


class FilterCache:
    """The parsed filters of ``/sync?filter=`` (and the WebSocket's), one per
    server: a client sends the same filter with every sync, and parsing and
    validating it each time would be per-request work for nothing. Both kinds
    can be cached forever: a ``SyncFilter`` is immutable and a stored filter
    never changes."""

    def __init__(self, store: "FilterStore") -> None:
        self.store = store
        # inline filter text -> the parsed filter
        self._inline: dict[str, SyncFilter] = {}
        # (user ID, filter ID) -> the parsed stored filter
        self._stored: dict[tuple[str, int], SyncFilter] = {}

    async def load(self, user_id: str, filter_param: str | None) -> SyncFilter:
        """The filter a ``/sync?filter=`` names: absent, inline JSON, or a stored ID."""
        if filter_param is None:
            return DEFAULT_SYNC_FILTER
        if filter_param.startswith("{"):
            return self._load_inline(filter_param)
        if not _FILTER_ID.fullmatch(filter_param):
            raise invalid_param("Invalid filter ID")
        key = (user_id, int(filter_param))
        known = self._stored.get(key)
        if known is not None:
            return known
        stored = await self.store.get_filter(user_id, key[1])
        if stored is None:
            raise invalid_param("No such filter")
        parsed = parse_sync_filter(stored)
        if len(self._stored) >= STORED_FILTER_CACHE_SIZE:
            self._stored.clear()
        self._stored[key] = parsed
        return parsed

    def _load_inline(self, filter_param: str) -> SyncFilter:
        cached = self._inline.get(filter_param)
        if cached is not None:
            return cached
        parsed = parse_inline_filter(filter_param)
        if len(self._inline) >= INLINE_FILTER_CACHE_SIZE:
            self._inline.clear()
        self._inline[filter_param] = parsed
        return parsed


def parse_inline_filter(filter_param: str) -> SyncFilter:
    """An inline ``filter=`` JSON text, decoded, validated and parsed."""
    try:
        raw = filter_param.encode("utf-8")
    except UnicodeEncodeError:
        raise MatrixError(400, Codes.NOT_JSON, "Invalid filter JSON") from None
    try:
        body = decode_json(raw, MAX_INLINE_FILTER_BYTES)
    except MatrixError as e:
        if e.errcode == Codes.NOT_JSON:
            raise MatrixError(400, Codes.NOT_JSON, "Invalid filter JSON") from None
        raise
    check_filter(body)
    return parse_sync_filter(body)


# -- event_fields -------------------------------------------------------------------


def split_field_path(path: str) -> list[str]:
    """A dot-separated property path as its keys: ``\\.`` is a dot, ``\\\\`` a
    backslash, and any other backslash is itself (the spec's appendix)."""
    keys: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if char == ".":
            keys.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    keys.append("".join(current))
    return keys


def apply_event_fields(event: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Only the ``fields`` (dot-separated paths) of ``event``; paths that are not
    there are skipped. ``event`` is not changed; the result shares its leaf
    values, so treat it as read-only (or serialise it) too."""
    out: dict[str, Any] = {}
    for path in fields:
        if not isinstance(path, str):
            continue
        *parents, last = split_field_path(path)
        src: Any = event
        for key in parents:
            src = src.get(key) if isinstance(src, Mapping) else None
        if not isinstance(src, Mapping) or last not in src:
            continue
        # Found: copy it across, making the objects on the way (only now, so a
        # missing path leaves no empty objects behind).
        dst = out
        source: Any = event
        for key in parents:
            source = source[key]
            below = dst.get(key)
            if below is source:
                break  # an earlier, shorter path took the whole of it
            if not isinstance(below, dict):
                below = dst[key] = {}
            dst = below
        else:
            dst[last] = src[last]
    return out
