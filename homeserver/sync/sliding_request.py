"""A sliding sync request (MSC4186), parsed and checked at the edge.

Both shapes clients send are accepted: the one Synapse serves and today's
clients speak (Element X's matrix-rust-sdk, matrix-js-sdk: ``ranges``,
``required_state`` as ``[type, state_key]`` pairs with ``*``, ``$LAZY`` and
``$ME``, ``is_invite``, ``pos`` and ``timeout`` in the query string) and the
MSC's latest text (``range``, ``required_state`` as ``{include, exclude,
lazy_members}``, ``is_invited``, ``pos`` and ``timeout`` in the body).
Anything malformed is ``M_BAD_JSON``; too many lists or subscriptions, or a
range that is not one, ``M_INVALID_PARAM``; unknown extensions are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import bad_json, invalid_param

MAX_LISTS = 100
MAX_SUBSCRIPTIONS = 100
MAX_LIST_KEY = 64
MAX_TIMELINE_LIMIT = 1000
MAX_CONN_ID = 255
MEMBER = "m.room.member"
WILDCARD = "*"
LAZY = "$LAZY"
ME = "$ME"

# a (type, state_key) pattern; None matches anything
Pattern = tuple[str | None, str | None]


@dataclass(frozen=True)
class RequiredState:
    """Which state of a room to send. ``include`` patterns (``$ME`` as a
    state key: the user), less ``exclude``; with ``lazy_members``, member
    events come only from explicit member patterns and the timeline's
    senders and targets (the handler adds those)."""

    include: tuple[Pattern, ...] = ()
    exclude: tuple[Pattern, ...] = ()
    lazy_members: bool = False

    def matches(self, event_type: str, state_key: str, user_id: str) -> bool:
        if any(_hit(p, event_type, state_key, user_id) for p in self.exclude):
            return False
        for p_type, p_key in self.include:
            if self.lazy_members and event_type == MEMBER and p_type != MEMBER:
                continue  # lazy: a type wildcard does not bring every member
            if _hit((p_type, p_key), event_type, state_key, user_id):
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {"include": [list(p) for p in self.include],
                "exclude": [list(p) for p in self.exclude], "lazy": self.lazy_members}

    @staticmethod
    def from_json(data: Any) -> "RequiredState":
        if not isinstance(data, dict):
            return RequiredState()
        return RequiredState(tuple((p[0], p[1]) for p in data.get("include", ())),
                             tuple((p[0], p[1]) for p in data.get("exclude", ())),
                             bool(data.get("lazy")))


def _hit(pattern: Pattern, event_type: str, state_key: str, user_id: str) -> bool:
    p_type, p_key = pattern
    if p_type is not None and p_type != event_type:
        return False
    if p_key is None:
        return True
    return state_key == (user_id if p_key == ME else p_key)


@dataclass(frozen=True)
class RoomConfig:
    """What to send of a room: the superset of every rule it matched."""

    timeline_limit: int
    required_state: tuple[RequiredState, ...]

    def matches(self, event_type: str, state_key: str, user_id: str) -> bool:
        return any(rs.matches(event_type, state_key, user_id) for rs in self.required_state)

    @property
    def lazy_members(self) -> bool:
        return any(rs.lazy_members for rs in self.required_state)

    def combine(self, other: "RoomConfig") -> "RoomConfig":
        merged = self.required_state + tuple(
            rs for rs in other.required_state if rs not in self.required_state)
        return RoomConfig(max(self.timeline_limit, other.timeline_limit), merged)

    def state_json(self) -> list[dict[str, Any]]:
        return [rs.to_json() for rs in self.required_state]

    @staticmethod
    def state_from_json(data: Any) -> tuple[RequiredState, ...]:
        if not isinstance(data, list):
            return ()
        return tuple(RequiredState.from_json(d) for d in data)


@dataclass(frozen=True)
class RoomFilters:
    is_dm: bool | None = None
    spaces: tuple[str, ...] | None = None
    is_encrypted: bool | None = None
    is_invite: bool | None = None
    # None in a list: rooms without a type
    room_types: tuple[str | None, ...] | None = None
    not_room_types: tuple[str | None, ...] | None = None
    tags: tuple[str, ...] | None = None
    not_tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ListConfig:
    config: RoomConfig
    # inclusive (start, end) pairs; None: the whole list
    ranges: tuple[tuple[int, int], ...] | None
    filters: RoomFilters


@dataclass(frozen=True)
class ExtensionConfig:
    enabled: bool
    # the lists and subscriptions it applies to ("*": all)
    lists: tuple[str, ...] = (WILDCARD,)
    rooms: tuple[str, ...] = (WILDCARD,)
    limit: int = 100
    since: int | None = None


@dataclass(frozen=True)
class SlidingRequest:
    conn_id: str
    pos: str | None
    timeout_ms: int
    set_presence: str | None
    lists: dict[str, ListConfig] = field(default_factory=dict)
    subscriptions: dict[str, RoomConfig] = field(default_factory=dict)
    extensions: dict[str, ExtensionConfig] = field(default_factory=dict)


EXTENSIONS = ("to_device", "e2ee", "account_data", "receipts", "typing")
PRESENCE_STATES = ("online", "unavailable", "offline")


def parse_request(body: dict[str, Any], query_pos: str | None,
                  query_timeout: int | None) -> SlidingRequest:
    conn_id = body.get("conn_id", "")
    if conn_id is None:
        conn_id = ""
    if not isinstance(conn_id, str) or len(conn_id) > MAX_CONN_ID:
        raise bad_json("conn_id must be a string of at most 255 characters")
    pos = query_pos if query_pos is not None else body.get("pos")
    if pos is not None and not isinstance(pos, str):
        raise bad_json("pos must be a string")
    timeout: Any = query_timeout if query_timeout is not None else body.get("timeout", 0)
    if timeout is None:
        timeout = 0
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise invalid_param("timeout must be a non-negative integer of milliseconds")
    set_presence = body.get("set_presence")
    if set_presence is not None and set_presence not in PRESENCE_STATES:
        raise invalid_param("set_presence must be one of online, unavailable, offline")

    lists_raw = _object(body.get("lists"), "lists")
    if len(lists_raw) > MAX_LISTS:
        raise invalid_param(f"At most {MAX_LISTS} lists")
    lists = {}
    for key, raw in lists_raw.items():
        if len(key) > MAX_LIST_KEY:
            raise bad_json(f"List keys are at most {MAX_LIST_KEY} characters")
        lists[key] = _list_config(_object(raw, f"lists.{key}"), key)

    subs_raw = _object(body.get("room_subscriptions"), "room_subscriptions")
    if len(subs_raw) > MAX_SUBSCRIPTIONS:
        raise invalid_param(f"At most {MAX_SUBSCRIPTIONS} room subscriptions")
    subscriptions = {room_id: _room_config(_object(raw, f"room_subscriptions.{room_id}"),
                                           f"room_subscriptions.{room_id}")
                     for room_id, raw in subs_raw.items()}

    extensions = {}
    for name, raw in _object(body.get("extensions"), "extensions").items():
        if name in EXTENSIONS and raw is not None:
            extensions[name] = _extension(_object(raw, f"extensions.{name}"), name)
    return SlidingRequest(conn_id, pos, timeout, set_presence, lists, subscriptions,
                          extensions)


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_json(f"{name} must be an object")
    return value


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_json(f"{name} must be an integer")
    if not low <= value <= high:
        raise invalid_param(f"{name} must be between {low} and {high}")
    return value


def _strings(value: Any, name: str, allow_null: bool = False) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(v, str) or (allow_null and v is None) for v in value):
        raise bad_json(f"{name} must be a list of strings")
    return tuple(value)


def _room_config(raw: dict[str, Any], name: str) -> RoomConfig:
    limit = _int(raw.get("timeline_limit", 0), f"{name}.timeline_limit", 0,
                 MAX_TIMELINE_LIMIT)
    return RoomConfig(limit, (_required_state(raw.get("required_state"), name),))


def _required_state(raw: Any, name: str) -> RequiredState:
    if raw is None:
        return RequiredState()
    if isinstance(raw, dict):  # the MSC's shape
        return RequiredState(_patterns(raw.get("include"), name),
                             _patterns(raw.get("exclude"), name),
                             raw.get("lazy_members") is True)
    if not isinstance(raw, list):
        raise bad_json(f"{name}.required_state must be a list of [type, state_key]")
    include: list[Pattern] = []
    lazy = False
    for pair in raw:
        if not (isinstance(pair, list) and len(pair) == 2
                and all(isinstance(p, str) for p in pair)):
            raise bad_json(f"{name}.required_state must be a list of [type, state_key]")
        event_type, state_key = pair
        if event_type == MEMBER and state_key == LAZY:
            lazy = True
            continue
        include.append((None if event_type == WILDCARD else event_type,
                        None if state_key == WILDCARD else state_key))
    return RequiredState(tuple(include), (), lazy)


def _patterns(raw: Any, name: str) -> tuple[Pattern, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise bad_json(f"{name}.required_state include/exclude must be lists")
    out: list[Pattern] = []
    for element in raw:
        if not isinstance(element, dict):
            raise bad_json(f"{name}.required_state elements must be objects")
        event_type, state_key = element.get("type"), element.get("state_key")
        if not all(v is None or isinstance(v, str) for v in (event_type, state_key)):
            raise bad_json(f"{name}.required_state type and state_key must be strings")
        out.append((event_type, state_key))
    return tuple(out)


def _list_config(raw: dict[str, Any], key: str) -> ListConfig:
    name = f"lists.{key}"
    ranges: list[tuple[int, int]] | None = None
    raw_ranges = raw.get("ranges")
    if raw_ranges is None and raw.get("range") is not None:
        raw_ranges = [raw["range"]]
    if raw.get("slow_get_all_rooms") is True:
        raw_ranges = None
    if raw_ranges is not None:
        if not isinstance(raw_ranges, list):
            raise bad_json(f"{name}.ranges must be a list of [start, end]")
        ranges = []
        for r in raw_ranges:
            if not (isinstance(r, list) and len(r) == 2):
                raise bad_json(f"{name}.ranges must be a list of [start, end]")
            start = _int(r[0], f"{name}.ranges", 0, 2**31)
            end = _int(r[1], f"{name}.ranges", 0, 2**31)
            if start > end:
                raise invalid_param(f"{name}: a range's start is after its end")
            ranges.append((start, end))
    f = _object(raw.get("filters"), f"{name}.filters")
    bools = {}
    for flag in ("is_dm", "is_encrypted", "is_invite", "is_invited"):
        v = f.get(flag)
        if v is not None and not isinstance(v, bool):
            raise bad_json(f"{name}.filters.{flag} must be true or false")
        bools[flag] = v
    filters = RoomFilters(
        is_dm=bools["is_dm"], is_encrypted=bools["is_encrypted"],
        is_invite=bools["is_invite"] if bools["is_invite"] is not None
        else bools["is_invited"],
        spaces=_strings(f.get("spaces"), f"{name}.filters.spaces"),
        room_types=_strings(f.get("room_types"), f"{name}.filters.room_types", True),
        not_room_types=_strings(f.get("not_room_types"), f"{name}.filters.not_room_types",
                                True),
        tags=_strings(f.get("tags"), f"{name}.filters.tags"),
        not_tags=_strings(f.get("not_tags"), f"{name}.filters.not_tags"))
    return ListConfig(_room_config(raw, name), None if ranges is None else tuple(ranges),
                      filters)


def _extension(raw: dict[str, Any], name: str) -> ExtensionConfig:
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        raise bad_json(f"extensions.{name}.enabled must be true or false")
    lists = _strings(raw.get("lists"), f"extensions.{name}.lists")
    rooms = _strings(raw.get("rooms"), f"extensions.{name}.rooms")
    limit = _int(raw.get("limit", 100), f"extensions.{name}.limit", 1, 1000) \
        if name == "to_device" else 100
    since = None
    if name == "to_device" and raw.get("since") is not None:
        text = raw["since"]
        if not isinstance(text, str) or not text.isdigit() or len(text) > 18:
            raise invalid_param("extensions.to_device.since is not a token we gave")
        since = int(text)
    return ExtensionConfig(enabled, lists if lists is not None else (WILDCARD,),
                           rooms if rooms is not None else (WILDCARD,), limit, since)
