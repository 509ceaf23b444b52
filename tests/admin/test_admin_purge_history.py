"""POST /_synapse/admin/v1/purge_history and its status, through real HTTP."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor, task

from tests.harness import Client, TestServer
from tests.helpers import create_room, q, send_text

V1 = "/_synapse/admin/v1"
CLIENT = "/_matrix/client/v3"


async def until_purged(admin: Client, purge_id: str) -> dict[str, Any]:
    for _ in range(100):
        resp = await admin.get(f"{V1}/purge_history_status/{purge_id}")
        assert resp.code == 200, resp.body
        if resp.body["status"] != "active":
            return dict(resp.body)
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("purge did not finish")


def messages(body: dict[str, Any], room_id: str) -> list[str]:
    room = body["rooms"]["join"][room_id]
    return [e["content"]["body"] for e in room["timeline"]["events"]
            if e["type"] == "m.room.message"]


@pytest_twisted.ensureDeferred
async def test_purge_up_to_an_event_keeps_it_and_the_state(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    room_id = await create_room(bob, name="A room name")
    last = ""
    for i in range(5):
        last = await send_text(bob, room_id, f"Message {i}")
    refused = await bob.post(f"{V1}/purge_history/{q(room_id)}/{q(last)}", {})
    assert (refused.code, refused.body["errcode"]) == (403, "M_FORBIDDEN")
    resp = await admin.post(f"{V1}/purge_history/{q(room_id)}/{q(last)}", {})
    assert resp.code == 200, resp.body
    assert (await until_purged(admin, resp.body["purge_id"]))["status"] == "complete"
    sync = await bob.get(f"{CLIENT}/sync")
    assert messages(sync.body, room_id) == ["Message 4"]
    state = sync.body["rooms"]["join"][room_id]["state"]["events"]
    timeline = sync.body["rooms"]["join"][room_id]["timeline"]["events"]
    types = {e["type"] for e in state + timeline}
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"} <= types
    page = await bob.get(f"{CLIENT}/rooms/{q(room_id)}/messages?dir=b&limit=50")
    assert [e["content"]["body"] for e in page.body["chunk"]
            if e["type"] == "m.room.message"] == ["Message 4"]
    name = await bob.get(f"{CLIENT}/rooms/{q(room_id)}/state/m.room.name/")
    assert name.body == {"name": "A room name"}
    # the room goes on
    await send_text(bob, room_id, "after")
    sync = await bob.get(f"{CLIENT}/sync")
    assert messages(sync.body, room_id) == ["Message 4", "after"]


@pytest_twisted.ensureDeferred
async def test_purge_by_timestamp_and_bad_input(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    bob = await server.register("bob")
    room_id = await create_room(bob)
    for i in range(3):
        await send_text(bob, room_id, f"old {i}")
    cutoff = server.hs.ctx.now_ms() + 1
    await task.deferLater(reactor, 0.01, lambda: None)
    await send_text(bob, room_id, "new")
    resp = await admin.post(f"{V1}/purge_history/{q(room_id)}", {"purge_up_to_ts": cutoff})
    assert resp.code == 200, resp.body
    assert (await until_purged(admin, resp.body["purge_id"]))["status"] == "complete"
    sync = await bob.get(f"{CLIENT}/sync")
    assert messages(sync.body, room_id) == ["new"]
    neither = await admin.post(f"{V1}/purge_history/{q(room_id)}", {})
    assert neither.code == 400
    bad_ts = await admin.post(f"{V1}/purge_history/{q(room_id)}", {"purge_up_to_ts": "x"})
    assert (bad_ts.code, bad_ts.body["errcode"]) == (400, "M_INVALID_PARAM")
    unknown = await admin.post(f"{V1}/purge_history/{q('!nope:test.local')}",
                               {"purge_up_to_ts": cutoff})
    assert unknown.code == 404
    other = await create_room(bob)
    wrong_room = await admin.post(f"{V1}/purge_history/{q(other)}",
                                  {"purge_up_to_event_id": "$nothere"})
    assert wrong_room.code == 404
    status = await admin.get(f"{V1}/purge_history_status/nonsense")
    assert (status.code, status.body["errcode"]) == (404, "M_NOT_FOUND")
