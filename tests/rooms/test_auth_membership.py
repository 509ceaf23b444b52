"""m.room.member rules: join, invite, leave/kick, ban, knock, restricted joins."""

from __future__ import annotations

import pytest

from homeserver.rooms.auth import AuthError
from tests.rooms.helpers import ALICE, BOB, CAROL, DAVE, Room, versions

# --- joining


@pytest.mark.parametrize("version", versions())
def test_creator_may_join_right_after_the_create_event(version: str) -> None:
    room = Room(version)
    first_join = room.event("m.room.member", ALICE, {"membership": "join"}, state_key=ALICE,
                            prev_events=[room.create.event_id])
    room.check(first_join)


@pytest.mark.parametrize("version", versions())
def test_non_creator_cannot_use_the_first_join_rule(version: str) -> None:
    room = Room(version)
    join = room.event("m.room.member", BOB, {"membership": "join"}, state_key=BOB,
                      prev_events=[room.create.event_id])
    with pytest.raises(AuthError, match="invite-only"):
        room.check(join)


def test_v10_first_join_uses_content_creator_not_sender() -> None:
    # a v10 create event whose "creator" field names bob: bob's join may follow it
    room = Room("10", create_content={"creator": BOB})
    join = room.event("m.room.member", BOB, {"membership": "join"}, state_key=BOB,
                      prev_events=[room.create.event_id])
    room.check(join)


def test_v11_first_join_uses_sender_and_ignores_content_creator() -> None:
    room = Room("11", create_content={"creator": BOB})
    join = room.event("m.room.member", BOB, {"membership": "join"}, state_key=BOB,
                      prev_events=[room.create.event_id])
    with pytest.raises(AuthError):
        room.check(join)


@pytest.mark.parametrize("version", versions())
def test_non_invited_user_cannot_join_invite_only_room(version: str) -> None:
    room = Room(version, join_rule="invite")
    with pytest.raises(AuthError, match="invite-only"):
        room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", versions())
def test_invited_user_can_join_invite_only_room(version: str) -> None:
    room = Room(version, join_rule="invite")
    room.set_member(BOB, "invite", sender=ALICE)
    room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", versions())
def test_anyone_can_join_a_public_room(version: str) -> None:
    room = Room(version, join_rule="public")
    room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", versions())
def test_banned_user_cannot_rejoin_a_public_room(version: str) -> None:
    room = Room(version, join_rule="public")
    room.set_member(BOB, "ban", sender=ALICE)
    with pytest.raises(AuthError, match="banned"):
        room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", versions())
def test_cannot_join_on_behalf_of_someone_else(version: str) -> None:
    room = Room(version, join_rule="public")
    with pytest.raises(AuthError, match="behalf"):
        room.check(room.member(ALICE, BOB, "join"))


@pytest.mark.parametrize("version", versions())
def test_unknown_join_rule_rejects_joins(version: str) -> None:
    room = Room(version, join_rule="private")
    with pytest.raises(AuthError):
        room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version,allowed", [(v, int(v) >= 7) for v in versions()])
def test_invited_user_joins_knock_room_only_where_knocking_exists(version: str,
                                                                  allowed: bool) -> None:
    room = Room(version, join_rule="knock")
    room.set_member(BOB, "invite", sender=ALICE)
    assert room.allowed(room.member(BOB, BOB, "join")) is allowed


# --- restricted joins


def _restricted_room(version: str, join_rule: str = "restricted") -> Room:
    room = Room(version, join_rule=join_rule,
                power_levels={"users": {} if version == "12" else {ALICE: 100},
                              "invite": 50})
    room.set_member(CAROL, "join")  # joined, but below the invite level
    return room


@pytest.mark.parametrize("version", versions("8"))
def test_restricted_join_authorised_by_a_joined_user_who_can_invite(version: str) -> None:
    room = _restricted_room(version)
    room.check(room.member(BOB, BOB, "join", join_authorised_via_users_server=ALICE))


@pytest.mark.parametrize("version", versions("8"))
def test_restricted_join_without_authoriser_is_rejected(version: str) -> None:
    room = _restricted_room(version)
    with pytest.raises(AuthError, match="join_authorised_via_users_server"):
        room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", versions("8"))
def test_restricted_join_authorised_by_user_below_invite_level_is_rejected(version: str) -> None:
    room = _restricted_room(version)
    with pytest.raises(AuthError, match="cannot invite"):
        room.check(room.member(BOB, BOB, "join", join_authorised_via_users_server=CAROL))


@pytest.mark.parametrize("version", versions("8"))
def test_restricted_join_authorised_by_non_member_is_rejected(version: str) -> None:
    room = _restricted_room(version)
    with pytest.raises(AuthError, match="not in the room"):
        room.check(room.member(BOB, BOB, "join", join_authorised_via_users_server=DAVE))


