"""The federation sender, as a peer server sees it.

Until the receiving side of /send exists, the peer is a small HTTPS server
(real TLS, certificate from the test CA) named ``localhost:P`` that records
the transactions PUT to it and answers 200, 500, 400, or not at all, on
command; "down" means nothing listens on P (connection refused).

A remote user joined to a room: the invite is a real member event created
by our event creator (a local user inviting ``@bob:localhost:P``); bob's
join is then written into ``room_memberships`` with SQL, because no API can
make a remote user join yet (federated joins are being written).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet import reactor, ssl, task
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from homeserver.config import DEFAULT_ROOM_VERSION
from homeserver.events.hashes import compute_event_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.federation.ca import TestCA
from tests.federation.harness import free_port, restart, take_down
from tests.harness import TestServer


class Peer(Resource):
    """A remote server's /send endpoint."""

    isLeaf = True

    def __init__(self, ca: TestCA, port: int | None = None) -> None:
        super().__init__()
        self.ca = ca
        self.port_number = port or free_port()
        self.name = f"localhost:{self.port_number}"
        self.mode = "ok"  # ok | fail (500) | refuse (400) | hang
        self.txns: list[dict[str, Any]] = []  # acknowledged transactions, in order
        self.txn_ids: list[str] = []
        self.hanging: list[tuple[Request, dict[str, Any]]] = []
        self.attempts = 0  # every PUT, answered or not
        self._port: Any = None

    def listen(self) -> None:
        cert, key = self.ca.issue(f"peer-{self.port_number}")
        with open(cert, "rb") as f:
            pem = f.read()
        with open(key, "rb") as f:
            pem += f.read()
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        self._port = reactor.listenSSL(  # type: ignore[attr-defined]
            self.port_number, Site(self), options, interface="127.0.0.1")

    async def close(self) -> None:
        self.release()
        if self._port is not None:
            await self._port.stopListening()
            self._port = None

    def render_PUT(self, request: Request) -> Any:
        request.setHeader(b"Content-Type", b"application/json")
        if not request.path.startswith(b"/_matrix/federation/v1/send/"):
            request.setResponseCode(404)
            return b'{"errcode": "M_UNRECOGNIZED", "error": "not here"}'
        body = json.loads(request.content.read())  # type: ignore[union-attr]
        self.attempts += 1
        if self.mode == "hang":
            self.hanging.append((request, body))
            return NOT_DONE_YET
        if self.mode == "fail":
            request.setResponseCode(500)
            return b'{"errcode": "M_UNKNOWN", "error": "oops"}'
        if self.mode == "refuse":
            request.setResponseCode(400)
            return b'{"errcode": "M_BAD_JSON", "error": "no"}'
        self._acknowledge(request, body)
        return json.dumps({"pdus": {}}).encode()

    def _acknowledge(self, request: Request, body: dict[str, Any]) -> None:
        self.txns.append(body)
        self.txn_ids.append(request.path.decode().rsplit("/", 1)[1])

    def release(self) -> None:
        """Answer the hanging requests with 200; later ones are answered at once."""
        self.mode = "ok"
        hanging, self.hanging = self.hanging, []
        for request, body in hanging:
            self._acknowledge(request, body)
            if not request.finished and not request._disconnected:  # type: ignore[attr-defined]
                request.write(b'{"pdus": {}}')
                request.finish()

    def pdu_ids(self) -> list[str]:
        """Event IDs (v3+ rooms: reference hashes) of every PDU received, in order."""
        return [pdu_event_id(p) for t in self.txns for p in t["pdus"]]

    def edus(self) -> list[dict[str, Any]]:
        return [e for t in self.txns for e in t["edus"]]


def pdu_event_id(pdu: dict[str, Any]) -> str:
    # our test rooms have the default room version
    return compute_event_id(pdu, KNOWN_ROOM_VERSIONS[DEFAULT_ROOM_VERSION])


