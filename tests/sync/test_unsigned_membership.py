"""``unsigned.membership`` (MSC4115, spec v1.11): each event a user reads in
a /sync timeline, /messages, /context or /event carries the user's own
membership at that event, the event's own change included; ``leave`` where
they had none yet. Clients use it to tell which encrypted messages they
could never have had the keys for.

Each test tells a user's story (joined, left with history still visible,
invited then joined) and checks the value that user sees for each event, on
both engines. tests/sync/test_fast_path.py checks that the fast path's
answers carry the same as the full builder's.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.harness import Client, TestServer
from tests.helpers import V3, create_room, join, q, send_text
from tests.sync.test_sync import sync


def memberships(events: list[dict[str, Any]]) -> dict[str, str | None]:
    """Event ID -> its ``unsigned.membership`` (None: missing)."""
    return {e["event_id"]: (e.get("unsigned") or {}).get("membership") for e in events}


def by_body(events: list[dict[str, Any]]) -> dict[str, str | None]:
    """A message's body -> its ``unsigned.membership``."""
    return {e["content"]["body"]: (e.get("unsigned") or {}).get("membership")
            for e in events if e["type"] == "m.room.message"}


async def messages(client: Client, room_id: str, **params: str) -> list[dict[str, Any]]:
    resp = await client.get(f"{V3}/rooms/{q(room_id)}/messages",
                            params={"dir": "b", "limit": "50", **params})
    assert resp.code == 200, resp.body
    chunk: list[dict[str, Any]] = resp.body["chunk"]
    return chunk


async def member_event_id(client: Client, room_id: str, user_id: str) -> str:
    resp = await client.get(f"{V3}/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}",
                            params={"format": "event"})
    assert resp.code == 200, resp.body
    return str(resp.body["event_id"])


@pytest_twisted.ensureDeferred
async def test_a_joined_user_sees_join_on_what_came_after_their_join(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")  # history: shared
    await send_text(alice, room_id, "before bob")
    await join(bob, room_id)
    await send_text(alice, room_id, "after bob")

    # an initial sync: bob's join and what followed it are "join"; what came
    # before it, when bob had no membership, "leave"
    timeline = (await sync(bob))["rooms"]["join"][room_id]["timeline"]["events"]
    assert by_body(timeline) == {"before bob": "leave", "after bob": "join"}
    bobs_join = await member_event_id(bob, room_id, bob.user_id)
    assert memberships(timeline)[bobs_join] == "join"
    assert all(m is not None for m in memberships(timeline).values())

    # an incremental sync after a long-poll is woken
    token = (await sync(bob))["next_batch"]
    await send_text(alice, room_id, "later")
    woken = await sync(bob, since=token)
    assert by_body(woken["rooms"]["join"][room_id]["timeline"]["events"]) == {"later": "join"}

    # /messages says the same of the same events
    assert by_body(await messages(bob, room_id)) == {
        "before bob": "leave", "after bob": "join", "later": "join"}
    # alice, the creator, was there for all of it
    assert set(by_body(await messages(alice, room_id)).values()) == {"join"}


@pytest_twisted.ensureDeferred
async def test_a_user_who_left_sees_leave_on_their_leave_and_join_before_it(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    await send_text(alice, room_id, "while bob is here")
    token = (await sync(bob))["next_batch"]
    resp = await bob.post(f"{V3}/rooms/{q(room_id)}/leave", {})
    assert resp.code == 200, resp.body
    bobs_leave = await member_event_id(alice, room_id, bob.user_id)
    await send_text(alice, room_id, "after bob left")

    # the leave comes down /sync in the room's "leave" section
    body = await sync(bob, since=token)
    left = body["rooms"]["leave"][room_id]["timeline"]["events"]
    assert memberships(left)[bobs_leave] == "leave"

    # reading the room's history after leaving (as it was when he left)
    chunk = await messages(bob, room_id)
    assert by_body(chunk) == {"while bob is here": "join"}
    assert memberships(chunk)[bobs_leave] == "leave"

    # /context around the message, and /event
    event_id = next(e["event_id"] for e in chunk if e["type"] == "m.room.message")
    resp = await bob.get(f"{V3}/rooms/{q(room_id)}/context/{q(event_id)}",
                         params={"limit": "10"})
    assert resp.code == 200, resp.body
    assert resp.body["event"]["unsigned"]["membership"] == "join"
    around = memberships(resp.body["events_before"] + resp.body["events_after"])
    assert around[bobs_leave] == "leave"
    resp = await bob.get(f"{V3}/rooms/{q(room_id)}/event/{q(bobs_leave)}")
    assert resp.code == 200, resp.body
    assert resp.body["unsigned"]["membership"] == "leave"


@pytest_twisted.ensureDeferred
async def test_an_invited_user_sees_invite_between_invite_and_join(
        server: TestServer) -> None:
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await create_room(alice, preset="private_chat",
                                initial_state=[{"type": "m.room.history_visibility",
                                                "state_key": "",
                                                "content": {"history_visibility": "invited"}}])
    resp = await alice.post(f"{V3}/rooms/{q(room_id)}/invite", {"user_id": carol.user_id})
    assert resp.code == 200, resp.body
    invite_id = await member_event_id(alice, room_id, carol.user_id)
    await send_text(alice, room_id, "while carol is invited")
    await join(carol, room_id)
    await send_text(alice, room_id, "carol is in")

    chunk = await messages(carol, room_id)
    assert by_body(chunk) == {"while carol is invited": "invite", "carol is in": "join"}
    assert memberships(chunk)[invite_id] == "invite"
    timeline = (await sync(carol))["rooms"]["join"][room_id]["timeline"]["events"]
    assert by_body(timeline) == {"while carol is invited": "invite", "carol is in": "join"}
    # /context agrees
    event_id = next(e["event_id"] for e in chunk
                    if e["type"] == "m.room.message"
                    and e["content"]["body"] == "while carol is invited")
    resp = await carol.get(f"{V3}/rooms/{q(room_id)}/context/{q(event_id)}")
    assert resp.code == 200, resp.body
    assert resp.body["event"]["unsigned"]["membership"] == "invite"
    assert by_body(resp.body["events_after"]) == {"carol is in": "join"}