@pytest.mark.parametrize("version", versions("8"))
def test_restricted_join_by_invited_user_needs_no_authoriser(version: str) -> None:
    room = _restricted_room(version)
    room.set_member(BOB, "invite", sender=ALICE)
    room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", versions("1", "7"))
def test_restricted_join_rule_is_unknown_before_v8(version: str) -> None:
    room = _restricted_room(version)
    with pytest.raises(AuthError):
        room.check(room.member(BOB, BOB, "join", join_authorised_via_users_server=ALICE))


@pytest.mark.parametrize("version,allowed", [(v, int(v) >= 10) for v in versions("7")])
def test_knock_restricted_join_only_from_v10(version: str, allowed: bool) -> None:
    room = _restricted_room(version, join_rule="knock_restricted")
    event = room.member(BOB, BOB, "join", join_authorised_via_users_server=ALICE)
    assert room.allowed(event) is allowed


# --- invites


@pytest.mark.parametrize("version", versions())
def test_member_at_invite_level_can_invite(version: str) -> None:
    room = Room(version)
    room.check(room.member(ALICE, BOB, "invite"))


@pytest.mark.parametrize("version", versions())
def test_member_below_invite_level_cannot_invite(version: str) -> None:
    room = Room(version, power_levels={"users": {}, "invite": 50} if version == "12"
                else {"users": {ALICE: 100}, "invite": 50})
    room.set_member(CAROL, "join")
    with pytest.raises(AuthError, match="invite level"):
        room.check(room.member(CAROL, BOB, "invite"))


@pytest.mark.parametrize("version", versions())
def test_non_member_cannot_invite(version: str) -> None:
    room = Room(version)
    with pytest.raises(AuthError, match="not in the room"):
        room.check(room.member(CAROL, BOB, "invite"))


@pytest.mark.parametrize("version", versions())
@pytest.mark.parametrize("membership", ["join", "ban"])
def test_cannot_invite_joined_or_banned_user(version: str, membership: str) -> None:
    room = Room(version)
    room.set_member(BOB, membership, sender=BOB if membership == "join" else ALICE)
    with pytest.raises(AuthError, match="already"):
        room.check(room.member(ALICE, BOB, "invite"))


# --- leaving and kicking


@pytest.mark.parametrize("version", versions())
@pytest.mark.parametrize("membership", ["join", "invite"])
def test_user_can_leave_or_reject_invite(version: str, membership: str) -> None:
    room = Room(version)
    room.set_member(BOB, membership, sender=ALICE)
    room.check(room.member(BOB, BOB, "leave"))


@pytest.mark.parametrize("version", versions())
@pytest.mark.parametrize("membership", ["leave", "ban"])
def test_user_cannot_leave_when_not_joined_or_invited(version: str, membership: str) -> None:
    room = Room(version)
    room.set_member(BOB, membership, sender=ALICE)
    with pytest.raises(AuthError, match="cannot leave"):
        room.check(room.member(BOB, BOB, "leave"))


@pytest.mark.parametrize("version,allowed", [(v, int(v) >= 7) for v in versions()])
def test_knocker_can_withdraw_knock_from_v7(version: str, allowed: bool) -> None:
    room = Room(version)
    room.set_member(BOB, "knock")
    assert room.allowed(room.member(BOB, BOB, "leave")) is allowed


@pytest.mark.parametrize("version", versions())
def test_moderator_can_kick_lower_user(version: str) -> None:
    room = Room(version)
    room.set_member(BOB, "join")
    room.check(room.member(ALICE, BOB, "leave"))


@pytest.mark.parametrize("version", versions("1", "11"))
def test_cannot_kick_higher_level_user(version: str) -> None:
    room = Room(version, power_levels={"users": {ALICE: 100, BOB: 60, CAROL: 50}})
    room.set_member(BOB, "join")
    room.set_member(CAROL, "join")
    with pytest.raises(AuthError, match="kick"):
        room.check(room.member(CAROL, BOB, "leave"))


@pytest.mark.parametrize("version", versions())
def test_cannot_kick_equal_level_user(version: str) -> None:
    room = Room(version, power_levels={"users": {BOB: 50, CAROL: 50}})
    room.set_member(BOB, "join")
    room.set_member(CAROL, "join")
    with pytest.raises(AuthError, match="kick"):
        room.check(room.member(CAROL, BOB, "leave"))


