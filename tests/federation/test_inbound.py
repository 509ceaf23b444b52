"""What a server does with what other servers send it: forged events, bad
requests, a server that was down, concurrent state changes."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from signedjson.key import generate_signing_key
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol

from homeserver.events.builder import build_event
from homeserver.events.hashes import compute_event_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.federation.client import FederationError
from tests.federation.harness import _cut_connections, restart, server_name, take_down
from tests.federation.test_rooms import (
    _has_body,
    joined_pair,
    q,
    send_text,
    timeline_bodies,
    wait_for,
)
from tests.harness import TestServer


async def _true_when(value: bool) -> bool | None:
    return value or None


async def forge_message(a: TestServer, room_id: str, sender: str, body: str,
                        key: Any) -> dict[str, Any]:
    """A message in the room as ``a`` would build it, signed with ``key``."""
    room = await a.hs.stores.rooms.get_room(room_id)
    assert room is not None
    rv = KNOWN_ROOM_VERSIONS[room.room_version]
    ext = await a.hs.stores.rooms.get_forward_extremities(room.room_nid)
    state = await a.hs.stores.rooms.get_current_state_ids(room.room_nid)
    auth = [state[("m.room.power_levels", "")], state[("m.room.member", sender)]]
    if not rv.room_id_from_create_event:
        auth.append(state[("m.room.create", "")])
    pdu, _ = build_event(room_version=rv, room_id=room_id, sender=sender,
                         event_type="m.room.message", content={"msgtype": "m.text", "body": body},
                         prev_event_ids=[x.event_id for x in ext], auth_event_ids=auth,
                         depth=max(x.depth for x in ext) + 1, origin=a.hs.hostname,
                         origin_server_ts=a.hs.now_ms(), signing_key=key)
    return pdu


@pytest_twisted.ensureDeferred
async def test_forged_event_signature_is_rejected(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    forger = generate_signing_key(a.hs.signing_key.version)  # same key ID, other key
    forged = await forge_message(a, room_id, alice.user_id, "forged words", forger)
    genuine = await forge_message(a, room_id, alice.user_id, "genuine words", a.hs.signing_key)
    resp = await a.hs.federation_client.put_json(
        server_name(b), "/_matrix/federation/v1/send/forgery1",
        {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": [forged]})
    errors = [v for v in resp["pdus"].values() if v.get("error")]
    assert len(errors) == 1 and "signature" in errors[0]["error"].lower()
    resp = await a.hs.federation_client.put_json(
        server_name(b), "/_matrix/federation/v1/send/genuine1",
        {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": [genuine]})
    assert all(not v.get("error") for v in resp["pdus"].values()), resp
    bodies = await timeline_bodies(bob, room_id)
    assert "genuine words" in bodies and "forged words" not in bodies


@pytest_twisted.ensureDeferred
async def test_a_retried_transaction_is_answered_without_reprocessing(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    pdu = await forge_message(a, room_id, alice.user_id, "once", a.hs.signing_key)
    body = {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": [pdu]}
    first = await a.hs.federation_client.put_json(server_name(b),
                                                  "/_matrix/federation/v1/send/same", body)
    second = await a.hs.federation_client.put_json(server_name(b),
                                                   "/_matrix/federation/v1/send/same", body)
    assert first == second
    assert (await timeline_bodies(bob, room_id)).count("once") == 1


@pytest_twisted.ensureDeferred
async def test_bad_transactions_get_matrix_errors(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    client = a.hs.federation_client
    dest = server_name(b)
    too_many = {"origin": a.hs.hostname, "origin_server_ts": 1,
                "pdus": [{"room_id": room_id}] * 51}
    try:
        await client.put_json(dest, "/_matrix/federation/v1/send/big", too_many)
        raise AssertionError("accepted 51 PDUs")
    except FederationError as e:
        assert e.code == 400 and e.errcode == "M_BAD_JSON"
    garbage = {"origin": a.hs.hostname, "origin_server_ts": 1,
               "pdus": [{"room_id": room_id, "type": 5, "depth": "deep"}, "nonsense"],
               "edus": [{"edu_type": "m.typing", "content": "not an object"}, 7]}
    resp = await client.put_json(dest, "/_matrix/federation/v1/send/garbage", garbage)
    assert [v["error"] for v in resp["pdus"].values()]
    # the room still works afterwards
    await send_text(alice, room_id, "still fine", "t1")
    await wait_for(lambda: _has_body(bob, room_id, "still fine"))


@pytest_twisted.ensureDeferred
async def test_unsigned_federation_requests_are_refused(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    import treq

    from homeserver.federation.client import FederationClient

    client: FederationClient = a.hs.federation_client
    try:
        await client.get_json(server_name(b), f"/_matrix/federation/v1/state_ids/{q(room_id)}",
                              {"event_id": "$nope"}, sign=False)
        raise AssertionError("an unsigned request was answered")
    except FederationError as e:
        assert e.code == 401 and e.errcode == "M_UNAUTHORIZED"
    del treq


@pytest_twisted.ensureDeferred
async def test_a_server_that_was_down_catches_up(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    await take_down(b)
    for i in range(3):
        await send_text(alice, room_id, f"while you were out {i}", f"t{i}")
    b = await restart(b)
    # bob's server talks to A again: A retries at once instead of waiting out its backoff
    await send_text(bob, room_id, "back", "b1")
    for i in range(3):
        await wait_for(lambda i=i: _has_body(bob, room_id, f"while you were out {i}"))
    await wait_for(lambda: _has_body(alice, room_id, "back"))
    # each server orders its timeline by arrival: the same events, maybe not in one order
    async def same_bodies() -> bool:
        return sorted(await timeline_bodies(bob, room_id)) == \
            sorted(await timeline_bodies(alice, room_id))
    await wait_for(same_bodies)


@pytest_twisted.ensureDeferred
async def test_concurrent_state_changes_converge(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    # bob may set the topic too
    resp = await alice.put(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.power_levels",
                           {"users": {bob.user_id: 50},
                            "events": {"m.room.topic": 50}})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _power_synced(bob, room_id, bob.user_id))
    # both change the topic at once: each server sees a fork and resolves it
    from twisted.internet import defer
    r1, r2 = await defer.gatherResults([
        defer.ensureDeferred(alice.put(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.topic",
                                       {"topic": "from A"})),
        defer.ensureDeferred(bob.put(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.topic",
                                     {"topic": "from B"}))])
    assert r1.code == 200 and r2.code == 200
    await send_text(alice, room_id, "after the fork A", "f1")
    await send_text(bob, room_id, "after the fork B", "f1")
    await wait_for(lambda: _has_body(alice, room_id, "after the fork B"))
    await wait_for(lambda: _has_body(bob, room_id, "after the fork A"))

    async def same_state() -> bool:
        sa = await alice.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state")
        sb = await bob.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state")
        ka = sorted((e["type"], e["state_key"], e["event_id"]) for e in sa.body)
        kb = sorted((e["type"], e["state_key"], e["event_id"]) for e in sb.body)
        return ka == kb
    await wait_for(same_state)


async def _power_synced(client: Any, room_id: str, user_id: str) -> bool:
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.power_levels")
    return resp.code == 200 and resp.body.get("users", {}).get(user_id) == 50


@pytest_twisted.ensureDeferred
async def test_a_chain_of_messages_in_one_transaction_arrives_in_order(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    room = await a.hs.stores.rooms.get_room(room_id)
    assert room is not None
    rv = KNOWN_ROOM_VERSIONS[room.room_version]
    ext = await a.hs.stores.rooms.get_forward_extremities(room.room_nid)
    state = await a.hs.stores.rooms.get_current_state_ids(room.room_nid)
    auth = [state[("m.room.power_levels", "")], state[("m.room.member", alice.user_id)]]
    prev, depth = [x.event_id for x in ext], max(x.depth for x in ext)
    pdus = []
    for i in range(8):
        pdu, event = build_event(room_version=rv, room_id=room_id, sender=alice.user_id,
                                 event_type="m.room.message",
                                 content={"msgtype": "m.text", "body": f"chain {i}"},
                                 prev_event_ids=prev, auth_event_ids=auth, depth=depth + 1,
                                 origin=a.hs.hostname, origin_server_ts=a.hs.now_ms(),
                                 signing_key=a.hs.signing_key)
        pdus.append(pdu)
        prev, depth = [event.event_id], depth + 1
    resp = await a.hs.federation_client.put_json(
        server_name(b), "/_matrix/federation/v1/send/chain1",
        {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": pdus})
    assert len(resp["pdus"]) == 8 and all(not v for v in resp["pdus"].values()), resp
    bodies = await timeline_bodies(bob, room_id)
    assert [x for x in bodies if x.startswith("chain")] == [f"chain {i}" for i in range(8)]
    # bob's server carries on the chain: its next event builds on the last one
    await send_text(bob, room_id, "after the chain", "c1")
    await wait_for(lambda: _has_body(alice, room_id, "after the chain"))


class _BlackHole(Protocol):
    """Accepts a connection and never answers (not even the TLS handshake)."""

    def connectionMade(self) -> None:
        self.factory.accepted.append(self.transport)  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_a_hanging_origin_does_not_hold_up_the_room(federation: Any) -> None:
    """A server sends us an event whose predecessor we lack, then hangs when
    we ask it for the gap: our users keep talking in the room meanwhile."""
    a, b, alice, bob, room_id = await joined_pair(federation)
    # two events of A's: the first never sent, the second built on it
    missing = await forge_message(a, room_id, alice.user_id, "never sent", a.hs.signing_key)
    rv = KNOWN_ROOM_VERSIONS[(await a.hs.stores.rooms.get_room(room_id)).room_version]
    missing_id = compute_event_id(missing, rv)
    after, _ = build_event(room_version=rv, room_id=room_id, sender=alice.user_id,
                           event_type="m.room.message",
                           content={"msgtype": "m.text", "body": "after the gap"},
                           prev_event_ids=[missing_id], auth_event_ids=missing["auth_events"],
                           depth=missing["depth"] + 1, origin=a.hs.hostname,
                           origin_server_ts=a.hs.now_ms(), signing_key=a.hs.signing_key)
    # A's federation listener now accepts connections and never answers
    port_number = int(server_name(a).rsplit(":", 1)[1])
    fed_port = next(p for p in a.hs.ports if p.getHost().port == port_number)
    await fed_port.stopListening()
    a.hs.ports.remove(fed_port)
    _cut_connections(a)  # B's pooled connections to A go too
    hole = Factory.forProtocol(_BlackHole)
    hole.accepted = []  # type: ignore[attr-defined]
    hole_port = reactor.listenTCP(port_number, hole,  # type: ignore[attr-defined]
                                  interface="127.0.0.1")
    try:
        sent = defer.ensureDeferred(a.hs.federation_client.put_json(
            server_name(b), "/_matrix/federation/v1/send/gap1",
            {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": [after]}))
        # B asks A for the gap: its request hangs in the black hole
        await wait_for(lambda: _true_when(bool(hole.accepted)))  # type: ignore[attr-defined]

        await send_text(bob, room_id, "still talking", "b1")
        synced = await bob.get("/_matrix/client/v3/sync")
        timeline = synced.body["rooms"]["join"][room_id]["timeline"]["events"]
        assert "still talking" in [e["content"].get("body") for e in timeline]
        assert not sent.called  # A's transaction is still being handled
    finally:
        for transport in hole.accepted:  # type: ignore[attr-defined]
            transport.abortConnection()
        await hole_port.stopListening()
    # the fetch fails; the transaction gets an answer, not a 500
    resp = await sent
    assert set(resp["pdus"]) == {compute_event_id(after, rv)}
