"""Gaps in a room's history: events we never received (a /get_missing_events
that did not reach back far enough) are fetched with /backfill when a client
pages back over them, and a room's history never continues into another
room's (an event naming another room's event as its prev_event)."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from homeserver.events.builder import build_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.federation.harness import server_name
from tests.federation.test_rooms import _has_body, joined_pair, q, wait_for
from tests.helpers import create_public_room, send_text

FED = "/_matrix/federation/v1"


async def all_bodies(client: Any, room_id: str) -> list[str]:
    """Every message body a client reads paging back to the room's start."""
    seen: list[str] = []
    token = None
    for _ in range(50):
        params = {"dir": "b", "limit": "10"}
        if token:
            params["from"] = token
        resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/messages",
                                params=params)
        assert resp.code == 200, resp.body
        seen += [e["content"].get("body") for e in resp.body["chunk"]
                 if e["type"] == "m.room.message"]
        token = resp.body.get("end")
        if not token:
            break
    return seen


@pytest_twisted.ensureDeferred
async def test_paging_back_over_a_gap_fetches_the_missing_history(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    # A holds back its transactions: B hears only of the last message, and
    # /get_missing_events (20 at most) cannot reach back over all of them
    await a.hs.federation_sender.stop()
    ids = [await send_text(alice, room_id, f"gap {i}", f"g{i}") for i in range(30)]
    last = await a.hs.stores.events.get_event(ids[-1])
    assert last is not None
    resp = await a.hs.federation_client.put_json(
        server_name(b), f"{FED}/send/gap1",
        {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": [last.json]})
    assert not any(r.get("error") for r in resp["pdus"].values()), resp
    await wait_for(lambda: _has_body(bob, room_id, "gap 29"))

    # paging back, bob reads the whole conversation: the events of the gap
    # came by /backfill
    seen = await all_bodies(bob, room_id)
    assert sorted(b for b in seen if b.startswith("gap")) == sorted(
        f"gap {i}" for i in range(30))
    assert len(seen) == len(set(seen))


@pytest_twisted.ensureDeferred
async def test_an_event_continuing_another_rooms_history_is_refused(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    # a second room both servers are in, with a message in it
    other_room = await create_public_room(alice)
    resp = await bob.post(f"/_matrix/client/v3/join/{q(other_room)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    p_id = await send_text(alice, other_room, "event P", "p1")
    await wait_for(lambda: _has_body(bob, other_room, "event P"))

    # A sends an event of the first room whose prev_event is P
    room = await a.hs.stores.rooms.get_room(room_id)
    assert room is not None
    rv = KNOWN_ROOM_VERSIONS[room.room_version]
    state = await a.hs.stores.rooms.get_current_state_ids(room.room_nid)
    auth = [state[("m.room.power_levels", "")], state[("m.room.member", alice.user_id)]]
    if not rv.room_id_from_create_event:
        auth.append(state[("m.room.create", "")])
    pdu, event = build_event(
        room_version=rv, room_id=room_id, sender=alice.user_id, event_type="m.room.message",
        content={"msgtype": "m.text", "body": "event Q"}, prev_event_ids=[p_id],
        auth_event_ids=auth, depth=100, origin=a.hs.hostname,
        origin_server_ts=a.hs.now_ms(), signing_key=a.hs.signing_key)
    resp = await a.hs.federation_client.put_json(
        server_name(b), f"{FED}/send/cross1",
        {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": [pdu]})
    assert resp["pdus"][event.event_id].get("error"), resp

    # the room still works, and neither room's timeline shows Q
    await send_text(alice, room_id, "after", "t2")
    await wait_for(lambda: _has_body(bob, room_id, "after"))
    assert "event Q" not in await all_bodies(bob, room_id)
    assert await all_bodies(bob, other_room) == ["event P"]

    # B's /backfill and /get_missing_events of the first room never walk
    # into the second room's history
    b_room = await b.hs.stores.rooms.get_room(room_id)
    assert b_room is not None
    held = await b.hs.stores.federation_events.get_prev_events_for_backfill(
        b_room.room_nid, [p_id], 10)
    assert held == []
