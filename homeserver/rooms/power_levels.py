"""Reading power levels out of room state: who has which level, what each act needs.

Pure helpers shared by the auth rules (``homeserver.rooms.auth``) and the room
API. They take the room state (or an event's auth events) as a mapping from
``(type, state_key)`` to ``Event`` and the room version, and apply the defaults
of the ``m.room.power_levels`` schema (client-server API):

- ``users_default`` 0, ``events_default`` 0, ``state_default`` 50,
  ``invite`` 0, ``kick``/``ban``/``redact`` 50, ``notifications.room`` 50;
- with no power-levels event, the room creator has 100 and everyone else 0
  (v1-v11; the creator is ``content.creator`` up to v10, the create event's
  ``sender`` from v11);
- from v12 the creators (the create event's sender plus
  ``content.additional_creators``) have an infinite level, ``INFINITE_POWER``,
  whatever the power-levels event says (which may not name them at all).

Values: v1-v9 accept integers written as strings (``" +100 "``), v1-v5 also
floats (truncated); v10+ only integers. A value that does not parse falls back
to the default, so a legacy malformed event cannot crash a reader; the auth
rules reject new malformed power-levels events where the spec says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion

StateMap = Mapping[tuple[str, str], Event]

# A power level: an int, or INFINITE_POWER for a v12 room creator. Plain
# comparisons (``>=``, ``<``) work across both.
PowerLevel = int | float

INFINITE_POWER: Final[float] = math.inf

CREATE: Final = ("m.room.create", "")
POWER_LEVELS: Final = ("m.room.power_levels", "")

# The named levels the auth rules compare when power levels change, and their
# defaults. "notifications" levels default separately (room: 50).
NAMED_LEVEL_DEFAULTS: Final[dict[str, int]] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "redact": 50,
    "kick": 50,
    "invite": 0,
}

_STRINGY_INT = re.compile(r"\s*[+-]?[0-9]+\s*\Z")


def parse_level(value: Any, room_version: RoomVersion) -> int | None:
    """The integer a power-level value stands for, or None if it is not one.

    v10+: only a JSON integer. v1-v9: also a string holding a base-10 integer
    (leading zeros, one sign and surrounding whitespace allowed). v1-v5: also a
    finite float, truncated (rooms/fragments/v1-floaty-power-levels.md).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if room_version.enforce_int_power_levels:
        return None
    if isinstance(value, str):
        if not _STRINGY_INT.match(value):
            return None
        try:
            return int(value.strip())
        except ValueError:  # beyond Python's int-from-str digit limit
            return None
    if isinstance(value, float) and not room_version.strict_canonicaljson:
        return int(value) if math.isfinite(value) else None
    return None


def creators(auth_events: StateMap, room_version: RoomVersion) -> frozenset[str]:
    """The room creators: whose join may directly follow the create event,
    and (v12) who hold infinite power.

    v1-v10: ``content.creator``; v11: the create event's sender; v12: the
    sender plus ``content.additional_creators``.
    """
    create = auth_events.get(CREATE)
    if create is None:
        return frozenset()
    if not room_version.implicit_room_creator:
        creator = create.content.get("creator")
        return frozenset([creator]) if isinstance(creator, str) else frozenset()
    out = {create.sender}
    if room_version.privileged_creators:
        extra = create.content.get("additional_creators")
        if isinstance(extra, list):
            out.update(u for u in extra if isinstance(u, str))
    return frozenset(out)


def _content(auth_events: StateMap) -> dict[str, Any] | None:
    pl = auth_events.get(POWER_LEVELS)
    return pl.content if pl is not None else None


def _sub_map(content: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    sub = content.get(key)
    return sub if isinstance(sub, dict) else {}


def get_user_power_level(user_id: str, auth_events: StateMap,
                         room_version: RoomVersion) -> PowerLevel:
    """The power level of ``user_id`` given the room state ``auth_events``."""
    if room_version.privileged_creators and user_id in creators(auth_events, room_version):
        return INFINITE_POWER
    content = _content(auth_events)
    if content is None:
        # No power levels yet: the creator has 100 (v1-v11; in v12 the
        # creators were handled above), everyone else 0.
        if user_id in creators(auth_events, room_version):
            return 100
        return 0
    level = parse_level(_sub_map(content, "users").get(user_id), room_version)
    if level is not None:
        return level
    return get_named_level("users_default", auth_events, room_version)


def get_named_level(name: str, auth_events: StateMap, room_version: RoomVersion) -> int:
    """A top-level named level (``ban``, ``kick``, ``invite``, ``redact``,
    ``state_default``, ``events_default``, ``users_default``) with its default."""
    default = NAMED_LEVEL_DEFAULTS[name]
    content = _content(auth_events)
    if content is None:
        return default
    level = parse_level(content.get(name), room_version)
    return default if level is None else level


def get_send_level(event_type: str, state_key: str | None, auth_events: StateMap,
                   room_version: RoomVersion) -> int:
    """The level needed to send an event of ``event_type``: its entry in
    ``events``, else ``state_default`` for state events (``state_key`` not
    None) or ``events_default`` for message events."""
    content = _content(auth_events)
    if content is not None:
        level = parse_level(_sub_map(content, "events").get(event_type), room_version)
        if level is not None:
            return level
    name = "state_default" if state_key is not None else "events_default"
    return get_named_level(name, auth_events, room_version)


def get_notification_level(key: str, auth_events: StateMap, room_version: RoomVersion) -> int:
    """The level needed to trigger notification ``key`` (``room``: @room)."""
    content = _content(auth_events)
    if content is not None:
        level = parse_level(_sub_map(content, "notifications").get(key), room_version)
        if level is not None:
            return level
    return 50
