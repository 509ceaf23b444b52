"""Delayed events (MSC4140): sent later unless cancelled, restarted to wait
again, kept across a restart; off unless ``max_event_delay_duration``."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from homeserver.server import HomeServer
from tests.api.test_rooms import create_room
from tests.harness import Client, TestServer
from tests.helpers import q

V3 = "/_matrix/client/v3"
MGMT = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
DELAY = "org.matrix.msc4140.delay"


async def pause(seconds: float) -> None:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    await d


async def bodies(client: Client, room_id: str) -> list[str]:
    resp = await client.get(f"{V3}/rooms/{q(room_id)}/messages", params={
        "dir": "f", "filter": json.dumps({"types": ["m.room.message"]})})
    assert resp.code == 200, resp.body
    return [e["content"]["body"] for e in resp.body["chunk"]]


async def eventually(check: Any, clock: Clock, expected: Any = True) -> Any:
    """What ``check`` gives once it gives ``expected`` (or at last): the
    delayed send runs in the background after the clock moves (and a timer
    set meanwhile for a time already past fires on the next tick)."""
    for _ in range(200):
        result = await check()
        if result == expected:
            return result
        await pause(0.02)
        clock.advance(0)
    return await check()


async def delayed_send(client: Client, room_id: str, body: str, delay_ms: int,
                       txn_id: str) -> Any:
    return await client.put(f"{V3}/rooms/{q(room_id)}/send/m.room.message/{txn_id}",
                            {"msgtype": "m.text", "body": body},
                            params={DELAY: str(delay_ms)})


async def started(make_server: Any, **config: Any) -> tuple[TestServer, Clock]:
    clock = Clock()
    clock.advance(1_800_000_000)
    server = await make_server(clock=clock, max_event_delay_duration="1h", **config)
    return server, clock


@pytest_twisted.ensureDeferred
async def test_delayed_events_are_refused_unless_configured(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await delayed_send(alice, room_id, "later", 1000, "t1")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    versions = await server.client().get("/_matrix/client/versions")
    assert versions.body["unstable_features"]["org.matrix.msc4140"] is False
    assert await bodies(alice, room_id) == []


@pytest_twisted.ensureDeferred
async def test_a_delayed_message_is_sent_when_its_delay_ends(make_server: Any) -> None:
    server, clock = await started(make_server)
    alice = await server.register("alice")
    room_id = await create_room(alice)

    resp = await delayed_send(alice, room_id, "later", 5000, "t1")
    assert resp.code == 200, resp.body
    delay_id = resp.body["delay_id"]
    retried = await delayed_send(alice, room_id, "later", 5000, "t1")
    assert retried.body == {"delay_id": delay_id}
    listed = await alice.get(MGMT)
    assert [(e["delay_id"], e["type"], e["delay"], e["content"]["body"])
            for e in listed.body["delayed_events"]] == [
        (delay_id, "m.room.message", 5000, "later")]
    assert await bodies(alice, room_id) == []

    clock.advance(4)
    assert await bodies(alice, room_id) == []
    clock.advance(1.5)
    assert await eventually(lambda: bodies(alice, room_id), clock, ["later"]) == ["later"]
    assert (await alice.get(MGMT)).body == {"delayed_events": []}


@pytest_twisted.ensureDeferred
async def test_restart_cancel_and_send_now(make_server: Any) -> None:
    server, clock = await started(make_server)
    alice = await server.register("alice")
    room_id = await create_room(alice)
    restarted = (await delayed_send(alice, room_id, "restarted", 5000, "a")).body["delay_id"]
    cancelled = (await delayed_send(alice, room_id, "cancelled", 5000, "b")).body["delay_id"]
    now = (await delayed_send(alice, room_id, "now", 60_000, "c")).body["delay_id"]

    clock.advance(4)
    anonymous = server.client()
    assert (await anonymous.post(f"{MGMT}/{restarted}", {"action": "restart"})).code == 200
    assert (await anonymous.post(f"{MGMT}/{cancelled}/cancel", {})).code == 200
    assert (await alice.post(f"{MGMT}/{now}", {"action": "send"})).code == 200
    assert await bodies(alice, room_id) == ["now"]

    clock.advance(2)  # past the first delay, not the restarted one
    await pause(0.1)
    assert await bodies(alice, room_id) == ["now"]
    clock.advance(3.5)
    assert await eventually(lambda: bodies(alice, room_id), clock,
                            ["now", "restarted"]) == ["now", "restarted"]
    again = await anonymous.post(f"{MGMT}/{cancelled}/cancel", {})
    assert (again.code, again.body["errcode"]) == (404, "M_NOT_FOUND")
    bad = await alice.post(f"{MGMT}/{now}", {"action": "explode"})
    assert (bad.code, bad.body["errcode"]) == (400, "M_INVALID_PARAM")
    missing = await alice.post(f"{MGMT}/{now}", {})
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")


@pytest_twisted.ensureDeferred
async def test_a_delay_over_the_maximum_is_refused(make_server: Any) -> None:
    server, _ = await started(make_server)
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await delayed_send(alice, room_id, "much later", 2 * 3600 * 1000, "t1")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    caps = await alice.get(f"{V3}/capabilities")
    assert caps.body["capabilities"]["org.matrix.msc4140.delayed_events"][
        "max_delay_ms"] == 3600 * 1000


@pytest_twisted.ensureDeferred
async def test_another_users_state_cancels_a_delayed_state_event(make_server: Any) -> None:
    server, clock = await started(make_server)
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", power_level_content_override={
        "events": {"org.example.call": 0}})
    assert (await bob.post(f"{V3}/join/{q(room_id)}", {})).code == 200
    path = f"{V3}/rooms/{q(room_id)}/state/org.example.call/shared"

    mine = await alice.put(path, {"state": "left"}, params={DELAY: "5000"})
    assert mine.code == 200, mine.body
    # alice's own update of the state keeps her delayed one
    assert (await alice.put(path, {"state": "joined"})).code == 200
    await pause(0.1)
    assert len((await alice.get(MGMT)).body["delayed_events"]) == 1
    # bob's update replaces it: alice's delayed event must not undo it
    assert (await bob.put(path, {"state": "bob"})).code == 200

    async def cancelled() -> bool:
        return (await alice.get(MGMT)).body["delayed_events"] == []
    assert await eventually(cancelled, clock)
    clock.advance(6)
    await pause(0.1)
    current = await alice.get(path)
    assert current.body == {"state": "bob"}


@pytest_twisted.ensureDeferred
async def test_a_delayed_state_event_is_sent_after_a_restart(make_server: Any,
                                                            engine: str) -> None:
    server, clock = await started(make_server)
    alice = await server.register("alice")
    room_id = await create_room(alice)
    path = f"{V3}/rooms/{q(room_id)}/state/m.room.topic/"
    resp = await alice.put(path, {"topic": "after the restart"}, params={DELAY: "5000"})
    assert resp.code == 200, resp.body
    await server.hs.stop()

    hs = HomeServer(server.hs.config, reactor, clock=clock)
    await hs.setup()
    hs.listen()
    restarted = TestServer(hs, engine)
    try:
        again = restarted.client(alice.access_token)
        clock.advance(6)

        async def topic() -> Any:
            current = await again.get(path)
            return current.body.get("topic") == "after the restart"
        assert await eventually(topic, clock)
    finally:
        await hs.stop()
