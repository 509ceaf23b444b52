"""Sends into many rooms at once: written together (group commit), as clients see it.

The writers of several rooms hand their batches to one process-wide writer,
which persists them in one transaction (``rooms/creator.py``). A client must
notice none of it: each room's messages are in the order they were answered,
each a link of one chain; a send the auth rules refuse fails alone; a retry
with the same transaction ID gets the same event; and the unread counts are
right as soon as the send is answered, including for the users a message
names while the others share one verdict (``push/actions.py``).
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer

from tests.harness import Client, TestServer
from tests.helpers import create_public_room, join, q, send, send_text

V3 = "/_matrix/client/v3"
ROOMS = 8
PER_ROOM = 5


async def timeline(client: Client, room_id: str) -> list[dict[str, Any]]:
    """The room's messages, oldest first."""
    resp = await client.get(f"{V3}/rooms/{q(room_id)}/messages",
                            params={"dir": "b", "limit": "100"})
    assert resp.code == 200, resp.body
    return [e for e in resp.body["chunk"][::-1] if e["type"] == "m.room.message"]


async def rooms_of_two(server: TestServer, count: int) -> tuple[Client, Client, list[str]]:
    alice = await server.register("alice")
    bob = await server.register("bob")
    rooms = [await create_public_room(alice, name=f"room {r}") for r in range(count)]
    for room_id in rooms:
        await join(bob, room_id)
    return alice, bob, rooms


async def one_after_another(client: Client, room_id: str, bodies: list[str]) -> list[str]:
    """The messages into one room, each sent once the one before is answered."""
    return [await send_text(client, room_id, body, f"{room_id[1:7]}-{body}")
            for body in bodies]


@pytest_twisted.ensureDeferred
async def test_messages_sent_into_many_rooms_at_once_are_each_rooms_chain_in_order(
        server: TestServer) -> None:
    alice, bob, rooms = await rooms_of_two(server, ROOMS)
    bodies = {room_id: [f"r{r}m{k}" for k in range(PER_ROOM)] for r, room_id in enumerate(rooms)}
    # each room's messages one after another, every room at the same time,
    # and a burst into the first room beside them
    sends = [defer.ensureDeferred(one_after_another(alice if r % 2 else bob, room_id,
                                                    bodies[room_id]))
             for r, room_id in enumerate(rooms)]
    burst = [defer.ensureDeferred(send_text(alice, rooms[0], f"burst {k}", f"b{k}"))
             for k in range(10)]
    answered = await defer.gatherResults(sends)
    burst_ids = await defer.gatherResults(burst)

    for room_id, event_ids in zip(rooms, answered, strict=True):
        got = await timeline(bob, room_id)
        mine = [e for e in got if not e["content"]["body"].startswith("burst")]
        assert [e["content"]["body"] for e in mine] == bodies[room_id]
        assert [e["event_id"] for e in mine] == event_ids
        # one chain: each message follows the one before it, one forward extremity
        for before, after in zip(got, got[1:], strict=False):
            pdu = await server.hs.stores.events.get_event(after["event_id"])
            assert pdu is not None and list(pdu.prev_event_ids) == [before["event_id"]]
        room = await server.hs.stores.rooms.get_room(room_id)
        assert room is not None
        tips = await server.hs.stores.rooms.get_forward_extremities(room.room_nid)
        assert [t.event_id for t in tips] == [got[-1]["event_id"]]
    first_room = {e["event_id"] for e in await timeline(bob, rooms[0])}
    assert set(burst_ids) <= first_room and len(set(burst_ids)) == 10


@pytest_twisted.ensureDeferred
async def test_a_send_the_auth_rules_refuse_fails_alone_among_sends_into_other_rooms(
        server: TestServer) -> None:
    alice, bob, rooms = await rooms_of_two(server, ROOMS)
    carol = await server.register("carol")  # in none of the rooms
    levels_path = f"{V3}/rooms/{q(rooms[3])}/state/m.room.power_levels"
    levels = (await alice.get(levels_path)).body
    sends = []
    for r, room_id in enumerate(rooms):
        sends.append(defer.ensureDeferred(send(alice, room_id, {"msgtype": "m.text",
                                                                "body": f"ok {r}"}, f"ok{r}")))
        sends.append(defer.ensureDeferred(send(carol, room_id, {"msgtype": "m.text",
                                                                "body": "intruder"}, f"c{r}")))
    # bob (power 0) may not change the power levels
    sends.append(defer.ensureDeferred(bob.put(levels_path, {"users": {bob.user_id: 100}})))
    results = await defer.gatherResults(sends)

    assert [r.code for r in results[:-1:2]] == [200] * ROOMS, [r.body for r in results]
    assert [(r.code, r.body["errcode"]) for r in results[1:-1:2]] == \
        [(403, "M_FORBIDDEN")] * ROOMS
    assert (results[-1].code, results[-1].body["errcode"]) == (403, "M_FORBIDDEN")
    for r, room_id in enumerate(rooms):
        assert [e["content"]["body"] for e in await timeline(bob, room_id)] == [f"ok {r}"]
    assert (await alice.get(levels_path)).body == levels


