"""Receipts and read markers, as clients set them and as /sync will read them."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from homeserver.storage.streams import current_stream_id
from tests.api.test_rooms import ALICE, BOB, V3, create_room, send_text
from tests.api.test_rooms import two_users_in_a_room as shared_room
from tests.harness import Client, Response, TestServer


async def receipt(client: Client, room_id: str, event_id: str, receipt_type: str = "m.read",
                  body: Any = None) -> Response:
    return await client.post(f"{V3}/rooms/{room_id}/receipt/{receipt_type}/{event_id}",
                             {} if body is None else body)


async def read_markers(client: Client, room_id: str, body: Any) -> Response:
    return await client.post(f"{V3}/rooms/{room_id}/read_markers", body)


async def receipts_seen_by(server: TestServer, user_id: str, room_id: str,
                           since: int | None = None) -> dict[str, Any]:
    """The m.receipt content /sync would give ``user_id`` for the room."""
    until = await current_stream_id(server.hs.db)
    events = await server.hs.stores.receipts.get_receipt_events([room_id], since, until, user_id)
    return events.get(room_id, {})


@pytest_twisted.ensureDeferred
async def test_read_receipt_is_visible_to_other_members(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")

    resp = await receipt(bob, room_id, event_id)

    assert (resp.code, resp.body) == (200, {})
    seen = await receipts_seen_by(server, ALICE, room_id)
    assert list(seen) == [event_id]
    assert set(seen[event_id]["m.read"][BOB]) == {"ts"}
    assert isinstance(seen[event_id]["m.read"][BOB]["ts"], int)


@pytest_twisted.ensureDeferred
async def test_receipt_without_a_body_is_accepted(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")

    resp = await bob.post(f"{V3}/rooms/{room_id}/receipt/m.read/{event_id}")

    assert resp.code == 200, resp.body
    assert BOB in (await receipts_seen_by(server, ALICE, room_id))[event_id]["m.read"]


@pytest_twisted.ensureDeferred
async def test_newer_receipt_replaces_the_older_one(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    first = await send_text(alice, room_id, "one", "t1")
    second = await send_text(alice, room_id, "two", "t2")

    await receipt(bob, room_id, first)
    await receipt(bob, room_id, second)

    seen = await receipts_seen_by(server, ALICE, room_id)
    assert list(seen) == [second]


@pytest_twisted.ensureDeferred
async def test_receipt_moving_backwards_is_accepted_and_ignored(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    first = await send_text(alice, room_id, "one", "t1")
    second = await send_text(alice, room_id, "two", "t2")
    await receipt(bob, room_id, second)
    before = await current_stream_id(server.hs.db)

    resp = await receipt(bob, room_id, first)

    assert resp.code == 200
    assert list(await receipts_seen_by(server, ALICE, room_id)) == [second]
    # nothing new for /sync either
    assert await receipts_seen_by(server, ALICE, room_id, since=before) == {}


@pytest_twisted.ensureDeferred
async def test_threaded_receipts_coexist_with_the_unthreaded_one(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    root = await send_text(alice, room_id, "root", "t1")
    main = await send_text(alice, room_id, "main", "t2")
    latest = await send_text(alice, room_id, "latest", "t3")

    await receipt(bob, room_id, latest)
    await receipt(bob, room_id, main, body={"thread_id": "main"})
    await receipt(bob, room_id, root, body={"thread_id": root})

    seen = await receipts_seen_by(server, ALICE, room_id)
    assert "thread_id" not in seen[latest]["m.read"][BOB]
    assert seen[main]["m.read"][BOB]["thread_id"] == "main"
    assert seen[root]["m.read"][BOB]["thread_id"] == root


@pytest_twisted.ensureDeferred
async def test_private_receipt_is_seen_only_by_its_owner(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")

    resp = await receipt(bob, room_id, event_id, "m.read.private")

    assert resp.code == 200
    assert await receipts_seen_by(server, ALICE, room_id) == {}
    own = await receipts_seen_by(server, BOB, room_id)
    assert BOB in own[event_id]["m.read.private"]


@pytest_twisted.ensureDeferred
async def test_fully_read_receipt_type_sets_the_read_marker(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")

    resp = await receipt(bob, room_id, event_id, "m.fully_read")

    assert resp.code == 200, resp.body
    marker = await bob.get(f"{V3}/user/{BOB}/rooms/{room_id}/account_data/m.fully_read")
    assert (marker.code, marker.body) == (200, {"event_id": event_id})
    # a read marker is not a receipt
    assert await receipts_seen_by(server, ALICE, room_id) == {}


@pytest_twisted.ensureDeferred
async def test_read_markers_set_marker_and_both_receipts(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    first = await send_text(alice, room_id, "one", "t1")
    second = await send_text(alice, room_id, "two", "t2")

    resp = await read_markers(bob, room_id, {"m.fully_read": first, "m.read": first,
                                             "m.read.private": second})

    assert (resp.code, resp.body) == (200, {})
    marker = await bob.get(f"{V3}/user/{BOB}/rooms/{room_id}/account_data/m.fully_read")
    assert marker.body == {"event_id": first}
    assert BOB in (await receipts_seen_by(server, ALICE, room_id))[first]["m.read"]
    own = await receipts_seen_by(server, BOB, room_id)
    assert BOB in own[second]["m.read.private"]
    positions = await server.hs.stores.receipts.get_own_receipt_positions(BOB, [room_id])
    second_pos = await server.hs.stores.events.get_event_position(second)
    assert second_pos is not None
    assert positions == {room_id: second_pos.stream_ordering}


@pytest_twisted.ensureDeferred
async def test_read_marker_does_not_move_backwards(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    first = await send_text(alice, room_id, "one", "t1")
    second = await send_text(alice, room_id, "two", "t2")
    await read_markers(bob, room_id, {"m.fully_read": second})

    resp = await read_markers(bob, room_id, {"m.fully_read": first})

    assert resp.code == 200
    marker = await bob.get(f"{V3}/user/{BOB}/rooms/{room_id}/account_data/m.fully_read")
    assert marker.body == {"event_id": second}


@pytest_twisted.ensureDeferred
async def test_empty_read_markers_change_nothing(server: TestServer) -> None:
    _alice, bob, room_id = await shared_room(server)

    resp = await read_markers(bob, room_id, {})

    assert resp.code == 200
    marker = await bob.get(f"{V3}/user/{BOB}/rooms/{room_id}/account_data/m.fully_read")
    assert marker.code == 404


@pytest_twisted.ensureDeferred
async def test_non_member_cannot_send_receipts_or_markers(server: TestServer) -> None:
    alice = await server.register("alice")
    eve = await server.register("eve")
    room_id = await create_room(alice, preset="public_chat")
    event_id = await send_text(alice, room_id, "hello", "t1")

    via_receipt = await receipt(eve, room_id, event_id)
    via_markers = await read_markers(eve, room_id, {"m.read": event_id})
    unknown_room = await receipt(eve, "!nowhere:test.local", event_id)

    for resp in (via_receipt, via_markers, unknown_room):
        assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert await receipts_seen_by(server, ALICE, room_id) == {}


@pytest_twisted.ensureDeferred
async def test_receipt_for_an_event_of_another_room_is_not_found(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    other_room = await create_room(alice)
    elsewhere = await send_text(alice, other_room, "elsewhere", "t1")

    resp = await receipt(bob, room_id, elsewhere)
    unknown = await receipt(bob, room_id, "$nope")
    markers = await read_markers(bob, room_id, {"m.fully_read": "$nope"})

    for r in (resp, unknown, markers):
        assert (r.code, r.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_bad_event_in_read_markers_writes_nothing(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")

    resp = await read_markers(bob, room_id, {"m.fully_read": event_id, "m.read": "$nope"})

    assert resp.code == 404
    marker = await bob.get(f"{V3}/user/{BOB}/rooms/{room_id}/account_data/m.fully_read")
    assert marker.code == 404


@pytest_twisted.ensureDeferred
async def test_unknown_receipt_type_is_refused(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")

    resp = await receipt(bob, room_id, event_id, "m.seen")

    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize("thread_id", [5, "", ["main"], {"id": "main"}])
@pytest_twisted.ensureDeferred
async def test_thread_id_must_be_a_non_empty_string(server: TestServer, thread_id: Any) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")

    resp = await receipt(bob, room_id, event_id, body={"thread_id": thread_id})

    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_fully_read_may_not_have_a_thread(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")

    resp = await receipt(bob, room_id, event_id, "m.fully_read", body={"thread_id": "main"})

    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")
    marker = await bob.get(f"{V3}/user/{BOB}/rooms/{room_id}/account_data/m.fully_read")
    assert marker.code == 404


@pytest.mark.parametrize("body", [{"m.read": 5}, {"m.fully_read": ["$a"]}])
@pytest_twisted.ensureDeferred
async def test_read_markers_must_be_event_ids(server: TestServer, body: Any) -> None:
    _alice, bob, room_id = await shared_room(server)

    resp = await read_markers(bob, room_id, body)

    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")


@pytest_twisted.ensureDeferred
async def test_read_markers_body_must_be_an_object(server: TestServer) -> None:
    _alice, bob, room_id = await shared_room(server)

    resp = await bob.post(f"{V3}/rooms/{room_id}/read_markers", ["m.read"])

    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")


@pytest_twisted.ensureDeferred
async def test_receipt_wakes_the_rooms_members(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")
    notifier = server.hs.notifier
    before = notifier.counter(ALICE)
    woken = notifier.wait(ALICE, before, 5_000)

    await receipt(bob, room_id, event_id)

    assert await woken is True


# -- through /sync ------------------------------------------------------------------


def ephemeral_receipts(sync_body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = sync_body["rooms"]["join"].get(room_id, {})
    return [e["content"] for e in room.get("ephemeral", {}).get("events", [])
            if e["type"] == "m.receipt"]


@pytest_twisted.ensureDeferred
async def test_sync_delivers_public_receipts_and_own_private_ones(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    first = await send_text(alice, room_id, "one", "t1")
    second = await send_text(alice, room_id, "two", "t2")
    alice_sync = await alice.get(f"{V3}/sync")
    bob_sync = await bob.get(f"{V3}/sync")

    await receipt(bob, room_id, first)
    await receipt(bob, room_id, second, "m.read.private")
    seen_by_alice = await alice.get(f"{V3}/sync",
                                    params={"since": alice_sync.body["next_batch"]})
    seen_by_bob = await bob.get(f"{V3}/sync", params={"since": bob_sync.body["next_batch"]})

    alice_receipts = ephemeral_receipts(seen_by_alice.body, room_id)
    assert [list(c) for c in alice_receipts] == [[first]]
    assert list(alice_receipts[0][first]) == ["m.read"]
    bob_receipts = ephemeral_receipts(seen_by_bob.body, room_id)
    assert len(bob_receipts) == 1
    assert BOB in bob_receipts[0][first]["m.read"]
    assert BOB in bob_receipts[0][second]["m.read.private"]


@pytest_twisted.ensureDeferred
async def test_sync_delivers_the_read_marker_as_room_account_data(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")
    before = await bob.get(f"{V3}/sync")

    await read_markers(bob, room_id, {"m.fully_read": event_id})
    after = await bob.get(f"{V3}/sync", params={"since": before.body["next_batch"]})

    room = after.body["rooms"]["join"][room_id]
    assert {"type": "m.fully_read", "content": {"event_id": event_id}} in \
        room["account_data"]["events"]
