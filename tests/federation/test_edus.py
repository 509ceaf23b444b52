"""EDUs from other servers (typing, receipts, presence, to-device, device lists)
as local users see them in /sync, and the EDUs our users' actions send.

Inbound EDUs are handed to ``hs.edu_handler.on_edu`` as PUT /send will hand
them (the lead's /send was not there when these were written). The remote
user's membership is made with the server's own event creator (a join event
of ``@bob:remote.test``, authorised by the room's rules like any other):
joins over federation come with the membership work.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from homeserver.edu.presence import FEDERATION_PING_MS, FEDERATION_TIMEOUT_MS
from tests.api.test_rooms import ALICE, V3, create_room, send_text
from tests.harness import Client, TestServer

REMOTE = "remote.test"
REMOTE_BOB = f"@bob:{REMOTE}"


async def with_remote_member(server: TestServer, user_id: str = REMOTE_BOB,
                             ) -> tuple[Client, str]:
    """Alice (local) and ``user_id`` (of another server) joined to a public room."""
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await server.hs.event_creator.send(user_id, room_id, "m.room.member",
                                       {"membership": "join"}, state_key=user_id)
    return alice, room_id


async def sync(client: Client, since: str | None = None) -> dict[str, Any]:
    params = {"timeout": "0"}
    if since is not None:
        params["since"] = since
    resp = await client.get(f"{V3}/sync", params=params)
    assert resp.code == 200, resp.body
    return dict(resp.body)


def ephemeral(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


# -- typing ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_remote_user_typing_is_seen_by_local_members(server: TestServer) -> None:
    alice, room_id = await with_remote_member(server)
    before = await sync(alice)

    await server.hs.edu_handler.on_edu(
        REMOTE, "m.typing", {"room_id": room_id, "user_id": REMOTE_BOB, "typing": True})

    body = await sync(alice, before["next_batch"])
    assert [e["content"] for e in ephemeral(body, room_id, "m.typing")] == [
        {"user_ids": [REMOTE_BOB]}]

    await server.hs.edu_handler.on_edu(
        REMOTE, "m.typing", {"room_id": room_id, "user_id": REMOTE_BOB, "typing": False})
    after = await sync(alice, body["next_batch"])
    assert [e["content"] for e in ephemeral(after, room_id, "m.typing")] == [{"user_ids": []}]


@pytest_twisted.ensureDeferred
async def test_typing_of_a_user_of_another_origin_is_dropped(server: TestServer) -> None:
    alice, room_id = await with_remote_member(server)
    before = await sync(alice)

    # evil.test speaks for remote.test's user: dropped, nothing raised
    await server.hs.edu_handler.on_edu(
        "evil.test", "m.typing", {"room_id": room_id, "user_id": REMOTE_BOB, "typing": True})
    # a remote user who is not in the room
    await server.hs.edu_handler.on_edu(
        REMOTE, "m.typing", {"room_id": room_id, "user_id": f"@carol:{REMOTE}",
                             "typing": True})

    body = await sync(alice, before["next_batch"])
    assert ephemeral(body, room_id, "m.typing") == []


@pytest_twisted.ensureDeferred
async def test_malformed_edus_are_dropped_without_error(server: TestServer) -> None:
    alice, room_id = await with_remote_member(server)
    handler = server.hs.edu_handler
    for edu_type, content in [
        ("m.typing", None), ("m.typing", {"room_id": room_id, "user_id": REMOTE_BOB}),
        ("m.typing", {"room_id": 5, "user_id": REMOTE_BOB, "typing": True}),
        ("m.receipt", {room_id: {"m.read": {REMOTE_BOB: {"event_ids": "x", "data": {}}}}}),
        ("m.receipt", {room_id: []}), ("m.receipt", []),
        ("m.presence", {"push": "no"}), ("m.presence", {"push": [{"user_id": 1}]}),
        ("m.direct_to_device", {"sender": REMOTE_BOB}),
        ("m.device_list_update", {"user_id": None}),
        ("m.unknown_thing", {"anything": True}),
    ]:
        await handler.on_edu(REMOTE, edu_type, content)
    assert (await alice.get(f"{V3}/sync", params={"timeout": "0"})).code == 200


# -- receipts -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_remote_read_receipt_is_seen_by_local_members(server: TestServer) -> None:
    alice, room_id = await with_remote_member(server)
    event_id = await send_text(alice, room_id, "hello", "t1")
    before = await sync(alice)

    await server.hs.edu_handler.on_edu(REMOTE, "m.receipt", {room_id: {"m.read": {
        REMOTE_BOB: {"event_ids": [event_id], "data": {"ts": 1234, "thread_id": "main"}},
        # not of the origin, and a private receipt: both dropped
        "@mallory:evil.test": {"event_ids": [event_id], "data": {"ts": 1}},
    }, "m.read.private": {REMOTE_BOB: {"event_ids": [event_id], "data": {"ts": 1}}}}})

    body = await sync(alice, before["next_batch"])
    receipts = ephemeral(body, room_id, "m.receipt")
    assert [r["content"] for r in receipts] == [
        {event_id: {"m.read": {REMOTE_BOB: {"ts": 1234, "thread_id": "main"}}}}]


# -- presence -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_remote_presence_reaches_local_room_mates(server: TestServer) -> None:
    alice, room_id = await with_remote_member(server)
    before = await sync(alice)

    await server.hs.edu_handler.on_edu(REMOTE, "m.presence", {"push": [
        {"user_id": REMOTE_BOB, "presence": "online", "status_msg": "Baking",
         "last_active_ago": 5000, "currently_active": True},
        # shares no room with anyone here: not stored
        {"user_id": f"@carol:{REMOTE}", "presence": "online", "last_active_ago": 0},
    ]})

    body = await sync(alice, before["next_batch"])
    events = {e["sender"]: e["content"] for e in body.get("presence", {}).get("events", [])}
    assert REMOTE_BOB in events and f"@carol:{REMOTE}" not in events
    assert events[REMOTE_BOB]["presence"] == "online"
    assert events[REMOTE_BOB]["status_msg"] == "Baking"
    assert events[REMOTE_BOB]["last_active_ago"] >= 5000
    status = await alice.get(f"{V3}/presence/{REMOTE_BOB}/status")
    assert status.body["presence"] == "online"


@pytest_twisted.ensureDeferred
async def test_remote_presence_is_dropped_when_federation_presence_is_off(
        make_server: Any) -> None:
    server = await make_server(presence={"enabled": True, "federation": False})
    alice, room_id = await with_remote_member(server)
    before = await sync(alice)

    await server.hs.edu_handler.on_edu(REMOTE, "m.presence", {"push": [
        {"user_id": REMOTE_BOB, "presence": "online", "last_active_ago": 0}]})

    body = await sync(alice, before["next_batch"])
    senders = [e["sender"] for e in body.get("presence", {}).get("events", [])]
    assert REMOTE_BOB not in senders


# -- to-device ------------------------------------------------------------------


def to_device_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body.get("to_device", {}).get("events", []))


@pytest_twisted.ensureDeferred
async def test_to_device_message_from_another_server_is_delivered_once(
        server: TestServer) -> None:
    alice = await server.register("alice", device_id="PHONE")
    before = await sync(alice)
    edu = {"sender": REMOTE_BOB, "type": "m.room_key_request", "message_id": "m1",
           "messages": {ALICE: {"*": {"action": "request"}},
                        "@nobody:elsewhere.test": {"*": {"x": 1}}}}

    await server.hs.edu_handler.on_edu(REMOTE, "m.direct_to_device", edu)
    # the same message again (a retried transaction): stored once
    await server.hs.edu_handler.on_edu(REMOTE, "m.direct_to_device", edu)

    body = await sync(alice, before["next_batch"])
    assert to_device_events(body) == [{"type": "m.room_key_request", "sender": REMOTE_BOB,
                                       "content": {"action": "request"}}]


@pytest_twisted.ensureDeferred
async def test_to_device_message_with_a_foreign_sender_is_dropped(server: TestServer) -> None:
    alice = await server.register("alice", device_id="PHONE")
    before = await sync(alice)

    await server.hs.edu_handler.on_edu("evil.test", "m.direct_to_device", {
        "sender": REMOTE_BOB, "type": "m.room_key_request", "message_id": "m1",
        "messages": {ALICE: {"PHONE": {"action": "request"}}}})

    body = await sync(alice, before["next_batch"])
    assert to_device_events(body) == []


# -- device lists ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_remote_device_list_update_shows_in_device_lists_changed(
        server: TestServer) -> None:
    alice, room_id = await with_remote_member(server)
    before = await sync(alice)

    await server.hs.edu_handler.on_edu(REMOTE, "m.device_list_update", {
        "user_id": REMOTE_BOB, "device_id": "NEWPHONE", "stream_id": 3, "prev_id": [2],
        "deleted": False})
    # a user nobody here shares a room with: not recorded
    await server.hs.edu_handler.on_edu(REMOTE, "m.device_list_update", {
        "user_id": f"@carol:{REMOTE}", "device_id": "X", "stream_id": 1})

    body = await sync(alice, before["next_batch"])
    assert body.get("device_lists", {}).get("changed") == [REMOTE_BOB]


# -- two servers: our users' EDUs reach the other server -------------------------


async def poll_sync(client: Client, since: str, done: Any, tries: int = 50) -> dict[str, Any]:
    """/sync from ``since`` until ``done(body)`` (the EDU crosses servers in
    the background): long-polls, so it returns as soon as something arrives."""
    from twisted.internet import reactor, task

    for _ in range(tries):
        resp = await client.get(f"{V3}/sync", params={"since": since, "timeout": "2000"})
        assert resp.code == 200, resp.body
        body = dict(resp.body)
        if done(body):
            return body
        since = body["next_batch"]
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("the EDU never arrived")


@pytest_twisted.ensureDeferred
async def test_typing_and_receipts_cross_servers(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    # Bob joins over federation (the join itself is the membership code's)
    await b.hs.federation_membership.join_remote(bob.user_id or "", room_id,
                                                 [a.hs.hostname], {})
    event_id = await send_text(alice, room_id, "hello", "t1")
    bob_since = (await sync(bob))["next_batch"]
    alice_since = (await sync(alice))["next_batch"]

    resp = await alice.put(f"{V3}/rooms/{room_id}/typing/{alice.user_id}",
                           {"typing": True, "timeout": 10000})
    assert resp.code == 200, resp.body
    body = await poll_sync(bob, bob_since, lambda b: any(
        e["content"]["user_ids"] == [alice.user_id]
        for e in ephemeral(b, room_id, "m.typing")))
    assert body

    resp = await bob.post(f"{V3}/rooms/{room_id}/receipt/m.read/{event_id}", {})
    assert resp.code == 200, resp.body
    body = await poll_sync(alice, alice_since, lambda b: any(
        bob.user_id in e["content"].get(event_id, {}).get("m.read", {})
        for e in ephemeral(b, room_id, "m.receipt")))
    assert body


@pytest_twisted.ensureDeferred
async def test_presence_crosses_servers(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    await b.hs.federation_membership.join_remote(bob.user_id or "", room_id,
                                                 [a.hs.hostname], {})
    bob_since = (await sync(bob))["next_batch"]

    resp = await alice.put(f"{V3}/presence/{alice.user_id}/status",
                           {"presence": "unavailable", "status_msg": "Away"})
    assert resp.code == 200, resp.body

    def alice_away(body: dict[str, Any]) -> bool:
        return any(e["sender"] == alice.user_id and e["content"].get("status_msg") == "Away"
                   for e in body.get("presence", {}).get("events", []))

    body = await poll_sync(bob, bob_since, alice_away)
    assert alice_away(body)


async def _status(client: Client, user_id: str) -> str:
    resp = await client.get(f"{V3}/presence/{user_id}/status")
    assert resp.code == 200, resp.body
    return str(resp.body["presence"])


async def _until(check: Any, tries: int = 200) -> None:
    from twisted.internet import reactor, task
    for _ in range(tries):
        if await check():
            return
        await task.deferLater(reactor, 0.02, lambda: None)  # type: ignore[arg-type]
    raise AssertionError("condition not met in time")


async def _on_a_virtual_clock(make_server: Any) -> tuple[Clock, TestServer, Client]:
    """A server on a virtual clock, alice in a room with a remote member."""
    clock = Clock()
    clock.advance(1_000_000)
    server = await make_server(clock=clock)
    alice, _ = await with_remote_member(server)
    return clock, server, alice


@pytest_twisted.ensureDeferred
async def test_a_remote_user_goes_offline_when_their_server_falls_silent(
        make_server: Any) -> None:
    clock, server, alice = await _on_a_virtual_clock(make_server)
    online = {"push": [{"user_id": REMOTE_BOB, "presence": "online", "last_active_ago": 0,
                        "currently_active": True}]}
    await server.hs.edu_handler.on_edu(REMOTE, "m.presence", online)
    assert await _status(alice, REMOTE_BOB) == "online"

    # their server says it again (as servers do every 25 minutes): still online
    minutes = FEDERATION_TIMEOUT_MS // 60_000
    for _ in range(minutes - 5):
        clock.advance(60)
    await server.hs.edu_handler.on_edu(REMOTE, "m.presence", online)
    for _ in range(minutes - 5):
        clock.advance(60)
    assert await _status(alice, REMOTE_BOB) == "online"

    # then nothing for the whole timeout: offline here
    for _ in range(6):
        clock.advance(60)

    async def offline() -> bool:
        return await _status(alice, REMOTE_BOB) == "offline"
    await _until(offline)


@pytest_twisted.ensureDeferred
async def test_a_local_users_presence_goes_out_again_while_they_stay_online(
        make_server: Any) -> None:
    clock, server, alice = await _on_a_virtual_clock(make_server)
    edus = server.hs.edu_handler
    sent: list[tuple[str, str]] = []
    real_send = edus.send_presence

    def recording_send(user_id: str, room_mates: Any, content: dict[str, Any]) -> None:
        mates = set(room_mates)
        if REMOTE_BOB in mates:
            sent.append((user_id, content["presence"]))
        real_send(user_id, mates, content)
    edus.send_presence = recording_send  # type: ignore[method-assign]

    await sync(alice)  # online: that goes out once
    assert sent == [(ALICE, "online")]
    # she keeps syncing and nothing about her changes; the other server
    # must still hear from time to time that she is online
    for _ in range(FEDERATION_PING_MS // 20_000 + 4):
        clock.advance(20)
        await sync(alice)

    async def pinged() -> bool:
        return len(sent) >= 2
    await _until(pinged)
    assert set(sent) == {(ALICE, "online")}


@pytest_twisted.ensureDeferred
async def test_a_new_federated_chat_starts_with_both_sides_presence(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    # both online before they share a room: no change of presence follows
    for user in (alice, bob):
        resp = await user.put(f"{V3}/presence/{user.user_id}/status", {"presence": "online"})
        assert resp.code == 200, resp.body
    room_id = await create_room(alice, preset="private_chat")
    resp = await alice.post(f"{V3}/rooms/{room_id}/invite", {"user_id": bob.user_id})
    assert resp.code == 200, resp.body
    await b.hs.federation_membership.join_remote(bob.user_id or "", room_id,
                                                 [a.hs.hostname], {})

    async def sees(client: Client, user_id: str) -> bool:
        return await _status(client, user_id) == "online"

    await _until(lambda: sees(bob, alice.user_id or ""))
    await _until(lambda: sees(alice, bob.user_id or ""))