@pytest_twisted.ensureDeferred
async def test_retries_with_the_same_transaction_id_get_the_same_event_in_each_room(
        server: TestServer) -> None:
    alice, bob, rooms = await rooms_of_two(server, ROOMS)
    content = {"msgtype": "m.text", "body": "once"}
    # the same transaction ID into every room, each sent twice at once
    sends = [defer.ensureDeferred(send(alice, room_id, content, "same"))
             for room_id in rooms for _ in range(2)]
    results = await defer.gatherResults(sends)
    assert {r.code for r in results} == {200}
    ids = [r.body["event_id"] for r in results]
    assert all(ids[2 * r] == ids[2 * r + 1] for r in range(ROOMS))
    assert len(set(ids)) == ROOMS  # the ID is per room: a different event in each

    again = await defer.gatherResults([defer.ensureDeferred(send(alice, room_id, content,
                                                                 "same"))
                                       for room_id in rooms])
    assert [r.body["event_id"] for r in again] == ids[::2]
    for room_id in rooms:
        assert [e["content"]["body"] for e in await timeline(bob, room_id)] == ["once"]


@pytest_twisted.ensureDeferred
async def test_unread_counts_are_right_as_soon_as_sends_into_many_rooms_are_answered(
        server: TestServer) -> None:
    alice, bob, rooms = await rooms_of_two(server, ROOMS)
    carol = await server.register("carol")
    resp = await carol.put(f"{V3}/profile/{q(carol.user_id)}/displayname",
                           {"displayname": "Carol Smith"})
    assert resp.code == 200, resp.body
    dave = await server.register("dave")
    # dave changed his rules: nothing in rooms[1] notifies him
    resp = await dave.put(f"{V3}/pushrules/global/room/{q(rooms[1])}",
                          {"actions": ["dont_notify"]})
    assert resp.code == 200, resp.body
    for room_id in rooms:
        await join(carol, room_id)
        await join(dave, room_id)

    contents: list[dict[str, Any]] = [{"msgtype": "m.text", "body": f"hello {r}"}
                                      for r in range(ROOMS)]
    contents[0] = {"msgtype": "m.text", "body": "hi bob", "m.mentions": {"user_ids": [
        bob.user_id]}}
    contents[2] = {"msgtype": "m.text", "body": "is carol smith around?"}
    contents[3] = {"msgtype": "m.text", "body": "ping dave"}
    contents[4] = {"msgtype": "m.text", "body": "Bob: lunch?"}  # the localpart, as a word
    contents[5] = {"msgtype": "m.text", "body": "bobcat sighted"}  # not as a word
    results = await defer.gatherResults([
        defer.ensureDeferred(send(alice, room_id, content, f"n{r}"))
        for r, (room_id, content) in enumerate(zip(rooms, contents, strict=True))])
    assert {r.code for r in results} == {200}

    async def counts(client: Client) -> dict[str, tuple[int, int]]:
        synced = await client.get(f"{V3}/sync")
        assert synced.code == 200, synced.body
        joined = synced.body["rooms"]["join"]
        return {room_id: (joined[room_id]["unread_notifications"]["notification_count"],
                          joined[room_id]["unread_notifications"]["highlight_count"])
                for room_id in rooms}

    expected = {room_id: (1, 0) for room_id in rooms}
    assert await counts(bob) == {**expected, rooms[0]: (1, 1), rooms[4]: (1, 1)}
    assert await counts(carol) == {**expected, rooms[2]: (1, 1)}
    assert await counts(dave) == {**expected, rooms[1]: (0, 0), rooms[3]: (1, 1)}
    assert await counts(alice) == {room_id: (0, 0) for room_id in rooms}
