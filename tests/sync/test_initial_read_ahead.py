"""An initial sync over many rooms reads them together and says exactly
what it says of each room read alone.

With more than one joined room, an initial sync reads every room's first
page of timeline, the state at each timeline's start and what serialising
them needs in a few queries for all rooms (``RoomBuilder._read_ahead``).
Filtering the sync to one room (``room.rooms``) takes the room-by-room way.
Each case builds rooms that exercise what the shared reads must get right
(history before the user joined, a timeline filter that thins the first
page, the user's own transaction IDs, replaced state, edits and threads)
and compares each room of the whole sync with the same room synced alone.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.harness import Client, TestServer
from tests.helpers import create_room, join, q, send, send_text
from tests.sync.test_fast_path import without_age
from tests.sync.test_sync import sync

V3 = "/_matrix/client/v3"

FILTERS: dict[str, dict[str, Any]] = {
    "plain": {"room": {"timeline": {"limit": 10}}},
    "Element's (lazy members, thread counts)": {
        "room": {"state": {"lazy_load_members": True},
                 "timeline": {"limit": 10, "unread_thread_notifications": True}}},
    "a type filter that thins the first page": {
        "room": {"timeline": {"limit": 4, "not_types": ["org.example.noise"]}}},
}


async def chat_with_history(alice: Client, bob: Client, carol: Client) -> str:
    """Messages of everybody (bob's with transaction IDs), a topic changed
    (prev_content), alice's edit of her message and a thread on it."""
    room_id = await create_room(alice, preset="public_chat", name="Chat")
    await join(bob, room_id)
    await join(carol, room_id)
    first = await send_text(alice, room_id, "hello", "a1")
    await send_text(bob, room_id, "hi alice", "b1")
    for topic in ("one", "two"):
        resp = await alice.put(f"{V3}/rooms/{q(room_id)}/state/m.room.topic/", {"topic": topic})
        assert resp.code == 200
    resp = await send(alice, room_id, {"msgtype": "m.text", "body": "* hi all",
                                       "m.new_content": {"msgtype": "m.text", "body": "hi all"},
                                       "m.relates_to": {"rel_type": "m.replace",
                                                        "event_id": first}}, "a2")
    assert resp.code == 200
    resp = await send(carol, room_id, {"msgtype": "m.text", "body": "in a thread",
                                       "m.relates_to": {"rel_type": "m.thread",
                                                        "event_id": first}}, "c1")
    assert resp.code == 200
    await send_text(carol, room_id, "@bob:test.local look", "c2")
    return room_id


async def joined_late(alice: Client, bob: Client, carol: Client) -> str:
    """History bob may not see (``joined`` visibility), then bob joins: the
    newest page reaches back past his join."""
    room_id = await create_room(alice, preset="public_chat", name="Late")
    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/state/m.room.history_visibility/",
                           {"history_visibility": "joined"})
    assert resp.code == 200
    await join(carol, room_id)
    for k in range(4):
        await send_text(carol, room_id, f"before bob {k}", f"l{k}")
    await join(bob, room_id)
    await send_text(alice, room_id, "welcome bob", "w")
    return room_id


async def noisy(alice: Client, bob: Client, carol: Client) -> str:
    """More events of a filtered-out type than a first page holds, between
    the messages."""
    room_id = await create_room(alice, preset="public_chat")
    await join(bob, room_id)
    await join(carol, room_id)
    await send_text(alice, room_id, "early", "e")
    for k in range(25):
        resp = await send(carol if k % 2 else alice, room_id, {"n": k}, f"n{k}",
                          "org.example.noise")
        assert resp.code == 200
    await send_text(alice, room_id, "late", "l")
    return room_id


@pytest.mark.parametrize("name", list(FILTERS))
@pytest_twisted.ensureDeferred
async def test_initial_sync_of_many_rooms_says_what_each_room_alone_says(
        server: TestServer, name: str) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    rooms = [await make(alice, bob, carol) for make in (chat_with_history, joined_late, noisy)]
    sync_filter = FILTERS[name]

    whole = (await sync(bob, filter=sync_filter))["rooms"]["join"]
    assert set(whole) == set(rooms)
    for room_id in rooms:
        alone_filter = {**sync_filter, "room": {**sync_filter["room"], "rooms": [room_id]}}
        alone = (await sync(bob, filter=alone_filter))["rooms"]["join"]
        assert list(alone) == [room_id]
        assert without_age(whole[room_id]) == without_age(alone[room_id]), room_id


@pytest_twisted.ensureDeferred
async def test_initial_sync_of_many_rooms_shows_what_bob_sees(server: TestServer) -> None:
    """What the shared reads carry, as a client sees it."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    chat = await chat_with_history(alice, bob, carol)
    late = await joined_late(alice, bob, carol)
    noise = await noisy(alice, bob, carol)

    body = await sync(bob, filter=FILTERS["plain"])
    rooms = body["rooms"]["join"]
    events = rooms[chat]["timeline"]["events"]
    own = [e for e in events if e["sender"] == "@bob:test.local"
           and e["type"] == "m.room.message"]
    assert [e["unsigned"].get("transaction_id") for e in own] == ["b1"]
    topics = [e for e in events if e["type"] == "m.room.topic"
              and e["content"]["topic"] == "two"]
    assert topics[0]["unsigned"]["prev_content"] == {"topic": "one"}
    hello = next(e for e in events if e["content"].get("body") == "hello")
    relations = hello["unsigned"]["m.relations"]
    assert relations["m.replace"]["content"]["m.new_content"]["body"] == "hi all"
    assert relations["m.thread"]["count"] == 1
    # bob cannot see what was said before he joined a "joined" room
    late_bodies = [e["content"].get("body") for e in rooms[late]["timeline"]["events"]
                   if e["type"] == "m.room.message"]
    assert late_bodies == ["welcome bob"]

    body = await sync(bob, filter=FILTERS["a type filter that thins the first page"])
    # the noise is filtered out, and the page reaches the message before it
    noise_bodies = [e["content"].get("body")
                    for e in body["rooms"]["join"][noise]["timeline"]["events"]]
    assert noise_bodies[-2:] == ["early", "late"]
