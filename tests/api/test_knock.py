"""Knocking on rooms, and restricted joins, as local users see them."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.api.test_rooms import create_room, invite, join, send_text, state
from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"
ALICE = "@alice:test.local"
BOB = "@bob:test.local"
CAROL = "@carol:test.local"


async def knock(client: Client, room_id_or_alias: str, **body: Any) -> Any:
    return await client.post(f"{V3}/knock/{room_id_or_alias}", body)


async def knock_room(client: Client, version: str = "12", join_rule: str = "knock") -> str:
    return await create_room(client, room_version=version, initial_state=[
        {"type": "m.room.join_rules", "content": {"join_rule": join_rule}}])


async def membership_of(client: Client, room_id: str, user_id: str) -> Any:
    return (await state(client, room_id))[("m.room.member", user_id)]["content"]


# -- knocking -------------------------------------------------------------------


@pytest.mark.parametrize("version", ["7", "10", "12"])
@pytest_twisted.ensureDeferred
async def test_knock_is_seen_by_members_then_invite_and_join(server: TestServer,
                                                             version: str) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await knock_room(alice, version)

    resp = await knock(bob, room_id, reason="let me in")
    assert (resp.code, resp.body) == (200, {"room_id": room_id})

    content = await membership_of(alice, room_id, BOB)
    assert content["membership"] == "knock"
    assert content["reason"] == "let me in"
    members = await alice.get(f"{V3}/rooms/{room_id}/members",
                              params={"membership": "knock"})
    assert [e["state_key"] for e in members.body["chunk"]] == [BOB]
    # knocking is not joining
    assert (await send(bob, room_id)).code == 403

    assert (await invite(alice, room_id, BOB)).code == 200
    assert (await membership_of(alice, room_id, BOB))["membership"] == "invite"
    assert (await join(bob, room_id)).code == 200
    assert (await membership_of(alice, room_id, BOB))["membership"] == "join"
    await send_text(bob, room_id, "thanks", "t1")


async def send(client: Client, room_id: str) -> Any:
    return await client.put(f"{V3}/rooms/{room_id}/send/m.room.message/x",
                            {"msgtype": "m.text", "body": "hi"})


@pytest_twisted.ensureDeferred
async def test_knocker_cannot_join_without_an_invite(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await knock_room(alice)
    assert (await knock(bob, room_id)).code == 200
    resp = await join(bob, room_id)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_knocker_rescinds_with_leave(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await knock_room(alice)
    assert (await knock(bob, room_id)).code == 200

    resp = await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    assert resp.code == 200, resp.body
    assert (await membership_of(alice, room_id, BOB))["membership"] == "leave"
    # and may knock again
    assert (await knock(bob, room_id)).code == 200


@pytest_twisted.ensureDeferred
async def test_knock_by_alias(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await knock_room(alice)
    resp = await alice.put(f"{V3}/directory/room/%23knockers:test.local",
                           {"room_id": room_id})
    assert resp.code == 200, resp.body
    resp = await knock(bob, "%23knockers:test.local")
    assert (resp.code, resp.body) == (200, {"room_id": room_id})
    assert (await membership_of(alice, room_id, BOB))["membership"] == "knock"


@pytest_twisted.ensureDeferred
async def test_join_by_alias(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    resp = await alice.put(f"{V3}/directory/room/%23lobby:test.local", {"room_id": room_id})
    assert resp.code == 200, resp.body
    resp = await bob.post(f"{V3}/join/%23lobby:test.local", {})
    assert (resp.code, resp.body) == (200, {"room_id": room_id})
    assert (await membership_of(alice, room_id, BOB))["membership"] == "join"
    resp = await bob.post(f"{V3}/join/%23nowhere:test.local", {})
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_knock_restricted_allows_knocking(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await knock_room(alice, "10", "knock_restricted")
    assert (await knock(bob, room_id)).code == 200
    assert (await membership_of(alice, room_id, BOB))["membership"] == "knock"


@pytest.mark.parametrize("version,join_rule", [
    ("12", "public"),
    ("12", "invite"),
    ("6", "knock"),  # knocking came with v7
    ("9", "knock_restricted"),  # and knock_restricted with v10
])
@pytest_twisted.ensureDeferred
async def test_knock_is_refused_where_the_room_does_not_allow_it(
        server: TestServer, version: str, join_rule: str) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await knock_room(alice, version, join_rule)
    resp = await knock(bob, room_id)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert ("m.room.member", BOB) not in await state(alice, room_id)


@pytest_twisted.ensureDeferred
async def test_members_cannot_knock(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await knock_room(alice)
    resp = await knock(alice, room_id)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_banned_user_cannot_knock(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await knock_room(alice)
    resp = await alice.post(f"{V3}/rooms/{room_id}/ban", {"user_id": BOB})
    assert resp.code == 200, resp.body
    resp = await knock(bob, room_id)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


# -- bad input ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_knock_on_an_unknown_room_or_alias_is_404(server: TestServer) -> None:
    bob = await server.register("bob")
    for target in ("!nowhere:test.local", "%23nowhere:test.local"):
        resp = await knock(bob, target)
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND"), target


@pytest.mark.parametrize("target", ["nowhere", "@bob:test.local", "!"])
@pytest_twisted.ensureDeferred
async def test_knock_on_something_not_a_room_is_400(server: TestServer, target: str) -> None:
    bob = await server.register("bob")
    resp = await knock(bob, target)
    assert resp.code == 400, resp.body


@pytest_twisted.ensureDeferred
async def test_knock_reason_must_be_a_string(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await knock_room(alice)
    resp = await knock(bob, room_id, reason=5)
    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")


@pytest_twisted.ensureDeferred
async def test_knock_needs_a_login(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await knock_room(alice)
    resp = await server.client().post(f"{V3}/knock/{room_id}", {})
    assert (resp.code, resp.body["errcode"]) == (401, "M_MISSING_TOKEN")


# -- restricted joins -----------------------------------------------------------


async def restricted_room(client: Client, allowed_room: str, version: str = "12",
                          join_rule: str = "restricted", **body: Any) -> str:
    return await create_room(client, room_version=version, initial_state=[
        {"type": "m.room.join_rules", "content": {
            "join_rule": join_rule,
            "allow": [{"type": "m.room_membership", "room_id": allowed_room}]}}], **body)


@pytest.mark.parametrize("version,join_rule", [
    ("8", "restricted"), ("10", "knock_restricted"), ("11", "restricted"),
    ("12", "restricted"), ("12", "knock_restricted"),
])
@pytest_twisted.ensureDeferred
async def test_member_of_the_allowed_room_may_join(server: TestServer, version: str,
                                                   join_rule: str) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    space = await create_room(alice, preset="public_chat")
    room_id = await restricted_room(alice, space, version, join_rule)
    assert (await join(bob, space)).code == 200

    resp = await join(bob, room_id)
    assert (resp.code, resp.body) == (200, {"room_id": room_id})

    content = await membership_of(alice, room_id, BOB)
    assert content["membership"] == "join"
    assert content["join_authorised_via_users_server"] == ALICE


@pytest_twisted.ensureDeferred
async def test_authorising_user_is_a_local_member_who_can_invite(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    space = await create_room(alice, preset="public_chat")
    # only bob (power 50) may invite; alice left
    room_id = await restricted_room(
        alice, space, "11", invite=[BOB],
        power_level_content_override={"invite": 50, "users": {ALICE: 100, BOB: 50}})
    assert (await join(bob, room_id)).code == 200
    assert (await alice.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    assert (await join(carol, space)).code == 200

    assert (await join(carol, room_id)).code == 200
    content = await membership_of(bob, room_id, CAROL)
    assert content["join_authorised_via_users_server"] == BOB


@pytest_twisted.ensureDeferred
async def test_user_outside_the_allowed_rooms_cannot_join(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    space = await create_room(alice)
    room_id = await restricted_room(alice, space)
    resp = await join(bob, room_id)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    # nor may a knock_restricted room be joined: bob must knock
    knockable = await restricted_room(alice, space, "12", "knock_restricted")
    resp = await join(bob, knockable)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (await knock(bob, knockable)).code == 200


@pytest_twisted.ensureDeferred
async def test_restricted_join_without_anyone_to_authorise_it(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    space = await create_room(alice, preset="public_chat")
    room_id = await restricted_room(
        alice, space, "11", power_level_content_override={"invite": 101})
    assert (await join(bob, space)).code == 200
    resp = await join(bob, room_id)
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNABLE_TO_GRANT_JOIN")


@pytest_twisted.ensureDeferred
async def test_invited_user_joins_a_restricted_room_without_authoriser(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    space = await create_room(alice)
    room_id = await restricted_room(alice, space, invite=[BOB])
    assert (await join(bob, room_id)).code == 200
    content = await membership_of(alice, room_id, BOB)
    assert content["membership"] == "join"
    assert "join_authorised_via_users_server" not in content


@pytest_twisted.ensureDeferred
async def test_restricted_rule_before_v8_is_invite_only(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    space = await create_room(alice, preset="public_chat")
    assert (await join(bob, space)).code == 200
    room_id = await restricted_room(alice, space, "7")
    resp = await join(bob, room_id)
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
