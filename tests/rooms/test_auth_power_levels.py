"""m.room.power_levels changes, v10 integer-only values, v12 creators."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.rooms.auth import AuthError
from tests.rooms.helpers import ALICE, BOB, CAROL, DAVE, Room, versions


def _users(version: str, **levels: int) -> dict[str, int]:
    """A users map: alice is 100 up to v11 (in v12 she is a creator and unlisted)."""
    names = {"bob": BOB, "carol": CAROL, "dave": DAVE}
    users = {names[k]: v for k, v in levels.items()}
    if version != "12":
        users[ALICE] = 100
    return users


def _room(version: str, **extra: Any) -> Room:
    """Alice creates; carol is a joined moderator at 50; bob is at 10."""
    content = {"users": _users(version, carol=50, bob=10), **extra}
    room = Room(version, power_levels=content)
    room.set_member(CAROL, "join")
    room.set_member(BOB, "join")
    return room


def _change(room: Room, sender: str, **changes: Any) -> Any:
    content = dict(room.state[("m.room.power_levels", "")].content)
    content.update(changes)
    return room.power_levels(sender, content)


@pytest.mark.parametrize("version", versions())
def test_first_power_levels_event_is_allowed(version: str) -> None:
    room = Room(version, power_levels=None)
    del room.state[("m.room.power_levels", "")]
    room.check(room.power_levels(ALICE, {"users": _users(version, bob=100), "ban": 99}))


@pytest.mark.parametrize("version", versions())
def test_sender_below_power_levels_event_level_cannot_send_it(version: str) -> None:
    room = _room(version, events={"m.room.power_levels": 60})
    with pytest.raises(AuthError, match="needs power level 60"):
        room.check(_change(room, CAROL, users=_users(version, carol=50, bob=20)))


@pytest.mark.parametrize("version", versions())
def test_moderator_may_raise_someone_up_to_their_own_level(version: str) -> None:
    room = _room(version)
    room.check(_change(room, CAROL, users=_users(version, carol=50, bob=50)))


@pytest.mark.parametrize("version", versions())
def test_raising_someone_above_yourself_is_rejected(version: str) -> None:
    room = _room(version)
    with pytest.raises(AuthError, match="above yours"):
        room.check(_change(room, CAROL, users=_users(version, carol=50, bob=51)))


@pytest.mark.parametrize("version", versions())
def test_raising_yourself_is_rejected(version: str) -> None:
    room = _room(version)
    with pytest.raises(AuthError, match="above yours"):
        room.check(_change(room, CAROL, users=_users(version, carol=75, bob=10)))


@pytest.mark.parametrize("version", versions())
def test_demoting_yourself_is_allowed(version: str) -> None:
    room = _room(version)
    room.check(_change(room, CAROL, users=_users(version, carol=20, bob=10)))


@pytest.mark.parametrize("version", versions())
def test_demoting_a_peer_at_your_level_is_rejected(version: str) -> None:
    room = _room(version)
    room.set_state(_change(room, ALICE, users=_users(version, carol=50, bob=50)))
    with pytest.raises(AuthError, match="at least yours"):
        room.check(_change(room, CAROL, users=_users(version, carol=50, bob=0)))


@pytest.mark.parametrize("version", versions())
def test_removing_a_peer_at_your_level_is_rejected(version: str) -> None:
    room = _room(version)
    room.set_state(_change(room, ALICE, users=_users(version, carol=50, bob=50)))
    with pytest.raises(AuthError, match="at least yours"):
        room.check(_change(room, CAROL, users=_users(version, carol=50)))


@pytest.mark.parametrize("version", versions())
def test_changing_a_level_above_yours_is_rejected(version: str) -> None:
    room = _room(version, ban=80)
    with pytest.raises(AuthError, match="'ban' from a level above yours"):
        room.check(_change(room, CAROL, ban=40))


@pytest.mark.parametrize("version", versions())
def test_setting_a_level_above_yours_is_rejected(version: str) -> None:
    room = _room(version)
    with pytest.raises(AuthError, match="'kick' to a level above yours"):
        room.check(_change(room, CAROL, kick=60))


@pytest.mark.parametrize("version", versions())
def test_changing_levels_within_your_reach_is_allowed(version: str) -> None:
    room = _room(version)
    room.check(_change(room, CAROL, kick=40, state_default=50, events={"m.room.name": 50}))


@pytest.mark.parametrize("version", versions())
def test_changing_an_event_level_above_yours_is_rejected(version: str) -> None:
    room = _room(version, events={"m.room.tombstone": 100})
    with pytest.raises(AuthError, match="m.room.tombstone"):
        room.check(_change(room, CAROL, events={"m.room.tombstone": 50}))


@pytest.mark.parametrize("version,allowed", [(v, int(v) < 6) for v in versions()])
def test_notifications_are_checked_from_v6(version: str, allowed: bool) -> None:
    room = _room(version, notifications={"room": 100})
    event = _change(room, CAROL, notifications={"room": 0})
    assert room.allowed(event) is allowed


@pytest.mark.parametrize("version", versions())
def test_users_must_be_valid_user_ids(version: str) -> None:
    room = _room(version)
    users = _users(version, carol=50)
    users["not-a-user"] = 0
    with pytest.raises(AuthError, match="invalid user ID"):
        room.check(_change(room, ALICE, users=users))


@pytest.mark.parametrize("version,allowed", [(v, int(v) < 10) for v in versions()])
def test_string_levels_accepted_until_v9(version: str, allowed: bool) -> None:
    room = _room(version)
    users: dict[str, Any] = dict(_users(version, carol=50))
    users[BOB] = " +20 "
    assert room.allowed(_change(room, ALICE, users=users, kick="50")) is allowed


@pytest.mark.parametrize("version", versions("10"))
@pytest.mark.parametrize("changes", [
    {"ban": "50"}, {"ban": 50.0}, {"ban": True}, {"events": {"m.room.name": "50"}},
    {"events": []}, {"notifications": {"room": "50"}},
])
def test_v10_rejects_non_integer_levels(version: str, changes: dict[str, Any]) -> None:
    room = _room(version)
    with pytest.raises(AuthError, match="integer"):
        room.check(_change(room, ALICE, **changes))


@pytest.mark.parametrize("version", versions("1", "9"))
@pytest.mark.parametrize("bad", ["fifty", "5.5", "1_000"])
def test_garbage_string_levels_are_rejected_before_v10(version: str, bad: str) -> None:
    room = _room(version)
    users: dict[str, Any] = dict(_users(version, carol=50))
    users[BOB] = bad
    with pytest.raises(AuthError, match="not an integer"):
        room.check(_change(room, ALICE, users=users))


@pytest.mark.parametrize("version,allowed", [(v, int(v) <= 5) for v in versions("1", "9")])
def test_float_levels_only_in_v1_to_v5(version: str, allowed: bool) -> None:
    room = _room(version)
    users: dict[str, Any] = dict(_users(version, carol=50))
    users[BOB] = 20.7
    assert room.allowed(_change(room, ALICE, users=users)) is allowed


# --- v12 creators


def test_v12_creator_in_users_is_rejected() -> None:
    room = _room("12")
    with pytest.raises(AuthError, match="creators"):
        room.check(_change(room, ALICE, users={ALICE: 100, CAROL: 50}))


def test_v12_additional_creator_in_users_is_rejected() -> None:
    room = Room("12", create_content={"additional_creators": [DAVE]})
    with pytest.raises(AuthError, match="creators"):
        room.check(room.power_levels(ALICE, {"users": {DAVE: 100}}))


def test_v12_creator_in_users_is_rejected_even_in_the_first_power_levels() -> None:
    room = Room("12")
    del room.state[("m.room.power_levels", "")]
    with pytest.raises(AuthError, match="creators"):
        room.check(room.power_levels(ALICE, {"users": {ALICE: 100}}))


def test_v11_creator_may_be_listed_in_users() -> None:
    room = _room("11")
    room.check(_change(room, ALICE, users={ALICE: 100, CAROL: 50}))


def test_v12_creator_can_set_any_level() -> None:
    room = _room("12", events={"m.room.power_levels": 2**53 - 1})
    room.check(_change(room, ALICE, users={CAROL: 2**53 - 1}, ban=2**53 - 1))


def test_v12_additional_creator_can_do_anything() -> None:
    room = Room("12", create_content={"additional_creators": [DAVE]},
                power_levels={"users": {CAROL: 100}, "ban": 100, "kick": 100,
                              "events": {"m.room.power_levels": 100}})
    room.set_member(DAVE, "join")
    room.set_member(CAROL, "join")
    room.check(room.member(DAVE, CAROL, "ban"))
    room.check(room.power_levels(DAVE, {"users": {CAROL: 0}}))


def test_v12_nobody_can_kick_a_creator() -> None:
    room = Room("12", create_content={"additional_creators": [DAVE]},
                power_levels={"users": {CAROL: 2**53 - 1}})
    room.set_member(DAVE, "join")
    room.set_member(CAROL, "join")
    with pytest.raises(AuthError):
        room.check(room.member(CAROL, ALICE, "leave"))
    # not even a fellow creator
    with pytest.raises(AuthError):
        room.check(room.member(DAVE, ALICE, "ban"))


def test_v11_users_can_outrank_the_creator() -> None:
    room = Room("11", power_levels={"users": {ALICE: 10, CAROL: 100}})
    room.set_member(CAROL, "join")
    room.check(room.member(CAROL, ALICE, "ban"))