async def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait (on the real reactor) until ``check()`` holds."""
    waited = 0.0
    while not check():
        if waited > timeout:
            raise AssertionError("condition not reached in time")
        await task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


async def settle(seconds: float = 0.3) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def make_room(srv: TestServer, *remote_users: str) -> tuple[str, str]:
    """A room created by a new local user, with ``remote_users`` joined.
    Returns (creator, room ID)."""
    alice = await srv.register("alice" + str(free_port()))
    r = await alice.post("/_matrix/client/v3/createRoom", {"preset": "public_chat"})
    assert r.code == 200, r.body
    room_id = r.body["room_id"]
    assert alice.user_id is not None
    for user in remote_users:
        await mark_joined(srv, room_id, user)
    return alice.user_id, room_id


async def mark_joined(srv: TestServer, room_id: str, user_id: str) -> None:
    """A remote user's join, as if it had come over federation (see the
    module docstring): the membership row, pointing at the create event.

    A real join is an event after every event before it, and the sender
    enqueues events for the servers joined when it enqueues them: so the
    sender first catches up with everything committed so far (otherwise, on
    PostgreSQL's several connections, this row can land before the enqueue
    of earlier events, which would then go to the new server too)."""
    await sender_caught_up(srv)
    await srv.hs.db.execute(
        "test_mark_joined",
        "INSERT INTO room_memberships (user_id, room_nid, membership, event_nid,"
        " stream_ordering) SELECT ?, r.room_nid, 'join', e.event_nid, e.stream_ordering"
        " FROM rooms r JOIN events e ON e.room_nid = r.room_nid"
        " WHERE r.room_id = ? AND e.event_type = 'm.room.create'", (user_id, room_id))


async def sender_caught_up(srv: TestServer) -> None:
    """Wait until the federation sender has enqueued every event committed so far."""
    # (the commit listener hands events over before the write's caller
    # resumes: what is left is the enqueue in flight)
    sender = srv.hs.federation_sender
    await eventually(lambda: not sender._pending and sender._enqueuer is None)


async def say(srv: TestServer, sender: str, room_id: str, text: str) -> str:
    return await srv.hs.event_creator.send(sender, room_id, "m.room.message",
                                           {"msgtype": "m.text", "body": text})


async def queued_rows(srv: TestServer, destination: str) -> int:
    return await srv.hs.stores.federation_queue.count_pdus(destination, 10_000)


async def drained(srv: TestServer, destination: str, timeout: float = 10.0) -> None:
    """Wait until nothing is queued for ``destination``: the sender deletes a
    transaction's rows once the answer is in, just after the peer saw it."""
    waited = 0.0
    while await queued_rows(srv, destination):
        if waited > timeout:
            raise AssertionError(f"{destination} still has PDUs queued")
        await task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


