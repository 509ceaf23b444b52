"""The fast path's pre-encoded JSON is byte for byte what ``encode_json``
makes of the full builder's dicts (``sync/encoder.py``)."""

from __future__ import annotations

import json

from homeserver.http.resource import encode_json
from homeserver.storage.e2e_keys import KeyCounts
from homeserver.sync.encoder import (
    encode_quiet_body,
    encode_quiet_room,
    encode_timeline,
    one_time_keys_count,
    quiet_joined_room,
    sync_body,
    timeline_section,
)


def test_quiet_body_encodes_as_the_dict_does() -> None:
    events = [{"type": "m.room.message", "content": {"body": "h\u00e9 \"quoted\""}}]
    timeline = timeline_section(events, False, "s41")
    rooms = {"!a:x": quiet_joined_room(timeline, 3, 1),
             "!b:x": quiet_joined_room(timeline_section([], False, ""), 0, 0)}
    counts = KeyCounts({"signed_curve25519": 5, "curve25519": 2}, ["signed_curve25519"])

    body = sync_body("s42_3_ab12", rooms, {}, {}, {}, [], [], [], set(), set(), counts)
    encoded = encode_quiet_body(
        "s42_3_ab12",
        [encode_quiet_room(room_id, encode_timeline(room["timeline"]),
                           room["unread_notifications"]["notification_count"],
                           room["unread_notifications"]["highlight_count"])
         for room_id, room in rooms.items()],
        one_time_keys_count(counts), counts.unused_fallback)

    assert encoded == encode_json(body)
    assert json.loads(encoded) == body


def test_a_body_without_rooms_or_keys_encodes_as_the_dict_does() -> None:
    body = sync_body("s1_0_x", {}, {}, {}, {}, [], [], [], set(), set())
    assert encode_quiet_body("s1_0_x", [], body["device_one_time_keys_count"],
                             body["device_unused_fallback_key_types"]) == encode_json(body)
