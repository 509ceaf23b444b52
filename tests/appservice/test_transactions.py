"""The push side: events of interest reach the service in transactions,
one at a time, retried with the same ID, nothing lost or duplicated across
a restart of the homeserver."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from homeserver.server import HomeServer
from tests.appservice.conftest import AS_TOKEN, registration, write_registration
from tests.appservice.fake_as import FakeAppService
from tests.harness import TestServer, start_server, stop_server
from tests.helpers import create_room, send_text

V3 = "/_matrix/client/v3"


async def ghost_in_room(server: TestServer, localpart: str, room_id: str) -> str:
    client = server.client(AS_TOKEN)
    resp = await client.post(f"{V3}/register", {"type": "m.login.application_service",
                                                "username": localpart, "inhibit_login": True})
    assert resp.code == 200, resp.body
    user_id = str(resp.body["user_id"])
    resp = await client.post(f"{V3}/rooms/{room_id}/join", {}, params={"user_id": user_id})
    assert resp.code == 200, resp.body
    return user_id


def bodies(app: FakeAppService) -> list[str]:
    return [e["content"].get("body") for e in app.events() if e["type"] == "m.room.message"]


@pytest_twisted.ensureDeferred
async def test_events_of_rooms_with_a_ghost_reach_the_service(
        server: TestServer, appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    ghost = await ghost_in_room(server, "bridge_ann", room_id)
    await send_text(alice, room_id, "hello bridge")
    await appservice.wait_for(lambda: "hello bridge" in bodies(appservice))
    events = appservice.events()
    join = next(e for e in events if e["type"] == "m.room.member")
    assert (join["state_key"], join["content"]["membership"]) == (ghost, "join")
    message = next(e for e in events if e["type"] == "m.room.message")
    assert message["room_id"] == room_id and message["sender"] == alice.user_id
    assert all(h == "Bearer hs-secret" for h in appservice.auth_headers)
    # no legacy access_token parameter unless configured
    assert all("access_token" not in a for a in appservice.query_args)
    # transaction IDs are increasing integers
    ids = [int(t) for t, _ in appservice.transactions]
    assert ids == sorted(set(ids))


@pytest_twisted.ensureDeferred
async def test_events_of_other_rooms_do_not(server: TestServer,
                                            appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    private = await create_room(alice)
    await send_text(alice, private, "not for the bridge")
    shared = await create_room(alice, preset="public_chat")
    await ghost_in_room(server, "bridge_ben", shared)
    await send_text(alice, shared, "for the bridge")
    await appservice.wait_for(lambda: "for the bridge" in bodies(appservice))
    assert "not for the bridge" not in bodies(appservice)
    assert all(e["room_id"] == shared for e in appservice.events())


@pytest_twisted.ensureDeferred
async def test_events_of_rooms_with_an_alias_of_the_namespace_reach_the_service(
        server: TestServer, appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await server.client(AS_TOKEN).put(f"{V3}/directory/room/%23bridge_a:test.local",
                                             {"room_id": room_id})
    assert resp.code == 200, resp.body
    await send_text(alice, room_id, "aliased")
    await appservice.wait_for(lambda: "aliased" in bodies(appservice))


@pytest_twisted.ensureDeferred
async def test_a_failed_transaction_is_retried_with_the_same_id(
        server: TestServer, appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await ghost_in_room(server, "bridge_cat", room_id)
    await appservice.wait_for(lambda: len(appservice.events()) >= 1)
    appservice.fail_next = 2
    await send_text(alice, room_id, "one")
    await send_text(alice, room_id, "two")
    await appservice.wait_for(lambda: "two" in bodies(appservice))
    assert bodies(appservice) == ["one", "two"]
    # every transaction the service accepted had a new ID
    accepted = [t for t, _ in appservice.transactions]
    assert len(accepted) == len(set(accepted))


@pytest_twisted.ensureDeferred
async def test_a_restart_mid_stream_loses_and_duplicates_nothing(
        engine: str, tmp_path: Any, appservice: FakeAppService) -> None:
    from twisted.internet import reactor

    path = write_registration(tmp_path, registration(appservice.url))
    srv = await start_server(engine, str(tmp_path), app_service_config_files=[path])
    srv.hs.appservice_scheduler.initial_backoff_s = 0.05
    alice = await srv.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await ghost_in_room(srv, "bridge_dan", room_id)
    await send_text(alice, room_id, "before")
    await appservice.wait_for(lambda: "before" in bodies(appservice))
    # the service goes down; messages pile up in a stored transaction and
    # in the stream behind it
    appservice.fail_next = 10**6
    for i in range(5):
        await send_text(alice, room_id, f"during {i}")
    await appservice.wait_for(lambda: len(appservice.attempts) > len(appservice.transactions))
    accepted_before = len(appservice.transactions)
    failed_id = appservice.attempts[-1]
    await srv.hs.stop()
    # the database stays: the same server starts again on it
    config = srv.hs.config
    hs = HomeServer(config, reactor)
    await hs.setup()
    hs.listen()
    restarted = TestServer(hs, engine)
    try:
        hs.appservice_scheduler.initial_backoff_s = 0.05
        bob = await restarted.register("bob")
        await restarted.client(AS_TOKEN).post(f"{V3}/rooms/{room_id}/invite",
                                              {"user_id": bob.user_id})
        await bob.post(f"{V3}/rooms/{room_id}/join", {})
        alice_again = restarted.client(alice.access_token)
        await send_text(alice_again, room_id, "after")
        appservice.fail_next = 0
        await appservice.wait_for(lambda: "after" in bodies(appservice))
        assert bodies(appservice) == ["before"] + [f"during {i}" for i in range(5)] + ["after"]
        ids = [t for t, _ in appservice.transactions]
        assert len(ids) == len(set(ids))
        # the transaction that failed before the restart went again with its ID
        assert ids[accepted_before] == failed_id
    finally:
        await stop_server(restarted)


@pytest_twisted.ensureDeferred
async def test_a_service_without_url_is_sent_nothing(engine: str, tmp_path: Any) -> None:
    path = write_registration(tmp_path, registration(None))
    srv = await start_server(engine, str(tmp_path), app_service_config_files=[path])
    try:
        assert srv.hs.appservice_scheduler.queues == []
        resp = await srv.client(AS_TOKEN).post(f"{V3}/createRoom", {})
        assert resp.code == 200, resp.body
    finally:
        await stop_server(srv)


@pytest_twisted.ensureDeferred
async def test_a_service_with_receive_ephemeral_gets_typing_and_public_receipts(
        engine: str, tmp_path: Any, appservice: FakeAppService) -> None:
    path = write_registration(tmp_path, registration(appservice.url, receive_ephemeral=True))
    srv = await start_server(engine, str(tmp_path), app_service_config_files=[path])
    try:
        alice = await srv.register("alice")
        room_id = await create_room(alice, preset="public_chat")
        await ghost_in_room(srv, "bridge_eve", room_id)
        event_id = await send_text(alice, room_id, "read me")
        resp = await alice.put(f"{V3}/rooms/{room_id}/typing/{alice.user_id}",
                               {"typing": True, "timeout": 30000})
        assert resp.code == 200, resp.body
        await appservice.wait_for(lambda: any(e["type"] == "m.typing"
                                              for e in appservice.ephemeral))
        typing = next(e for e in appservice.ephemeral if e["type"] == "m.typing")
        assert typing == {"type": "m.typing", "room_id": room_id,
                          "content": {"user_ids": [alice.user_id]}}
        for receipt_type in ("m.read.private", "m.read"):
            resp = await alice.post(f"{V3}/rooms/{room_id}/receipt/{receipt_type}/{event_id}",
                                    {})
            assert resp.code == 200, resp.body
        await appservice.wait_for(lambda: any(e["type"] == "m.receipt"
                                              for e in appservice.ephemeral))
        receipts = [e for e in appservice.ephemeral if e["type"] == "m.receipt"]
        assert [list(r["content"][event_id]) for r in receipts] == [["m.read"]]
        assert receipts[0]["room_id"] == room_id
        assert alice.user_id in receipts[0]["content"][event_id]["m.read"]
    finally:
        await stop_server(srv)


@pytest_twisted.ensureDeferred
async def test_a_service_without_receive_ephemeral_gets_none(
        server: TestServer, appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await ghost_in_room(server, "bridge_fay", room_id)
    await alice.put(f"{V3}/rooms/{room_id}/typing/{alice.user_id}",
                    {"typing": True, "timeout": 30000})
    await send_text(alice, room_id, "after typing")
    await appservice.wait_for(lambda: "after typing" in bodies(appservice))
    assert appservice.ephemeral == []


async def restart(srv: TestServer) -> TestServer:
    """The same server stopped and started again on its database."""
    from twisted.internet import reactor

    await srv.hs.stop()
    hs = HomeServer(srv.hs.config, reactor)
    await hs.setup()
    hs.listen()
    return TestServer(hs, srv.engine)


@pytest_twisted.ensureDeferred
async def test_events_sent_while_a_transaction_is_in_flight_go_in_the_next_one(
        server: TestServer, appservice: FakeAppService) -> None:
    from twisted.internet import defer

    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await ghost_in_room(server, "bridge_gus", room_id)
    await appservice.wait_for(lambda: len(appservice.events()) >= 1)
    # the service takes its time over the next transaction
    gate: defer.Deferred[None] = defer.Deferred()
    appservice.gate = gate
    tried = len(appservice.attempts)
    await send_text(alice, room_id, "first")
    await appservice.wait_for(lambda: len(appservice.attempts) > tried)
    for body in ("a", "b", "c"):
        await send_text(alice, room_id, body)
    assert len(appservice.attempts) == tried + 1  # one transaction in flight
    accepted = len(appservice.transactions)
    appservice.gate = None
    gate.callback(None)
    await appservice.wait_for(lambda: "c" in bodies(appservice))
    # the three waiting went together, in order, as soon as the first was answered
    assert len(appservice.transactions) == accepted + 2
    assert [e["content"]["body"] for e in appservice.transactions[-1][1]] == ["a", "b", "c"]
    assert bodies(appservice) == ["first", "a", "b", "c"]


@pytest_twisted.ensureDeferred
async def test_a_service_down_longer_than_memory_holds_catches_up_from_the_database(
        server: TestServer, appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await ghost_in_room(server, "bridge_hal", room_id)
    await appservice.wait_for(lambda: len(appservice.events()) >= 1)
    scheduler = server.hs.appservice_scheduler
    # the events waiting for the service outgrow what is kept in memory
    scheduler.feed.max_entries = 3
    appservice.fail_next = 10**6
    for i in range(8):
        await send_text(alice, room_id, f"m{i}")
    assert scheduler.feed.low > scheduler.queues[0].position
    appservice.fail_next = 0
    await appservice.wait_for(lambda: "m7" in bodies(appservice))
    assert bodies(appservice) == [f"m{i}" for i in range(8)]
    ids = [t for t, _ in appservice.transactions]
    assert len(ids) == len(set(ids))
    # caught up, the queue reads from memory again
    await send_text(alice, room_id, "live")
    await appservice.wait_for(lambda: "live" in bodies(appservice))
    assert scheduler.queues[0].position >= scheduler.feed.low


@pytest_twisted.ensureDeferred
async def test_a_graceful_restart_sends_no_acknowledged_transaction_again(
        engine: str, tmp_path: Any, appservice: FakeAppService) -> None:
    path = write_registration(tmp_path, registration(appservice.url))
    srv = await start_server(engine, str(tmp_path), app_service_config_files=[path])
    alice = await srv.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await ghost_in_room(srv, "bridge_ida", room_id)
    for i in range(5):
        await send_text(alice, room_id, f"m{i}")
    await appservice.wait_for(lambda: "m4" in bodies(appservice))
    again = await restart(srv)
    try:
        await send_text(again.client(alice.access_token), room_id, "after")
        await appservice.wait_for(lambda: "after" in bodies(appservice))
        assert bodies(appservice) == [f"m{i}" for i in range(5)] + ["after"]
        # every transaction was tried once: none stayed stored once answered
        assert len(appservice.attempts) == len(set(appservice.attempts))
        assert appservice.attempts == [t for t, _ in appservice.transactions]
    finally:
        await stop_server(again)


@pytest_twisted.ensureDeferred
async def test_an_upgraded_room_with_an_alias_of_the_namespace_reaches_the_service(
        server: TestServer, appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await server.client(AS_TOKEN).put(f"{V3}/directory/room/%23bridge_up:test.local",
                                             {"room_id": room_id})
    assert resp.code == 200, resp.body
    await send_text(alice, room_id, "old room")
    await appservice.wait_for(lambda: "old room" in bodies(appservice))
    resp = await alice.post(f"{V3}/rooms/{room_id}/upgrade", {"new_version": "11"})
    assert resp.code == 200, resp.body
    new_room = resp.body["replacement_room"]
    # the alias moved with the room: its events interest the service at once
    await send_text(alice, new_room, "new room")
    await appservice.wait_for(lambda: "new room" in bodies(appservice), timeout=5)
    assert next(e for e in appservice.events()
                if e["content"].get("body") == "new room")["room_id"] == new_room


@pytest_twisted.ensureDeferred
async def test_a_caught_up_service_soon_has_nothing_a_crash_would_send_again(
        server: TestServer, appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await ghost_in_room(server, "bridge_kim", room_id)
    await send_text(alice, room_id, "answered")
    await appservice.wait_for(lambda: "answered" in bodies(appservice))
    from twisted.internet import reactor, task

    store = server.hs.stores.appservice
    # the answered transaction's row goes a moment after the queue caught up
    # (what is stored unanswered is what a crash would send again)
    for _ in range(100):
        if not await store.get_pending_txns("bridge"):
            break
        await task.deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
    assert await store.get_pending_txns("bridge") == []
