"""Auth events selection and the rules on an event's auth_events list."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.auth import AuthError, auth_types_for_event, check_auth_events_list
from tests.rooms.helpers import ALICE, BOB, CAROL, Room, versions

V9, V11, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("9", "11", "12"))
CREATE = ("m.room.create", "")
PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")


def member(sender: str, target: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "m.room.member", "sender": sender, "state_key": target, "content": content}


@pytest.mark.parametrize("rv,event,expected", [
    (V11, {"type": "m.room.create", "sender": ALICE, "state_key": "", "content": {}}, set()),
    (V11, {"type": "m.room.message", "sender": BOB, "content": {}},
     {CREATE, PL, ("m.room.member", BOB)}),
    (V12, {"type": "m.room.message", "sender": BOB, "content": {}},
     {PL, ("m.room.member", BOB)}),
    (V11, member(ALICE, BOB, {"membership": "ban"}),
     {CREATE, PL, ("m.room.member", ALICE), ("m.room.member", BOB)}),
    (V11, member(BOB, BOB, {"membership": "join"}), {CREATE, PL, ("m.room.member", BOB), JR}),
    (V11, member(BOB, BOB, {"membership": "knock"}), {CREATE, PL, ("m.room.member", BOB), JR}),
    (V11, member(ALICE, BOB, {"membership": "invite",
                              "third_party_invite": {"signed": {"token": "tok"}}}),
     {CREATE, PL, ("m.room.member", ALICE), ("m.room.member", BOB), JR,
      ("m.room.third_party_invite", "tok")}),
    (V12, member(BOB, BOB, {"membership": "join",
                            "join_authorised_via_users_server": CAROL}),
     {PL, ("m.room.member", BOB), JR, ("m.room.member", CAROL)}),
    (KNOWN_ROOM_VERSIONS["7"], member(BOB, BOB, {"membership": "join",
                                                 "join_authorised_via_users_server": CAROL}),
     {CREATE, PL, ("m.room.member", BOB), JR}),
    (V9, member(ALICE, BOB, {"membership": "invite", "third_party_invite": "junk"}),
     {CREATE, PL, ("m.room.member", ALICE), ("m.room.member", BOB), JR}),
])
def test_auth_types_for_event(rv: Any, event: dict[str, Any],
                              expected: set[tuple[str, str]]) -> None:
    assert auth_types_for_event(rv, event) == expected


def test_auth_types_accepts_an_event() -> None:
    room = Room("10")
    event = room.member(BOB, BOB, "join")
    assert auth_types_for_event(room.rv, event) == {CREATE, PL, JR, ("m.room.member", BOB)}


def _auth_list(room: Room, *keys: tuple[str, str]) -> list[Any]:
    return [room.state[k] for k in keys]


@pytest.mark.parametrize("version", versions("1", "11"))
def test_good_auth_events_list(version: str) -> None:
    room = Room(version)
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    check_auth_events_list(event, _auth_list(room, CREATE, PL, ("m.room.member", ALICE)))


def test_v12_auth_events_list_without_create() -> None:
    room = Room("12")
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    check_auth_events_list(event, _auth_list(room, PL, ("m.room.member", ALICE)))


def test_v12_auth_events_list_must_not_have_create() -> None:
    room = Room("12")
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    with pytest.raises(AuthError, match="not one the event needs"):
        check_auth_events_list(event, _auth_list(room, CREATE, PL))


@pytest.mark.parametrize("version", versions("1", "11"))
def test_auth_events_list_needs_create(version: str) -> None:
    room = Room(version)
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    with pytest.raises(AuthError, match="no m.room.create"):
        check_auth_events_list(event, _auth_list(room, PL, ("m.room.member", ALICE)))


def test_auth_events_list_duplicates_are_rejected() -> None:
    room = Room("10")
    old_pl = room.state[PL]
    room.send_state("m.room.power_levels", ALICE, {"users": {ALICE: 100}})
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    with pytest.raises(AuthError, match="more than one"):
        check_auth_events_list(event, [room.state[CREATE], old_pl, room.state[PL]])


def test_auth_events_list_unexpected_entry_is_rejected() -> None:
    room = Room("10")
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    with pytest.raises(AuthError, match="not one the event needs"):
        check_auth_events_list(event, _auth_list(room, CREATE, JR))


def test_auth_events_list_rejected_entry_is_rejected() -> None:
    room = Room("10")
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    bad = dataclasses.replace(room.state[PL], rejected_reason="auth")
    with pytest.raises(AuthError, match="rejected"):
        check_auth_events_list(event, [room.state[CREATE], bad])


def test_auth_events_list_from_another_room_is_rejected() -> None:
    room, other = Room("10"), Room("10")
    event = room.event("m.room.message", ALICE, {"body": "hi"})
    with pytest.raises(AuthError, match="another room"):
        check_auth_events_list(event, [room.state[CREATE], other.state[PL]])
