"""History visibility over federation: what another server reads of a room's
past with /event, /backfill and /get_missing_events.

Two of our servers on loopback; the second asks the first with its own
federation client (signed requests, as it does when it backfills). Events
from before the asking server could see the room come redacted, in place:
no body, but signed and linked, so its copy of the DAG stays whole.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from homeserver.events.hashes import compute_event_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.federation.client import FederationError
from tests.federation.harness import server_name
from tests.federation.test_rooms import _joined, q, send_text, wait_for
from tests.harness import Client, TestServer
from tests.helpers import create_public_room as create_room

FED = "/_matrix/federation/v1"


def visibility_state(value: str) -> list[dict[str, Any]]:
    return [{"type": "m.room.history_visibility", "state_key": "",
             "content": {"history_visibility": value}}]


async def bob_joins(a: TestServer, bob: Client, room_id: str, alice: Client) -> None:
    resp = await bob.post(f"/_matrix/client/v3/join/{q(room_id)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))


async def read_event(b: TestServer, a: TestServer, event_id: str) -> dict[str, Any]:
    """/event/{eventId} on ``a``, asked by ``b``: the PDU."""
    body = await b.hs.federation_client.get_json(server_name(a), f"{FED}/event/{q(event_id)}")
    assert [p.get("hashes") is not None for p in body["pdus"]] == [True]
    return body["pdus"][0]  # type: ignore[no-any-return]


async def backfill(b: TestServer, a: TestServer, room_id: str,
                   from_event: str) -> dict[str, dict[str, Any]]:
    """/backfill on ``a`` from ``from_event``, asked by ``b``: the PDUs by event ID."""
    body = await b.hs.federation_client.get_json(
        server_name(a), f"{FED}/backfill/{q(room_id)}", {"v": from_event, "limit": "50"})
    return await by_event_id(a, room_id, body["pdus"])


async def missing_events(b: TestServer, a: TestServer, room_id: str,
                         latest: str) -> dict[str, dict[str, Any]]:
    """/get_missing_events on ``a`` back from ``latest``, asked by ``b``: the PDUs by ID."""
    body = await b.hs.federation_client.post_json(
        server_name(a), f"{FED}/get_missing_events/{q(room_id)}",
        {"earliest_events": [], "latest_events": [latest], "limit": 20, "min_depth": 0})
    return await by_event_id(a, room_id, body["events"])


async def by_event_id(a: TestServer, room_id: str,
                      pdus: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    # the ID of a PDU is the hash of its redacted form: the same redacted or not
    room = await a.hs.stores.rooms.get_room(room_id)
    assert room is not None
    rv = KNOWN_ROOM_VERSIONS[room.room_version]
    return {compute_event_id(p, rv): p for p in pdus}


@pytest_twisted.ensureDeferred
async def test_joined_room_history_before_the_join_goes_out_redacted(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, initial_state=visibility_state("joined"))
    secret = await send_text(alice, room_id, "before bob came", "s1")
    # a server with nobody in the room reads nothing of it
    try:
        await read_event(b, a, secret)
        raise AssertionError("a server with no user in the room read an event")
    except FederationError as e:
        assert (e.code, e.errcode) == (403, "M_FORBIDDEN")

    await bob_joins(a, bob, room_id, alice)
    news = await send_text(alice, room_id, "after bob came", "n1")

    old = await read_event(b, a, secret)
    assert old["type"] == "m.room.message" and old["content"] == {}
    assert old["sender"] == alice.user_id and old["signatures"]
    assert (await read_event(b, a, news))["content"]["body"] == "after bob came"

    pdus = await backfill(b, a, room_id, news)
    assert pdus[secret]["content"] == {}
    assert pdus[news]["content"]["body"] == "after bob came"
    # state events keep what the peer's auth and state checks read
    assert any(p["type"] == "m.room.create" for p in pdus.values())
    assert any(p["type"] == "m.room.history_visibility"
               and p["content"] == {"history_visibility": "joined"} for p in pdus.values())

    pdus = await missing_events(b, a, room_id, news)
    assert pdus[secret]["content"] == {}


@pytest_twisted.ensureDeferred
async def test_shared_room_history_goes_out_in_full(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, initial_state=visibility_state("shared"))
    early = await send_text(alice, room_id, "shared before bob", "s1")
    await bob_joins(a, bob, room_id, alice)
    late = await send_text(alice, room_id, "shared after bob", "s2")

    assert (await read_event(b, a, early))["content"]["body"] == "shared before bob"
    pdus = await backfill(b, a, room_id, late)
    assert pdus[early]["content"]["body"] == "shared before bob"
    pdus = await missing_events(b, a, room_id, late)
    assert pdus[early]["content"]["body"] == "shared before bob"


@pytest_twisted.ensureDeferred
async def test_world_readable_room_history_goes_out_in_full(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, initial_state=visibility_state("world_readable"))
    early = await send_text(alice, room_id, "for anyone", "w1")
    # readable even by a server with nobody in the room
    assert (await read_event(b, a, early))["content"]["body"] == "for anyone"
    await bob_joins(a, bob, room_id, alice)
    late = await send_text(alice, room_id, "still for anyone", "w2")

    pdus = await backfill(b, a, room_id, late)
    assert pdus[early]["content"]["body"] == "for anyone"
    assert pdus[late]["content"]["body"] == "still for anyone"


@pytest_twisted.ensureDeferred
async def test_invited_room_history_is_seen_from_the_invite_on(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, preset="private_chat",
                                initial_state=visibility_state("invited"))
    before = await send_text(alice, room_id, "before the invite", "i1")
    resp = await alice.post(f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                            {"user_id": bob.user_id})
    assert resp.code == 200, resp.body
    during = await send_text(alice, room_id, "while bob is invited", "i2")
    resp = await bob.post(f"/_matrix/client/v3/rooms/{q(room_id)}/join", {})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))
    late = await send_text(alice, room_id, "bob is here", "i3")

    pdus = await backfill(b, a, room_id, late)
    assert pdus[before]["content"] == {}
    assert pdus[during]["content"]["body"] == "while bob is invited"
    assert pdus[late]["content"]["body"] == "bob is here"
