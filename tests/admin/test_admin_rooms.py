"""Synapse's room admin API through real HTTP: list, details, members, state,
block, delete (v1, v2 with status, shutdown_room) and resuming a deletion."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor, task

from homeserver.admin.room_deletion import DeletionParams, empty_result
from homeserver.storage.admin_rooms import RoomDeletion
from tests.harness import Client, TestServer, start_server, stop_server
from tests.helpers import create_room, join, q, send_text

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
CLIENT = "/_matrix/client/v3"


async def until_done(admin: Client, delete_id: str) -> dict[str, Any]:
    for _ in range(100):
        resp = await admin.get(f"{V2}/rooms/delete_status/{delete_id}")
        assert resp.code == 200, resp.body
        if resp.body["status"] in ("complete", "failed"):
            return dict(resp.body)
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("deletion did not finish")


@pytest_twisted.ensureDeferred
async def test_room_list_searches_orders_and_pages(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    carol = await server.register("carol")
    big = await create_room(bob, name="Big room", preset="public_chat",
                            room_alias_name="bigroom")
    await join(carol, big)
    small = await create_room(carol, name="Another small room")
    resp = await admin.get(f"{V1}/rooms")
    assert resp.code == 200, resp.body
    assert resp.body["total_rooms"] == 2 and resp.body["offset"] == 0
    assert [r["room_id"] for r in resp.body["rooms"]] == [small, big]  # by name
    room = resp.body["rooms"][1]
    assert room["name"] == "Big room" and room["canonical_alias"] == "#bigroom:test.local"
    assert room["joined_members"] == 2 and room["joined_local_members"] == 2
    assert room["creator"] == bob.user_id and room["join_rules"] == "public"
    assert room["federatable"] is True and room["encryption"] is None
    assert isinstance(room["state_events"], int) and room["version"]
    by_size = await admin.get(f"{V1}/rooms?order_by=size")
    assert [r["room_id"] for r in by_size.body["rooms"]] == [big, small]
    reversed_ = await admin.get(f"{V1}/rooms?order_by=joined_members&dir=b")
    assert [r["room_id"] for r in reversed_.body["rooms"]] == [small, big]
    page = await admin.get(f"{V1}/rooms?limit=1")
    assert page.body["next_batch"] == 1 and len(page.body["rooms"]) == 1
    page2 = await admin.get(f"{V1}/rooms?from=1&limit=1")
    assert "next_batch" not in page2.body and page2.body["prev_batch"] == 0
    found = await admin.get(f"{V1}/rooms?search_term=BIGROOM")
    assert [r["room_id"] for r in found.body["rooms"]] == [big]
    found = await admin.get(f"{V1}/rooms?search_term={q(small[:6])}")
    assert [r["room_id"] for r in found.body["rooms"]] == [small]
    bad = await admin.get(f"{V1}/rooms?order_by=nonsense")
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_room_details_members_and_state(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    room_id = await create_room(bob, name="Room", topic="About things")
    details = await admin.get(f"{V1}/rooms/{q(room_id)}")
    assert details.code == 200, details.body
    assert details.body["topic"] == "About things"
    assert details.body["joined_local_devices"] == 1
    members = await admin.get(f"{V1}/rooms/{q(room_id)}/members")
    assert members.body == {"members": [bob.user_id], "total": 1}
    state = await admin.get(f"{V1}/rooms/{q(room_id)}/state")
    types = {e["type"] for e in state.body["state"]}
    assert {"m.room.create", "m.room.member", "m.room.name", "m.room.topic"} <= types
    for i in range(3):
        await send_text(bob, room_id, f"m{i}")
    first = await admin.get(f"{V1}/rooms/{q(room_id)}/messages?dir=b&limit=2")
    assert first.code == 200, first.body
    assert [e["content"]["body"] for e in first.body["chunk"]] == ["m2", "m1"]
    rest = await admin.get(f"{V1}/rooms/{q(room_id)}/messages?dir=b&limit=50"
                           f"&from={first.body['end']}")
    bodies = [e["content"].get("body") for e in rest.body["chunk"]]
    assert bodies[0] == "m0" and rest.body["chunk"][-1]["type"] == "m.room.create"
    missing = await admin.get(f"{V1}/rooms/{q('!nope:test.local')}")
    assert (missing.code, missing.body["errcode"]) == (404, "M_NOT_FOUND")
    forbidden = await bob.get(f"{V1}/rooms/{q(room_id)}")
    assert (forbidden.code, forbidden.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_v1_delete_blocks_moves_users_and_aliases(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    notices = await server.register("notices")
    room_id = await create_room(bob, name="Bad", preset="public_chat",
                                room_alias_name="badroom")
    await send_text(bob, room_id, "something bad")
    resp = await admin.delete(f"{V1}/rooms/{q(room_id)}", {
        "new_room_user_id": notices.user_id, "block": True, "purge": False,
        "message": "Moved"})
    assert resp.code == 200, resp.body
    assert resp.body["kicked_users"] == [bob.user_id]
    assert resp.body["failed_to_kick_users"] == []
    assert resp.body["local_aliases"] == ["#badroom:test.local"]
    new_room = resp.body["new_room_id"]
    sent = await bob.put(f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/t1",
                         {"msgtype": "m.text", "body": "hi"})
    assert sent.code == 403
    rejoin = await bob.post(f"{CLIENT}/rooms/{q(room_id)}/join", {})
    assert (rejoin.code, rejoin.body["errcode"]) == (403, "M_FORBIDDEN")
    alias = await bob.get(f"{CLIENT}/directory/room/{q('#badroom:test.local')}")
    assert alias.body["room_id"] == new_room
    name = await bob.get(f"{CLIENT}/rooms/{q(new_room)}/state/m.room.name/")
    assert name.code == 200 and name.body["name"] == "Content Violation Notification"
    muted = await bob.put(f"{CLIENT}/rooms/{q(new_room)}/send/m.room.message/t2",
                          {"msgtype": "m.text", "body": "hi"})
    assert muted.code == 403
    block = await admin.get(f"{V1}/rooms/{q(room_id)}/block")
    assert block.body == {"block": True, "user_id": admin.user_id}


@pytest_twisted.ensureDeferred
async def test_v2_delete_purges_the_room_and_reports_status(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    room_id = await create_room(bob, name="Doomed", room_alias_name="doomed")
    await send_text(bob, room_id, "soon gone")
    resp = await admin.delete(f"{V2}/rooms/{q(room_id)}", {})
    assert resp.code == 200, resp.body
    delete_id = resp.body["delete_id"]
    status = await until_done(admin, delete_id)
    assert status["status"] == "complete", status
    assert status["shutdown_room"]["kicked_users"] == [bob.user_id]
    by_room = await admin.get(f"{V2}/rooms/{q(room_id)}/delete_status")
    assert [r["delete_id"] for r in by_room.body["results"]] == [delete_id]
    assert by_room.body["results"][0]["status"] == "complete"
    gone = await admin.get(f"{V1}/rooms/{q(room_id)}")
    assert gone.code == 404
    listed = await admin.get(f"{V1}/rooms")
    assert listed.body["total_rooms"] == 0
    alias = await bob.get(f"{CLIENT}/directory/room/{q('#doomed:test.local')}")
    assert alias.code == 404
    sync = await bob.get(f"{CLIENT}/sync")
    assert sync.code == 200
    assert room_id not in sync.body.get("rooms", {}).get("join", {})
    # not blocked: a new room with other content may be made; the ID is free to reuse
    unknown = await admin.get(f"{V2}/rooms/delete_status/nonsense")
    assert (unknown.code, unknown.body["errcode"]) == (404, "M_NOT_FOUND")
    again = await admin.delete(f"{V2}/rooms/{q(room_id)}", {})
    assert again.code == 404


@pytest_twisted.ensureDeferred
async def test_shutdown_room_blocks_without_purging(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    room_id = await create_room(bob)
    resp = await admin.post(f"{V1}/shutdown_room/{q(room_id)}", {})
    assert resp.code == 200, resp.body
    assert resp.body["kicked_users"] == [bob.user_id] and resp.body["new_room_id"] is None
    assert (await admin.get(f"{V1}/rooms/{q(room_id)}")).code == 200
    assert (await bob.post(f"{CLIENT}/rooms/{q(room_id)}/join", {})).code == 403


@pytest_twisted.ensureDeferred
async def test_a_deletion_cut_short_is_resumed(server: TestServer) -> None:
    """What a crash mid-delete leaves (a row in shutting_down, the room whole)
    is finished by the resume the server runs at start."""
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    room_id = await create_room(bob)
    await send_text(bob, room_id, "hello")
    params = DeletionParams(block=True)
    cut = RoomDeletion("cut-short", room_id, admin.user_id, params.__dict__,
                       "shutting_down", None, empty_result())
    await server.hs.stores.admin_rooms.add_deletion(cut, 0)
    refused = await admin.delete(f"{V2}/rooms/{q(room_id)}", {})
    assert refused.code == 400  # one deletion per room at a time
    await server.hs.room_deleter.resume()
    status = await admin.get(f"{V2}/rooms/delete_status/cut-short")
    assert status.body["status"] == "complete"
    assert status.body["shutdown_room"]["kicked_users"] == [bob.user_id]
    assert (await admin.get(f"{V1}/rooms/{q(room_id)}")).code == 404


@pytest_twisted.ensureDeferred
async def test_a_restarted_server_finishes_a_deletion_cut_by_a_crash(
        engine: str, tmp_path: Any) -> None:
    """The server stops (as if killed) with a deletion recorded and not done;
    the next server on the same database finishes it at start."""
    first = await start_server(engine, str(tmp_path))
    args = dict(first.hs.config.database.args)
    database = {"name": "sqlite3" if engine == "sqlite" else "psycopg2", "args": args}
    admin = await first.register("admin", admin=True)
    bob = await first.register("bob")
    room_id = await create_room(bob, name="Cut short")
    await send_text(bob, room_id, "hello")
    cut = RoomDeletion("crashed", room_id, admin.user_id, DeletionParams(block=True).__dict__,
                       "shutting_down", None, empty_result())
    await first.hs.stores.admin_rooms.add_deletion(cut, 0)
    await first.hs.stop()
    second = await start_server(engine, str(tmp_path), database=database)
    try:
        admin2 = second.client(admin.access_token)
        status: dict[str, Any] = {}
        for _ in range(100):
            status = (await admin2.get(f"{V2}/rooms/delete_status/crashed")).body
            if status["status"] in ("complete", "failed"):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert status["status"] == "complete", status
        assert status["shutdown_room"]["kicked_users"] == [bob.user_id]
        assert (await admin2.get(f"{V1}/rooms/{q(room_id)}")).code == 404
        assert (await admin2.get(f"{V1}/rooms/{q(room_id)}/block")).body["block"] is True
    finally:
        await stop_server(second)
