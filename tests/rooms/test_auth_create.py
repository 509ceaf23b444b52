"""m.room.create rules, per room version."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.auth import AuthError, check_auth_rules
from tests.rooms.helpers import ALICE, BOB, Room, make_event, versions


def create_event(version: str, content: dict[str, Any] | None = None, *,
                 sender: str = ALICE, room_id: str | None = "!r:a.test",
                 prev_events: list[str] | None = None) -> Any:
    rv = KNOWN_ROOM_VERSIONS[version]
    if content is None:
        content = {"room_version": version}
        if not rv.implicit_room_creator:
            content["creator"] = sender
    if rv.room_id_from_create_event and room_id == "!r:a.test":
        room_id = None
    return make_event(rv, "m.room.create", sender, content, room_id=room_id,
                      state_key="", prev_events=prev_events)


@pytest.mark.parametrize("version", versions())
def test_a_plain_create_event_is_allowed(version: str) -> None:
    check_auth_rules(create_event(version), {})


@pytest.mark.parametrize("version", versions())
def test_create_event_with_prev_events_is_rejected(version: str) -> None:
    with pytest.raises(AuthError, match="prev_events"):
        check_auth_rules(create_event(version, prev_events=["$earlier"]), {})


@pytest.mark.parametrize("version", versions("1", "11"))
def test_create_room_id_must_be_on_the_senders_server(version: str) -> None:
    with pytest.raises(AuthError, match="sender's server"):
        check_auth_rules(create_event(version, sender=BOB, content={"creator": BOB},
                                      room_id="!r:a.test"), {})


def test_v12_create_event_must_not_have_a_room_id() -> None:
    with pytest.raises(AuthError, match="room_id"):
        check_auth_rules(create_event("12", room_id="!abc:a.test"), {})


@pytest.mark.parametrize("version", versions())
@pytest.mark.parametrize("room_version", ["999", 12])
def test_create_with_unknown_room_version_is_rejected(version: str, room_version: Any) -> None:
    content = {"room_version": room_version, "creator": ALICE}
    with pytest.raises(AuthError, match="room_version"):
        check_auth_rules(create_event(version, content), {})


@pytest.mark.parametrize("version", versions("1", "10"))
def test_create_without_creator_is_rejected_up_to_v10(version: str) -> None:
    with pytest.raises(AuthError, match="creator"):
        check_auth_rules(create_event(version, {"room_version": version}), {})


@pytest.mark.parametrize("version", versions("11"))
def test_create_without_creator_is_fine_from_v11(version: str) -> None:
    check_auth_rules(create_event(version, {"room_version": version}), {})


@pytest.mark.parametrize("creators", [
    [BOB], ["@carol:c.test", "@dave:d.test:8448"], [],
])
def test_v12_valid_additional_creators(creators: list[str]) -> None:
    check_auth_rules(create_event("12", {"additional_creators": creators}), {})


@pytest.mark.parametrize("creators", [
    "@bob:b.test", [1], ["bob"], ["@bob"], ["@bob:bad host"], {"@bob:b.test": 1},
])
def test_v12_invalid_additional_creators_are_rejected(creators: Any) -> None:
    with pytest.raises(AuthError, match="additional_creators"):
        check_auth_rules(create_event("12", {"additional_creators": creators}), {})


def test_additional_creators_mean_nothing_before_v12() -> None:
    check_auth_rules(create_event("11", {"additional_creators": "junk"}), {})


@pytest.mark.parametrize("version", versions())
def test_events_need_the_create_event(version: str) -> None:
    room = Room(version)
    state = dict(room.state)
    del state[("m.room.create", "")]
    with pytest.raises(AuthError, match="m.room.create"):
        check_auth_rules(room.event("m.room.message", ALICE, {"body": "hi"}), state)


def test_v12_room_id_must_be_the_create_event_id() -> None:
    room = Room("12")
    other = Room("12")
    state = dict(room.state)
    state[("m.room.create", "")] = other.create
    with pytest.raises(AuthError, match="room_id"):
        check_auth_rules(room.event("m.room.message", ALICE, {"body": "hi"}), state)
