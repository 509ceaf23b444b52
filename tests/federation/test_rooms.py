"""Rooms across servers: joins both ways, messages, invites, leaves, state.

Two (or three) of our own servers, each with its own database, key and TLS
listener, talk over real HTTPS on loopback.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest_twisted
from twisted.internet import defer, reactor

from tests.federation.harness import server_name
from tests.harness import Client


def q(value: str) -> str:
    return quote(value, safe="")


async def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` (async, returning a truthy value when done)."""
    waited = 0.0
    while True:
        result = await predicate()
        if result:
            return result
        if waited >= timeout:
            raise AssertionError("timed out waiting")
        d: defer.Deferred[None] = defer.Deferred()
        reactor.callLater(interval, d.callback, None)  # type: ignore[attr-defined]
        await d
        waited += interval


async def create_room(client: Client, **body: Any) -> str:
    resp = await client.post("/_matrix/client/v3/createRoom", {"preset": "public_chat", **body})
    assert resp.code == 200, resp.body
    return str(resp.body["room_id"])


async def send_text(client: Client, room_id: str, text: str, txn: str) -> str:
    resp = await client.put(f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
                            {"msgtype": "m.text", "body": text})
    assert resp.code == 200, resp.body
    return str(resp.body["event_id"])


async def timeline_bodies(client: Client, room_id: str) -> list[str]:
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/messages",
                            params={"dir": "b", "limit": "50"})
    assert resp.code == 200, resp.body
    return [e["content"].get("body") for e in reversed(resp.body["chunk"])
            if e["type"] == "m.room.message"]


async def members(client: Client, room_id: str) -> dict[str, str]:
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state")
    assert resp.code == 200, resp.body
    return {e["state_key"]: e["content"]["membership"] for e in resp.body
            if e["type"] == "m.room.member"}


@pytest_twisted.ensureDeferred
async def test_remote_user_joins_and_messages_flow_both_ways(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, name="Across servers")

    resp = await bob.post(f"/_matrix/client/v3/join/{q(room_id)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    assert resp.body["room_id"] == room_id

    # both servers agree bob is joined
    assert (await members(bob, room_id))[bob.user_id or ""] == "join"
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))

    await send_text(alice, room_id, "hello from A", "t1")
    await wait_for(lambda: _has_body(bob, room_id, "hello from A"))
    await send_text(bob, room_id, "hello from B", "t1")
    await wait_for(lambda: _has_body(alice, room_id, "hello from B"))
    assert await timeline_bodies(alice, room_id) == await timeline_bodies(bob, room_id)

    # the room's name came across with the state
    resp = await bob.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.name")
    assert resp.code == 200 and resp.body["name"] == "Across servers"


async def _joined(client: Client, room_id: str, user_id: str | None) -> bool:
    return (await members(client, room_id)).get(user_id or "") == "join"


async def _has_body(client: Client, room_id: str, body: str) -> bool:
    return body in await timeline_bodies(client, room_id)
