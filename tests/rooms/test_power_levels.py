"""Reading levels from state: defaults, creators, legacy value formats."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.power_levels import (
    INFINITE_POWER,
    get_named_level,
    get_notification_level,
    get_send_level,
    get_user_power_level,
    parse_level,
)
from tests.rooms.helpers import ALICE, BOB, DAVE, Room, versions

PL = ("m.room.power_levels", "")


@pytest.mark.parametrize("version,value,expected", [
    ("9", 50, 50), ("9", "50", 50), ("9", " +050 ", 50), ("9", "-7", -7), ("9", "5.0", None),
    ("9", "1_0", None), ("9", "9" * 5000, None), ("9", True, None), ("9", None, None),
    ("9", 1.5, None),
    ("5", 51146.98, 51146), ("5", float("inf"), None), ("10", "50", None), ("10", 50, 50),
])
def test_parse_level(version: str, value: Any, expected: int | None) -> None:
    assert parse_level(value, KNOWN_ROOM_VERSIONS[version]) == expected


@pytest.mark.parametrize("version", versions("1", "11"))
def test_without_power_levels_creator_has_100_others_0(version: str) -> None:
    room = Room(version)
    del room.state[PL]
    assert get_user_power_level(ALICE, room.state, room.rv) == 100
    assert get_user_power_level(BOB, room.state, room.rv) == 0


def test_v12_creators_have_infinite_power_with_or_without_power_levels() -> None:
    room = Room("12", create_content={"additional_creators": [DAVE]})
    for state in (room.state, {k: v for k, v in room.state.items() if k != PL}):
        assert get_user_power_level(ALICE, state, room.rv) == INFINITE_POWER
        assert get_user_power_level(DAVE, state, room.rv) == INFINITE_POWER
        assert get_user_power_level(BOB, state, room.rv) == 0
    assert INFINITE_POWER > 2**63


def test_users_default_applies_to_unlisted_users() -> None:
    room = Room("10", power_levels={"users": {ALICE: 100}, "users_default": 5})
    assert get_user_power_level(BOB, room.state, room.rv) == 5


@pytest.mark.parametrize("name,expected", [
    ("ban", 50), ("kick", 50), ("redact", 50), ("invite", 0), ("state_default", 50),
    ("events_default", 0), ("users_default", 0),
])
def test_named_level_defaults(name: str, expected: int) -> None:
    room = Room("11", power_levels={})
    assert get_named_level(name, room.state, room.rv) == expected


def test_send_levels() -> None:
    room = Room("11", power_levels={"events": {"m.room.name": 10}, "state_default": 40,
                                    "events_default": 3})
    assert get_send_level("m.room.name", "", room.state, room.rv) == 10
    assert get_send_level("m.room.topic", "", room.state, room.rv) == 40
    assert get_send_level("m.room.message", None, room.state, room.rv) == 3
    assert get_notification_level("room", room.state, room.rv) == 50


@pytest.mark.parametrize("version,creator", [("10", BOB), ("11", ALICE)])
def test_creator_is_content_creator_to_v10_and_sender_from_v11(version: str,
                                                               creator: str) -> None:
    # alice sends the create event; its content says bob is the creator
    room = Room(version, create_content={"creator": BOB})
    del room.state[PL]
    assert get_user_power_level(creator, room.state, room.rv) == 100
    other = ALICE if creator == BOB else BOB
    assert get_user_power_level(other, room.state, room.rv) == 0
