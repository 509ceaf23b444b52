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
from tests.harness import Client, TestServer
from tests.helpers import create_public_room, send_text


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
    room_id = await create_public_room(alice, name="Across servers")

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


async def sync_once(client: Client, since: str | None = None) -> dict[str, Any]:
    params = {"timeout": "0"}
    if since:
        params["since"] = since
    resp = await client.get("/_matrix/client/v3/sync", params=params)
    assert resp.code == 200, resp.body
    return resp.body  # type: ignore[no-any-return]


async def _invited(client: Client, room_id: str) -> Any:
    body = await sync_once(client)
    return body["rooms"]["invite"].get(room_id)


@pytest_twisted.ensureDeferred
async def test_invite_to_a_remote_user_who_joins_then_leaves(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_public_room(alice, preset="private_chat", name="Secret plans")

    resp = await alice.post(f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                            {"user_id": bob.user_id})
    assert resp.code == 200, resp.body
    invite = await wait_for(lambda: _invited(bob, room_id))
    state = {e["type"]: e for e in invite["invite_state"]["events"]}
    assert state["m.room.name"]["content"]["name"] == "Secret plans"
    assert state["m.room.member"]["state_key"] == bob.user_id

    # bob joins through the inviter's server without naming it
    resp = await bob.post(f"/_matrix/client/v3/rooms/{q(room_id)}/join", {})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))
    await send_text(bob, room_id, "thanks for the invite", "t1")
    await wait_for(lambda: _has_body(alice, room_id, "thanks for the invite"))

    resp = await bob.post(f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _membership_is(alice, room_id, bob.user_id, "leave"))


@pytest_twisted.ensureDeferred
async def test_remote_invite_can_be_rejected(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_public_room(alice, preset="private_chat")
    resp = await alice.post(f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                            {"user_id": bob.user_id})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _invited(bob, room_id))
    resp = await bob.post(f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _membership_is(alice, room_id, bob.user_id, "leave"))
    body = await sync_once(bob)
    assert room_id not in body["rooms"]["invite"]


async def joined_pair(federation: Any) -> tuple[TestServer, TestServer, Client, Client, str]:
    """Two servers; alice (on the first) made a public room, bob (on the
    second) joined it through her server."""
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_public_room(alice)
    resp = await bob.post(f"/_matrix/client/v3/join/{q(room_id)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))
    return a, b, alice, bob, room_id


@pytest_twisted.ensureDeferred
async def test_kick_ban_and_redaction_reach_the_other_server(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)

    event_id = await send_text(bob, room_id, "regrettable", "t1")
    await wait_for(lambda: _has_body(alice, room_id, "regrettable"))
    resp = await bob.put(f"/_matrix/client/v3/rooms/{q(room_id)}/redact/{q(event_id)}/r1",
                         {"reason": "oops"})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _redacted(alice, room_id, event_id))

    resp = await alice.post(f"/_matrix/client/v3/rooms/{q(room_id)}/kick",
                            {"user_id": bob.user_id, "reason": "cool off"})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _membership_is(bob, room_id, bob.user_id, "leave"))

    resp = await bob.post(f"/_matrix/client/v3/join/{q(room_id)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))
    resp = await alice.post(f"/_matrix/client/v3/rooms/{q(room_id)}/ban",
                            {"user_id": bob.user_id})
    assert resp.code == 200, resp.body
    # once his server has the ban, bob may not read the room any more (as
    # on Synapse)
    await wait_for(lambda: _membership_is(alice, room_id, bob.user_id, "ban"))
    await wait_for(lambda: _read_refused(bob, room_id))
    # a banned user cannot come back
    resp = await bob.post(f"/_matrix/client/v3/join/{q(room_id)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 403, resp.body


@pytest_twisted.ensureDeferred
async def test_three_servers_see_each_others_joins_and_messages(federation: Any) -> None:
    a = await federation()
    b = await federation()
    c = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    carol = await c.register("carol")
    room_id = await create_public_room(alice)
    for client in (bob, carol):
        resp = await client.post(f"/_matrix/client/v3/join/{q(room_id)}",
                                 params={"server_name": server_name(a)})
        assert resp.code == 200, resp.body
    # bob's server hears of carol's join (relayed by the resident server)
    await wait_for(lambda: _joined(bob, room_id, carol.user_id))
    await send_text(carol, room_id, "hi all", "t1")
    await wait_for(lambda: _has_body(bob, room_id, "hi all"))
    await wait_for(lambda: _has_body(alice, room_id, "hi all"))


async def _membership_is(client: Client, room_id: str, user_id: str | None,
                         membership: str) -> bool:
    resp = await client.get(
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(user_id or '')}")
    return resp.code == 200 and resp.body.get("membership") == membership


async def _read_refused(client: Client, room_id: str) -> bool:
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state")
    return resp.code == 403 and resp.body.get("errcode") == "M_FORBIDDEN"


async def _redacted(client: Client, room_id: str, event_id: str) -> bool:
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}")
    return resp.code == 200 and resp.body.get("content") == {}


@pytest_twisted.ensureDeferred
async def test_history_from_before_the_join_is_backfilled(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_public_room(alice, name="Old news")
    for i in range(15):
        await send_text(alice, room_id, f"old {i}", f"o{i}")
    resp = await bob.post(f"/_matrix/client/v3/join/{q(room_id)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    await send_text(alice, room_id, "new", "n1")
    await wait_for(lambda: _has_body(bob, room_id, "new"))

    # bob pages back from now: the history before his join comes from A
    seen: list[str] = []
    token = None
    for _ in range(10):
        params = {"dir": "b", "limit": "5"}
        if token:
            params["from"] = token
        resp = await bob.get(f"/_matrix/client/v3/rooms/{q(room_id)}/messages", params=params)
        assert resp.code == 200, resp.body
        seen += [e["content"].get("body") for e in resp.body["chunk"]
                 if e["type"] == "m.room.message"]
        token = resp.body.get("end")
        if not token:
            break
    assert seen[0] == "new"
    assert seen[1:] == [f"old {i}" for i in reversed(range(15))]
    # the oldest page reaches the room's creation
    types = []
    resp = await bob.get(f"/_matrix/client/v3/rooms/{q(room_id)}/messages",
                         params={"dir": "f", "limit": "3"})
    types = [e["type"] for e in resp.body["chunk"]]
    assert types[0] == "m.room.create"
