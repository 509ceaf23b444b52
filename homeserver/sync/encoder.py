"""The shape of a /sync response, in one place for both ways of building it.

The full builder (``sync/handler.py``, ``sync/room_builder.py``) makes the
response as a dict; the fast path (``sync/fast_path.py``) writes most of its
JSON from pre-encoded parts, shared by every receiver of the same write. If
each spelled the response out on its own, a field added to one and not the
other would make a client's answer depend on which path served it.

So the dict shapes are defined here once (``sync_body``, ``room_sections``,
``joined_room_tail``, ...), and the fast path's byte templates are *derived*
from those same functions at import: each is encoded with marker values in
the places the fast path fills in, and split at the markers. The only JSON
the fast path writes by hand is numbers and the separators between rooms.
"""

from __future__ import annotations

from typing import Any, cast

from homeserver.http.resource import encode_json
from homeserver.storage.e2e_keys import KeyCounts

NO_KEYS = KeyCounts({}, [])


def sync_body(next_batch: str, join: dict[str, Any], invite: dict[str, Any],
              leave: dict[str, Any], knock: dict[str, Any], presence: list[dict[str, Any]],
              account_data: list[dict[str, Any]], to_device: list[dict[str, Any]],
              changed: set[str], left: set[str],
              counts: KeyCounts = NO_KEYS) -> dict[str, Any]:
    """The whole response body."""
    return _body(next_batch, join, invite, leave, knock, presence, account_data, to_device,
                 sorted(changed), sorted(left), one_time_keys_count(counts),
                 counts.unused_fallback)


def one_time_keys_count(counts: KeyCounts) -> dict[str, int]:
    # signed_curve25519 always: older clients read a missing one as
    # "unknown" and never upload (Synapse does the same)
    return {"signed_curve25519": 0, **counts.one_time}


def _body(next_batch: str, join: dict[str, Any], invite: dict[str, Any],
          leave: dict[str, Any], knock: dict[str, Any], presence: list[dict[str, Any]],
          account_data: list[dict[str, Any]], to_device: list[dict[str, Any]],
          changed: list[str], left: list[str], one_time: dict[str, int],
          unused_fallback: list[str]) -> dict[str, Any]:
    return {
        "next_batch": next_batch,
        "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock},
        "presence": {"events": presence},
        "account_data": {"events": account_data},
        "to_device": {"events": to_device},
        # an empty list is left out, as Synapse does (SyTest reads a present
        # "changed" as "this sync answers whose devices changed")
        "device_lists": {k: v for k, v in (("changed", changed), ("left", left)) if v},
        "device_one_time_keys_count": one_time,
        "device_unused_fallback_key_types": unused_fallback,
    }


def is_empty(body: dict[str, Any]) -> bool:
    """Whether a response carries nothing but its token."""
    rooms = body.get("rooms", {})
    if any(rooms.get(k) for k in ("join", "invite", "leave", "knock")):
        return False
    for key in ("presence", "account_data", "to_device"):
        if body.get(key, {}).get("events"):
            return False
    lists = body.get("device_lists", {})
    return not (lists.get("changed") or lists.get("left"))


# -- one room -----------------------------------------------------------------


def timeline_section(events: list[dict[str, Any]], limited: bool,
                     prev_batch: str) -> dict[str, Any]:
    return {"events": events, "limited": limited, "prev_batch": prev_batch}


def room_sections(timeline: dict[str, Any], state: list[dict[str, Any]],
                  account_data: list[dict[str, Any]]) -> dict[str, Any]:
    """A room's timeline, state and account data: all of a left room, the
    start of a joined one (``joined_room_tail`` adds the rest)."""
    return {"timeline": timeline, "state": {"events": state},
            "account_data": {"events": account_data}}


def ephemeral_section(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"events": events}


def unread_section(notifications: int, highlights: int) -> dict[str, int]:
    return {"notification_count": notifications, "highlight_count": highlights}