@pytest.mark.parametrize("version", versions())
def test_user_below_kick_level_cannot_kick(version: str) -> None:
    room = Room(version, power_levels={"users": {BOB: 10, CAROL: 40}})
    room.set_member(BOB, "join")
    room.set_member(CAROL, "join")
    with pytest.raises(AuthError, match="kick"):
        room.check(room.member(CAROL, BOB, "leave"))


@pytest.mark.parametrize("version", versions())
def test_unban_needs_ban_level(version: str) -> None:
    users = {CAROL: 60} if version == "12" else {ALICE: 100, CAROL: 60}
    room = Room(version, power_levels={"users": users, "kick": 50, "ban": 70})
    room.set_member(CAROL, "join")
    room.set_member(BOB, "ban", sender=ALICE)
    with pytest.raises(AuthError, match="ban level"):
        room.check(room.member(CAROL, BOB, "leave"))
    room.check(room.member(ALICE, BOB, "leave"))


@pytest.mark.parametrize("version", versions())
def test_non_member_cannot_kick(version: str) -> None:
    room = Room(version, power_levels={"users": {CAROL: 100}})
    room.set_member(BOB, "join")
    with pytest.raises(AuthError, match="not in the room"):
        room.check(room.member(CAROL, BOB, "leave"))


# --- bans


@pytest.mark.parametrize("version", versions())
def test_moderator_can_ban_lower_user(version: str) -> None:
    room = Room(version)
    room.check(room.member(ALICE, BOB, "ban"))


@pytest.mark.parametrize("version", versions())
def test_user_below_ban_level_cannot_ban(version: str) -> None:
    room = Room(version, power_levels={"users": {CAROL: 49}})
    room.set_member(CAROL, "join")
    with pytest.raises(AuthError, match="ban"):
        room.check(room.member(CAROL, BOB, "ban"))


@pytest.mark.parametrize("version", versions("1", "11"))
def test_cannot_ban_higher_user(version: str) -> None:
    room = Room(version, power_levels={"users": {ALICE: 100, CAROL: 50}})
    room.set_member(CAROL, "join")
    with pytest.raises(AuthError, match="ban"):
        room.check(room.member(CAROL, ALICE, "ban"))


@pytest.mark.parametrize("version", versions())
def test_non_member_cannot_ban(version: str) -> None:
    room = Room(version, power_levels={"users": {CAROL: 100}})
    with pytest.raises(AuthError, match="not in the room"):
        room.check(room.member(CAROL, BOB, "ban"))


# --- knocking


@pytest.mark.parametrize("version,allowed", [(v, int(v) >= 7) for v in versions()])
def test_knock_only_from_v7_with_knock_rule(version: str, allowed: bool) -> None:
    room = Room(version, join_rule="knock")
    assert room.allowed(room.member(BOB, BOB, "knock")) is allowed


@pytest.mark.parametrize("version", versions("7"))
@pytest.mark.parametrize("join_rule", ["public", "invite", "restricted"])
def test_knock_rejected_under_other_join_rules(version: str, join_rule: str) -> None:
    room = Room(version, join_rule=join_rule)
    with pytest.raises(AuthError, match="knocking"):
        room.check(room.member(BOB, BOB, "knock"))


@pytest.mark.parametrize("version,allowed", [(v, int(v) >= 10) for v in versions("7")])
def test_knock_under_knock_restricted_from_v10(version: str, allowed: bool) -> None:
    room = Room(version, join_rule="knock_restricted")
    assert room.allowed(room.member(BOB, BOB, "knock")) is allowed


@pytest.mark.parametrize("version", versions("7"))
def test_cannot_knock_for_someone_else(version: str) -> None:
    room = Room(version, join_rule="knock")
    with pytest.raises(AuthError, match="behalf"):
        room.check(room.member(ALICE, BOB, "knock"))


@pytest.mark.parametrize("version", versions("7"))
@pytest.mark.parametrize("membership", ["ban", "invite", "join"])
def test_cannot_knock_when_banned_invited_or_joined(version: str, membership: str) -> None:
    room = Room(version, join_rule="knock")
    room.set_member(BOB, membership, sender=ALICE)
    with pytest.raises(AuthError, match="cannot knock"):
        room.check(room.member(BOB, BOB, "knock"))


# --- malformed


@pytest.mark.parametrize("version", versions())
def test_unknown_membership_is_rejected(version: str) -> None:
    room = Room(version)
    with pytest.raises(AuthError, match="unknown membership"):
        room.check(room.member(ALICE, ALICE, "dance"))


@pytest.mark.parametrize("version", versions())
def test_member_event_without_membership_is_rejected(version: str) -> None:
    room = Room(version)
    with pytest.raises(AuthError, match="membership"):
        room.check(room.event("m.room.member", ALICE, {}, state_key=ALICE))