# -- tests -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_local_events_reach_the_servers_of_the_room(federation: Any,
                                                          test_ca: TestCA) -> None:
    peer = Peer(test_ca)
    peer.listen()
    try:
        srv = await federation()
        alice, room_id = await make_room(srv)
        # a ban of a user of a server with nobody in the room reaches that
        # server: the member event's target must hear of it
        eve = f"@eve:{peer.name}"
        ban = await srv.hs.event_creator.send(alice, room_id, "m.room.member",
                                              {"membership": "ban"}, state_key=eve)
        await eventually(lambda: peer.pdu_ids() == [ban])
        assert peer.txns[0]["origin"] == srv.hs.hostname
        assert peer.txns[0]["pdus"][0]["state_key"] == eve
        # messages go to the servers of the joined members
        await mark_joined(srv, room_id, f"@bob:{peer.name}")
        sent = [await say(srv, alice, room_id, f"hello {i}") for i in range(3)]
        await eventually(lambda: peer.pdu_ids()[1:] == sent)
        assert len(set(peer.txn_ids)) == len(peer.txn_ids)
        await drained(srv, peer.name)
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_down_destination_catches_up_with_latest_event_per_room(
        federation: Any, test_ca: TestCA) -> None:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    peer = Peer(test_ca)  # not listening: the destination is down
    try:
        srv = await federation(clock=clock)
        bob = f"@bob:{peer.name}"
        alice, room_a = await make_room(srv, bob)
        alice_b, room_b = await make_room(srv, bob)
        await settle()
        # the rooms' own events may be queued for the peer too (the sender picks
        # destinations when it enqueues, maybe after bob was marked joined)
        before = await queued_rows(srv, peer.name)
        for i in range(30):
            await say(srv, alice, room_a, f"a{i}")
        last_b = [await say(srv, alice_b, room_b, f"b{i}") for i in range(25)][-1]
        last_a = await say(srv, alice, room_a, "a last")
        # in backoff: events only wrote rows (56 messages)
        await settle()
        assert await queued_rows(srv, peer.name) == before + 56
        peer.listen()
        await settle()
        assert peer.txns == []  # still in backoff: nothing tried
        # min interval 10 min, +20 % jitter at most
        clock.advance(12 * 60)
        await eventually(lambda: len(peer.pdu_ids()) == 2)
        assert sorted(peer.pdu_ids()) == sorted([last_a, last_b])
        assert len(peer.txns[0]["pdus"]) == 2  # one transaction
        await settle()
        assert len(peer.pdu_ids()) == 2
        assert await queued_rows(srv, peer.name) == 0
        # healthy again: the next event goes at once
        nxt = await say(srv, alice, room_a, "back")
        await eventually(lambda: peer.pdu_ids()[-1:] == [nxt])
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_queue_survives_a_restart_of_the_sending_server(
        federation: Any, test_ca: TestCA) -> None:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    peer = Peer(test_ca)
    try:
        srv = await federation(clock=clock)
        bob = f"@bob:{peer.name}"
        alice, room_id = await make_room(srv, bob)
        # the room's own events may be queued for the peer too, if the sender
        # enqueued them after bob's join was marked (destinations are the
        # servers joined when it enqueues): count from here
        await settle()
        await sender_caught_up(srv)
        before = await queued_rows(srv, peer.name)
        sent = [await say(srv, alice, room_id, f"m{i}") for i in range(3)]
        await settle()
        await sender_caught_up(srv)
        assert await queued_rows(srv, peer.name) == before + 3
        # a crash between the commit of the messages and their queue rows:
        # the rows are not there and the "enqueued up to" position is behind
        # them (the peer is in backoff: the sender does not touch the queue)
        await srv.hs.db.execute("test_crash", "DELETE FROM federation_pdu_queue"
                                " WHERE stream_ordering > (SELECT MIN(stream_ordering) - 1"
                                " FROM events WHERE event_type = 'm.room.message')")
        await srv.hs.db.execute(
            "test_crash", "UPDATE federation_sender_position SET stream_ordering ="
            " (SELECT MIN(stream_ordering) - 1 FROM events WHERE event_type = 'm.room.message')")
        assert await queued_rows(srv, peer.name) == before
        await take_down(srv)
        peer.listen()
        await restart(srv, clock)
        # the backoff was persisted: nothing before it ends
        await settle()
        assert peer.txns == []
        clock.advance(12 * 60)
        await eventually(lambda: peer.pdu_ids()[-3:] == sent)
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_failing_destination_backs_off_longer_each_time(federation: Any,
                                                              test_ca: TestCA) -> None:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    peer = Peer(test_ca)
    peer.listen()
    peer.mode = "fail"
    try:
        srv = await federation(clock=clock)
        alice, room_id = await make_room(srv, f"@bob:{peer.name}")
        store = srv.hs.stores.federation_queue
        await say(srv, alice, room_id, "first")
        await eventually(lambda: peer.attempts == 1)
        await say(srv, alice, room_id, "queued while backing off")
        await settle()
        assert peer.attempts == 1  # new events do not retry a backing-off peer
        assert (await store.get_retry_timings())[peer.name][1] == 600_000
        clock.advance(12 * 60)  # the first interval (10 min +- 20 %) is over
        await eventually(lambda: peer.attempts == 2)
        await settle()
        assert (await store.get_retry_timings())[peer.name][1] == 1_200_000
        clock.advance(12 * 60)  # not yet: the interval doubled
        await settle()
        assert peer.attempts == 2
        # the peer talks to us: retry now
        peer.mode = "ok"
        srv.hs.federation_sender.wake_destination(peer.name)
        await eventually(lambda: len(peer.pdu_ids()) == 2)
        await settle()
        assert peer.name not in await store.get_retry_timings()
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_stopping_mid_transaction_is_no_fault_of_the_peer(federation: Any,
                                                               test_ca: TestCA) -> None:
    # A server shut down while a transaction is in flight must not hold the
    # peer in backoff when it comes back: what was in flight is sent at once.
    peer = Peer(test_ca)
    peer.listen()
    peer.mode = "hang"
    try:
        srv = await federation()
        alice, room_id = await make_room(srv, f"@bob:{peer.name}")
        sent = await say(srv, alice, room_id, "in flight at shutdown")
        await eventually(lambda: len(peer.hanging) == 1)
        await take_down(srv)
        peer.mode = "ok"
        await restart(srv)
        await eventually(lambda: sent in peer.pdu_ids())
        assert peer.name not in await srv.hs.stores.federation_queue.get_retry_timings()
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_hanging_destination_does_not_hold_up_another(federation: Any,
                                                            test_ca: TestCA) -> None:
    slow, fast = Peer(test_ca), Peer(test_ca)
    slow.listen()
    fast.listen()
    slow.mode = "hang"
    try:
        srv = await federation()
        alice, room_id = await make_room(srv, f"@bob:{slow.name}", f"@carol:{fast.name}")
        first = await say(srv, alice, room_id, "one")
        second = await say(srv, alice, room_id, "two")
        await eventually(lambda: first in fast.pdu_ids() and second in fast.pdu_ids())
        assert len(slow.hanging) == 1  # one transaction in flight at most
        slow.release()
        await eventually(lambda: second in slow.pdu_ids())
        assert slow.pdu_ids().count(first) == 1
    finally:
        await slow.close()
        await fast.close()


