"""Membership and room API details as clients see them (and as Synapse
answers): kicks need a target in the room, joins carry the client's own
content and are idempotent, a redaction names an event of its own room,
/messages says where to continue, /joined_members lists both profile keys."""

from __future__ import annotations

import pytest_twisted

from tests.api.test_rooms import (
    ALICE,
    BOB,
    V3,
    create_room,
    join,
    joined_members,
    send_text,
    two_users_in_a_room,
)
from tests.harness import TestServer


@pytest_twisted.ensureDeferred
async def test_users_cannot_kick_users_who_are_not_in_the_room(server: TestServer) -> None:
    alice = await server.register("alice")
    await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    never_came = await alice.post(f"{V3}/rooms/{room_id}/kick", {"user_id": BOB})
    assert (never_came.code, never_came.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_users_cannot_kick_users_who_already_left(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    assert (await bob.post(f"{V3}/rooms/{room_id}/leave", {})).code == 200
    resp = await alice.post(f"{V3}/rooms/{room_id}/kick", {"user_id": BOB})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_a_banned_user_cannot_be_kicked_invited_or_rejoin_until_unbanned(
        server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    assert (await alice.post(f"{V3}/rooms/{room_id}/ban", {"user_id": BOB})).code == 200
    assert (await join(bob, room_id)).code == 403
    assert (await alice.post(f"{V3}/rooms/{room_id}/invite", {"user_id": BOB})).code == 403
    kick = await alice.post(f"{V3}/rooms/{room_id}/kick", {"user_id": BOB})
    assert kick.code == 403  # a kick would lift the ban: /unban is the way
    member = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{BOB}")
    assert member.body["membership"] == "ban"
    assert (await alice.post(f"{V3}/rooms/{room_id}/unban", {"user_id": BOB})).code == 200
    assert (await join(bob, room_id)).code == 200


@pytest_twisted.ensureDeferred
async def test_joining_twice_sends_no_new_event(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    first = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{BOB}",
                            params={"format": "event"})
    assert (await join(bob, room_id)).code == 200
    again = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{BOB}",
                            params={"format": "event"})
    assert again.body["event_id"] == first.body["event_id"]


@pytest_twisted.ensureDeferred
async def test_a_join_carries_the_clients_own_content(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    resp = await bob.post(f"{V3}/join/{room_id}",
                          {"foo": "bar", "membership": "leave", "reason": "hi",
                           "join_authorised_via_users_server": ALICE})
    assert (resp.code, resp.body) == (200, {"room_id": room_id})
    member = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{BOB}")
    # the server decides the membership and who authorised the join
    assert member.body == {"foo": "bar", "membership": "join", "reason": "hi",
                           "displayname": "bob"}


@pytest_twisted.ensureDeferred
async def test_redacting_an_event_of_another_room_is_400(server: TestServer) -> None:
    alice = await server.register("alice")
    room_a = await create_room(alice, preset="public_chat")
    room_b = await create_room(alice, preset="public_chat")
    event_id = await send_text(alice, room_a, "hello", "t1")
    resp = await alice.put(f"{V3}/rooms/{room_b}/redact/{event_id}/r1", {})
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")
    event = await alice.get(f"{V3}/rooms/{room_a}/event/{event_id}")
    assert event.body["content"] == {"msgtype": "m.text", "body": "hello"}


@pytest_twisted.ensureDeferred
async def test_messages_has_an_end_while_it_returns_events(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    sync = await alice.get(f"{V3}/sync")
    next_batch = sync.body["next_batch"]
    await send_text(alice, room_id, "after", "t1")
    forwards = await alice.get(f"{V3}/rooms/{room_id}/messages",
                               params={"dir": "f", "from": next_batch})
    assert [e["content"].get("body") for e in forwards.body["chunk"]] == ["after"]
    assert "end" in forwards.body  # the page reached the end, but had events
    beyond = await alice.get(f"{V3}/rooms/{room_id}/messages",
                             params={"dir": "f", "from": forwards.body["end"]})
    assert beyond.body["chunk"] == [] and "end" not in beyond.body


@pytest_twisted.ensureDeferred
async def test_paginating_from_a_whole_initial_timeline_returns_it(server: TestServer) -> None:
    # as on Synapse: the prev_batch of a timeline that holds the whole room
    # is its end, and paging back from it gives the events, then stops
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await send_text(alice, room_id, "hello", "t1")
    sync = await alice.get(f"{V3}/sync")
    timeline = sync.body["rooms"]["join"][room_id]["timeline"]
    assert timeline["limited"] is False
    back = await alice.get(f"{V3}/rooms/{room_id}/messages",
                           params={"dir": "b", "from": timeline["prev_batch"]})
    assert back.body["chunk"][0]["content"]["body"] == "hello"
    assert "end" in back.body
    more = await alice.get(f"{V3}/rooms/{room_id}/messages",
                           params={"dir": "b", "from": back.body["end"]})
    assert more.body["chunk"] == [] and "end" not in more.body


@pytest_twisted.ensureDeferred
async def test_joined_members_always_has_both_profile_keys(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    assert await joined_members(alice, room_id) == {
        ALICE: {"display_name": "alice", "avatar_url": None}}