def joined_room(timeline: dict[str, Any], state: list[dict[str, Any]], notifications: int,
                highlights: int, summary: dict[str, Any] | None = None,
                threads: dict[str, dict[str, int]] | None = None,
                ephemeral: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A joined room with no account data, as the full builder makes it:
    the fast path's rooms (``threads``: the ``unread_thread_notifications``
    the filter asked for)."""
    room = room_sections(timeline, state, [])
    room["ephemeral"] = ephemeral_section(ephemeral or [])
    if summary is not None:
        room["summary"] = summary
    room["unread_notifications"] = unread_section(notifications, highlights)
    if threads is not None:
        room["unread_thread_notifications"] = threads
    return room


def quiet_joined_room(timeline: dict[str, Any], notifications: int,
                      highlights: int) -> dict[str, Any]:
    """A joined room where only new timeline events happened (no state, no
    account data, no ephemeral events, no summary): the fast path's rooms, as
    the full builder makes them."""
    return joined_room(timeline, [], notifications, highlights)


# -- the fast path's byte templates ------------------------------------------------

# Marker values: NUL cannot appear in a room ID, token or key algorithm we
# send, so each marker's encoding occurs exactly where it was put.
_MARKS = [f"\x00sync-mark-{k}" for k in range(4)]


def _split(encoded: bytes, marks: list[Any]) -> tuple[bytes, ...]:
    parts: list[bytes] = []
    rest = encoded
    for mark in marks:
        before, found, rest = rest.partition(encode_json(mark))
        assert found, "a marker vanished from the template"
        parts.append(before)
    parts.append(rest)
    return tuple(parts)


# the body around: next_batch, the inside of rooms.join, the one-time key
# counts, the unused fallback key types
_JOIN_MARK = {_MARKS[1]: 0}
_BODY_PARTS = _split(
    encode_json(_body(_MARKS[0], _JOIN_MARK, {}, {}, {}, [], [], [], [], [],
                      cast(Any, _MARKS[2]), cast(Any, _MARKS[3]))),
    [_MARKS[0], _JOIN_MARK, _MARKS[2], _MARKS[3]])
# a quiet joined room around: its timeline section, notification count,
# highlight count
_ROOM_PARTS = _split(
    encode_json(quiet_joined_room(cast(Any, _MARKS[0]), cast(Any, _MARKS[1]),
                                  cast(Any, _MARKS[2]))),
    _MARKS[:3])


_TIMELINE_MARK = encode_json(_MARKS[0])


def encode_timeline(section: dict[str, Any]) -> bytes:
    """A timeline section's JSON, made once and shared by every receiver."""
    return encode_json(section)


def encode_quiet_room(room_id: str, timeline: bytes, notifications: int,
                      highlights: int) -> bytes:
    """``"room_id":{...}``: one entry of ``rooms.join``, the JSON of
    ``quiet_joined_room`` with ``timeline`` already encoded."""
    return b"%s:%s%s%s%d%s%d%s" % (
        encode_json(room_id), _ROOM_PARTS[0], timeline, _ROOM_PARTS[1], notifications,
        _ROOM_PARTS[2], highlights, _ROOM_PARTS[3])


def encode_room(room_id: str, room: dict[str, Any], timeline: bytes) -> bytes:
    """``"room_id":{...}``: one entry of ``rooms.join``, the JSON of ``room``
    with its timeline section replaced by ``timeline``, already encoded."""
    before, found, after = encode_json({**room, "timeline": _MARKS[0]}).partition(
        _TIMELINE_MARK)
    assert found
    return b"%s:%s%s%s" % (encode_json(room_id), before, timeline, after)


def encode_quiet_body(next_batch: str, rooms: list[bytes], one_time: dict[str, int],
                      unused_fallback: list[str]) -> bytes:
    """The JSON of a ``sync_body`` with only ``rooms`` (from
    ``encode_quiet_room``) joined and the key counts: what ``encode_json``
    would make of it."""
    return b"%s%s%s{%s}%s%s%s%s%s" % (
        _BODY_PARTS[0], encode_json(next_batch), _BODY_PARTS[1], b",".join(rooms),
        _BODY_PARTS[2], encode_json(one_time), _BODY_PARTS[3], encode_json(unused_fallback),
        _BODY_PARTS[4])