@pytest_twisted.ensureDeferred
async def test_refused_transaction_is_dropped_and_the_queue_moves_on(
        federation: Any, test_ca: TestCA) -> None:
    peer = Peer(test_ca)
    peer.listen()
    peer.mode = "refuse"
    try:
        srv = await federation()
        alice, room_id = await make_room(srv, f"@bob:{peer.name}")
        refused = await say(srv, alice, room_id, "refused")
        await eventually(lambda: peer.attempts >= 1)
        await settle()
        peer.mode = "ok"
        nxt = await say(srv, alice, room_id, "after")
        await eventually(lambda: nxt in peer.pdu_ids())
        assert refused not in peer.pdu_ids()
        await drained(srv, peer.name)
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_edus_coalesce_by_key_and_presence_can_be_switched_off(
        federation: Any, test_ca: TestCA) -> None:
    peer = Peer(test_ca)
    peer.listen()
    peer.mode = "hang"
    try:
        srv = await federation(presence={"enabled": True, "federation": False})
        sender = srv.hs.federation_sender
        sender.send_edu(peer.name, "m.receipt", {"n": 0})
        await eventually(lambda: len(peer.hanging) == 1)
        # while that one is in flight:
        sender.send_edu(peer.name, "m.typing", {"typing": True}, key="!room")
        sender.send_edu(peer.name, "m.presence", {"push": []})
        sender.send_edu(peer.name, "m.typing", {"typing": False}, key="!room")
        sender.send_edu(peer.name, "m.typing", {"typing": True}, key="!other")
        peer.release()
        await eventually(lambda: len(peer.txns) == 2)
        assert peer.txns[1]["edus"] == [
            {"edu_type": "m.typing", "content": {"typing": False}},
            {"edu_type": "m.typing", "content": {"typing": True}}]
        await settle()
        assert len(peer.txns) == 2
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_to_device_messages_are_delivered_and_removed(federation: Any,
                                                            test_ca: TestCA) -> None:
    peer = Peer(test_ca)
    peer.listen()
    try:
        srv = await federation()
        content = {"sender": "@alice:x", "type": "m.test", "message_id": "m1",
                   "messages": {f"@bob:{peer.name}": {"DEV": {"hi": 1}}}}
        await srv.hs.stores.to_device.add_messages(
            "@alice:x", "m.test", {}, {peer.name: content}, None, srv.hs.now_ms())
        srv.hs.federation_sender.on_new_to_device(peer.name)
        await eventually(lambda: len(peer.txns) == 1)
        assert peer.edus() == [{"edu_type": "m.direct_to_device", "content": content}]
        await settle()
        assert await srv.hs.stores.to_device.get_outbox(peer.name) == []
    finally:
        await peer.close()



@pytest_twisted.ensureDeferred
async def test_message_reaches_a_real_remote_member(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    r = await alice.post("/_matrix/client/v3/createRoom", {"preset": "public_chat"})
    assert r.code == 200, r.body
    room_id = r.body["room_id"]
    r = await alice.post(f"/_matrix/client/v3/rooms/{room_id}/invite", {"user_id": bob.user_id})
    assert r.code == 200, r.body
    r = await bob.post(f"/_matrix/client/v3/join/{room_id}",
                       {}, params={"server_name": a.hs.hostname})
    assert r.code == 200, r.body
    r = await alice.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
                        {"msgtype": "m.text", "body": "hi bob"})
    assert r.code == 200, r.body
    event_id = r.body["event_id"]

    async def bob_sees_it() -> bool:
        got = await bob.get(f"/_matrix/client/v3/rooms/{room_id}/event/{event_id}")
        return got.code == 200 and got.body["content"]["body"] == "hi bob"

    for _ in range(250):
        if await bob_sees_it():
            break
        await settle(0.04)
    assert await bob_sees_it()


@pytest_twisted.ensureDeferred
async def test_an_invite_is_not_sent_in_a_transaction_to_a_server_outside_the_room(
        federation: Any, test_ca: TestCA) -> None:
    peer = Peer(test_ca)
    peer.listen()
    try:
        srv = await federation()
        alice, room_id = await make_room(srv)

        async def countersigned(event: Any, room: Any, state: Any) -> Any:
            return event  # the invitee's server had it through /invite

        srv.hs.federation_membership.send_invite = countersigned  # type: ignore[method-assign]
        await srv.hs.event_creator.send(alice, room_id, "m.room.member",
                                        {"membership": "invite"},
                                        state_key=f"@eve:{peer.name}")
        await mark_joined(srv, room_id, f"@bob:{peer.name}")
        hello = await say(srv, alice, room_id, "hello")
        await eventually(lambda: peer.pdu_ids() == [hello])
    finally:
        await peer.close()
