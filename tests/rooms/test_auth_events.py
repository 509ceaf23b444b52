"""Non-membership events: joined sender, send levels, @-state keys, aliases,
redactions, m.federate, and the room of the auth events."""

from __future__ import annotations

import dataclasses

import pytest

from homeserver.rooms.auth import AuthError, check_auth_rules
from tests.rooms.helpers import ALICE, BOB, Room, versions


@pytest.mark.parametrize("version", versions())
def test_member_can_send_a_message(version: str) -> None:
    room = Room(version)
    room.set_member(BOB, "join")
    room.check(room.event("m.room.message", BOB, {"body": "hi"}))


@pytest.mark.parametrize("version", versions())
@pytest.mark.parametrize("membership", [None, "invite", "leave", "ban", "knock"])
def test_sender_not_in_room_cannot_send(version: str, membership: str | None) -> None:
    room = Room(version)
    if membership is not None:
        room.set_member(BOB, membership, sender=ALICE)
    with pytest.raises(AuthError, match="not in the room"):
        room.check(room.event("m.room.message", BOB, {"body": "hi"}))


@pytest.mark.parametrize("version", versions())
def test_state_default_applies_to_state_events(version: str) -> None:
    room = Room(version)
    room.set_member(BOB, "join")
    with pytest.raises(AuthError, match="needs power level 50"):
        room.check(room.event("m.room.topic", BOB, {"topic": "x"}, state_key=""))
    room.check(room.event("m.room.topic", ALICE, {"topic": "x"}, state_key=""))


@pytest.mark.parametrize("version", versions())
def test_events_default_and_events_overrides(version: str) -> None:
    users = {} if version == "12" else {ALICE: 100}
    room = Room(version, power_levels={"users": users, "events_default": 10,
                                       "events": {"m.reaction": 0, "m.room.topic": 0}})
    room.set_member(BOB, "join")
    with pytest.raises(AuthError, match="needs power level 10"):
        room.check(room.event("m.room.message", BOB, {"body": "hi"}))
    room.check(room.event("m.reaction", BOB, {}))
    room.check(room.event("m.room.topic", BOB, {"topic": "x"}, state_key=""))


@pytest.mark.parametrize("version", versions())
def test_state_key_naming_another_user_is_rejected(version: str) -> None:
    room = Room(version, power_levels={"users": {BOB: 100}} if version == "12"
                else {"users": {ALICE: 100, BOB: 100}})
    room.set_member(BOB, "join")
    with pytest.raises(AuthError, match="@-state_key"):
        room.check(room.event("org.example.profile", BOB, {}, state_key=ALICE))


@pytest.mark.parametrize("version", versions())
def test_state_key_naming_the_sender_is_allowed(version: str) -> None:
    room = Room(version)
    room.check(room.event("org.example.profile", ALICE, {}, state_key=ALICE))


# --- m.room.aliases


@pytest.mark.parametrize("version", versions("1", "5"))
def test_v1_to_v5_server_may_set_its_aliases_without_membership(version: str) -> None:
    room = Room(version)
    room.check(room.event("m.room.aliases", BOB, {"aliases": ["#x:b.test"]}, state_key="b.test"))


@pytest.mark.parametrize("version", versions("1", "5"))
def test_v1_to_v5_aliases_for_another_server_are_rejected(version: str) -> None:
    room = Room(version)
    with pytest.raises(AuthError, match="aliases"):
        room.check(room.event("m.room.aliases", ALICE, {"aliases": []}, state_key="b.test"))


@pytest.mark.parametrize("version", versions("6"))
def test_from_v6_aliases_follow_the_ordinary_state_rules(version: str) -> None:
    room = Room(version)
    with pytest.raises(AuthError, match="not in the room"):
        room.check(room.event("m.room.aliases", BOB, {"aliases": []}, state_key="b.test"))
    room.check(room.event("m.room.aliases", ALICE, {"aliases": []}, state_key="b.test"))


# --- redactions


@pytest.mark.parametrize("version", versions("1", "2"))
def test_v1_v2_redaction_below_redact_level_of_other_servers_event(version: str) -> None:
    room = Room(version)
    room.set_member(BOB, "join")
    with pytest.raises(AuthError, match="redact"):
        room.check(room.event("m.room.redaction", BOB, {}, redacts="$1:a.test"))


@pytest.mark.parametrize("version", versions("1", "2"))
def test_v1_v2_redaction_of_same_servers_event_is_allowed(version: str) -> None:
    room = Room(version)
    room.set_member(BOB, "join")
    room.check(room.event("m.room.redaction", BOB, {}, redacts="$1:b.test"))


@pytest.mark.parametrize("version", versions("1", "2"))
def test_v1_v2_redaction_at_redact_level_is_allowed(version: str) -> None:
    room = Room(version)
    room.check(room.event("m.room.redaction", ALICE, {}, redacts="$1:b.test"))


@pytest.mark.parametrize("version", versions("3"))
def test_from_v3_redact_level_is_not_an_auth_rule(version: str) -> None:
    room = Room(version)
    room.set_member(BOB, "join")
    room.check(room.event("m.room.redaction", BOB, {"redacts": "$other"}, redacts="$other"))


@pytest.mark.parametrize("version", versions("3"))
def test_from_v3_redaction_events_level_still_applies(version: str) -> None:
    users = {} if version == "12" else {ALICE: 100}
    room = Room(version, power_levels={"users": users, "events": {"m.room.redaction": 20}})
    room.set_member(BOB, "join")
    with pytest.raises(AuthError, match="needs power level 20"):
        room.check(room.event("m.room.redaction", BOB, {"redacts": "$x"}, redacts="$x"))


# --- m.federate and room consistency


@pytest.mark.parametrize("version", versions())
def test_unfederated_room_rejects_other_servers(version: str) -> None:
    room = Room(version, join_rule="public", create_content={"m.federate": False})
    with pytest.raises(AuthError, match="not federated"):
        room.check(room.member(BOB, BOB, "join"))
    room.check(room.member("@eve:a.test", "@eve:a.test", "join"))


@pytest.mark.parametrize("version", versions())
def test_auth_event_from_another_room_is_rejected(version: str) -> None:
    room = Room(version)
    other = Room(version)
    state = dict(room.state)
    state[("m.room.power_levels", "")] = other.state[("m.room.power_levels", "")]
    with pytest.raises(AuthError, match="another room"):
        check_auth_rules(room.event("m.room.message", ALICE, {"body": "hi"}), state)


@pytest.mark.parametrize("version", versions())
def test_rejected_auth_event_is_rejected(version: str) -> None:
    room = Room(version)
    state = dict(room.state)
    key = ("m.room.member", ALICE)
    state[key] = dataclasses.replace(state[key], rejected_reason="auth")
    with pytest.raises(AuthError, match="rejected"):
        check_auth_rules(room.event("m.room.message", ALICE, {"body": "hi"}), state)


@pytest.mark.parametrize("version", versions())
def test_unrelated_state_does_not_matter(version: str) -> None:
    room = Room(version)
    other = Room(version)
    state = dict(room.state)
    state[("m.room.topic", "")] = dataclasses.replace(
        other.send_state("m.room.topic", ALICE, {"topic": "t"}), rejected_reason="x")
    check_auth_rules(room.event("m.room.message", ALICE, {"body": "hi"}), state)
