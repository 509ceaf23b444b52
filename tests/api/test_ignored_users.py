"""Ignoring users: their messages and invites stop reaching the ignoring user;
their state events still do."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.api.test_room_reads import context, get_event, timeline
from tests.api.test_rooms import BOB, V3, create_room, invite, send_text, two_users_in_a_room
from tests.harness import Client, TestServer
from tests.sync.test_sync import sync


async def ignore(client: Client, *user_ids: str) -> Any:
    return await client.put(f"{V3}/user/{client.user_id}/account_data/m.ignored_user_list",
                            {"ignored_users": {u: {} for u in user_ids}})


def texts(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def sync_texts(body: dict[str, Any], room_id: str) -> list[str]:
    room = body["rooms"]["join"].get(room_id)
    return texts(room["timeline"]["events"]) if room is not None else []


@pytest_twisted.ensureDeferred
async def test_ignored_users_messages_are_hidden_everywhere(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    carol = await server.register("carol")
    assert (await carol.post(f"{V3}/rooms/{room_id}/join", {})).code == 200
    await send_text(bob, room_id, "bob before", "b1")
    first = await sync(alice)

    assert (await ignore(alice, bob.user_id or "")).code == 200
    hidden = await send_text(bob, room_id, "bob while ignored", "b2")
    await send_text(carol, room_id, "carol", "c1")
    name = await bob.put(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}",
                         {"membership": "join", "displayname": "Bobby"})
    assert name.code == 200, name.body

    later = await sync(alice, since=first["next_batch"])
    assert sync_texts(later, room_id) == ["carol"]
    # state events of ignored users still go out
    events = later["rooms"]["join"][room_id]["timeline"]["events"]
    assert any(e["type"] == "m.room.member" and e["sender"] == bob.user_id
               and e["content"].get("displayname") == "Bobby" for e in events)
    # the list itself arrives too
    assert any(e["type"] == "m.ignored_user_list" for e in later["account_data"]["events"])

    fresh = await sync(alice)
    assert sync_texts(fresh, room_id) == ["carol"]
    assert texts(await timeline(alice, room_id)) == ["carol"]
    assert (await get_event(alice, room_id, hidden)).code == 404
    around = await context(alice, room_id, name.body["event_id"])
    assert around.code == 200, around.body
    assert texts(around.body["events_before"] + around.body["events_after"]) == ["carol"]

    # bob and carol still see everything
    assert texts(await timeline(carol, room_id)) == ["bob before", "bob while ignored", "carol"]


@pytest_twisted.ensureDeferred
async def test_unignoring_resumes_without_resending_what_was_missed(
        server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    await ignore(alice, bob.user_id or "")
    start = await sync(alice)
    await send_text(bob, room_id, "missed", "b1")

    await ignore(alice)
    after_unignore = await sync(alice, since=start["next_batch"])
    await send_text(bob, room_id, "seen again", "b2")
    later = await sync(alice, since=after_unignore["next_batch"])

    assert sync_texts(later, room_id) == ["seen again"]


@pytest_twisted.ensureDeferred
async def test_invites_from_ignored_users_are_not_delivered(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    await ignore(bob, alice.user_id or "")
    start = await sync(bob)
    ignored_room = await create_room(alice)
    other_room = await create_room(carol)

    assert (await invite(alice, ignored_room, BOB)).code == 200
    assert (await invite(carol, other_room, BOB)).code == 200
    later = await sync(bob, since=start["next_batch"])
    fresh = await sync(bob)

    assert list(later["rooms"]["invite"]) == [other_room]
    assert list(fresh["rooms"]["invite"]) == [other_room]


@pytest_twisted.ensureDeferred
async def test_ignoring_yourself_is_refused(server: TestServer) -> None:
    alice = await server.register("alice")

    resp = await ignore(alice, alice.user_id or "", "@bob:test.local")

    assert (resp.code, resp.body["errcode"]) == (400, "M_UNKNOWN")
    got = await alice.get(f"{V3}/user/{alice.user_id}/account_data/m.ignored_user_list")
    assert got.code == 404


@pytest_twisted.ensureDeferred
async def test_a_long_poll_is_not_answered_with_an_ignored_message(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    await ignore(alice, bob.user_id or "")
    start = await sync(alice)
    settled = await sync(alice, since=start["next_batch"], timeout=0)

    await send_text(bob, room_id, "ignored", "b1")
    await send_text(alice, room_id, "mine", "a1")
    later = await sync(alice, since=settled["next_batch"])
    await send_text(bob, room_id, "ignored again", "b2")
    last = await sync(alice, since=later["next_batch"], timeout=300)

    assert sync_texts(later, room_id) == ["mine"]
    assert sync_texts(last, room_id) == []
