"""The WebSocket transport for sync, through autobahn's own Twisted client."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from twisted.internet import defer
from twisted.internet import reactor as _reactor

from homeserver.api import websocket
from homeserver.api.websocket import STREAM_PATH
from tests.api.test_rooms import create_room
from tests.api.test_rooms import two_users_in_a_room as shared_room
from tests.harness import Client, TestServer

reactor: Any = _reactor
V3 = "/_matrix/client/v3"
WAIT_S = 10.0
UPGRADE_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


# -- a socket client ---------------------------------------------------------------


class HandshakeRefused(Exception):
    pass


class _Protocol(WebSocketClientProtocol):
    factory: "_Factory"

    def onConnect(self, response: ConnectionResponse) -> None:  # noqa: N802
        self.factory.subprotocol = response.protocol

    def onOpen(self) -> None:  # noqa: N802
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        frame = json.loads(payload)
        if "id" in frame:
            self.factory.responses.put(frame)
        else:
            self.factory.updates.put(frame)

    def onClose(self, wasClean: bool, code: int | None,  # noqa: N802, N803
                reason: str | None) -> None:
        if not self.factory.opened.called:
            self.factory.opened.errback(HandshakeRefused(reason))
        if not self.factory.closed.called:
            self.factory.closed.callback((code, reason))


class _Factory(WebSocketClientFactory):
    protocol: Any = _Protocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: defer.Deferred[_Protocol] = defer.Deferred()
        self.closed: defer.Deferred[tuple[int | None, str | None]] = defer.Deferred()
        self.updates: defer.DeferredQueue[dict[str, Any]] = defer.DeferredQueue()
        self.responses: defer.DeferredQueue[dict[str, Any]] = defer.DeferredQueue()
        self.subprotocol: str | None = None


async def _within(d: defer.Deferred[Any], seconds: float = WAIT_S) -> Any:
    return await d.addTimeout(seconds, reactor)


class Socket:
    """One open stream: its pushed sync frames and its request/response pairs."""

    def __init__(self, factory: _Factory, proto: _Protocol) -> None:
        self.factory = factory
        self.proto = proto
        self._ids = 0

    async def next_update(self, seconds: float = WAIT_S) -> dict[str, Any]:
        frame: dict[str, Any] = await _within(self.factory.updates.get(), seconds)
        return frame

    async def update_where(self, test: Any) -> dict[str, Any]:
        """The first pushed frame for which ``test(frame)`` holds."""
        while True:
            frame = await self.next_update()
            if test(frame):
                return frame

    async def next_response(self) -> dict[str, Any]:
        frame: dict[str, Any] = await _within(self.factory.responses.get())
        return frame

    async def request(self, method: str, params: dict[str, Any] | None = None,
                      request_id: str | None = None) -> dict[str, Any]:
        if request_id is None:
            self._ids += 1
            request_id = f"r{self._ids}"
        message: dict[str, Any] = {"id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send_raw(json.dumps(message).encode())
        response = await self.next_response()
        assert response["id"] == request_id, response
        return response

    def send_raw(self, payload: bytes, binary: bool = False) -> None:
        self.proto.sendMessage(payload, isBinary=binary)

    async def closed(self) -> tuple[int | None, str | None]:
        result: tuple[int | None, str | None] = await _within(self.factory.closed)
        return result

    async def close(self) -> None:
        if not self.factory.closed.called:
            self.proto.sendClose(1000)
            await self.closed()


async def connect(server: TestServer, client: Client | None, *, since: str | None = None,
                  protocols: list[str] | None = None, token_in_header: bool = False,
                  **params: str) -> Socket:
    query = dict(params)
    headers = {}
    if client is not None and client.access_token is not None:
        if token_in_header:
            headers["Authorization"] = f"Bearer {client.access_token}"
        else:
            query["access_token"] = client.access_token
    if since is not None:
        query["since"] = since
    port = server.hs.ports[0].getHost().port
    url = f"ws://127.0.0.1:{port}{STREAM_PATH}"
    if query:
        url += "?" + urlencode(query)
    factory = _Factory(url, protocols=["m.json"] if protocols is None else protocols,
                       headers=headers)
    reactor.connectTCP("127.0.0.1", port, factory)
    proto = await _within(factory.opened)
    socket = Socket(factory, proto)
    sockets.append(socket)
    return socket


# every socket a test opened, closed after it whatever happened
sockets: list[Socket] = []


@pytest_twisted.async_yield_fixture(autouse=True)
async def close_sockets(server: TestServer) -> Any:
    # depends on the server so that it runs (and closes) before the server stops
    yield
    while sockets:
        await sockets.pop().close()


# -- the common moves ------------------------------------------------------------


async def say(client: Client, room_id: str, text: str) -> str:
    resp = await client.put(f"{V3}/rooms/{room_id}/send/m.room.message/{text}",
                            {"msgtype": "m.text", "body": text})
    assert resp.code == 200, resp.body
    event_id: str = resp.body["event_id"]
    return event_id


def room_section(frame: dict[str, Any], room_id: str) -> dict[str, Any]:
    section: dict[str, Any] = frame.get("rooms", {}).get("join", {}).get(room_id, {})
    return section


def texts(frame: dict[str, Any], room_id: str) -> list[str]:
    """The bodies of the messages in a frame's timeline of the room."""
    events = room_section(frame, room_id).get("timeline", {}).get("events", [])
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def ephemeral(frame: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    events = room_section(frame, room_id).get("ephemeral", {}).get("events", [])
    return [e for e in events if e["type"] == event_type]


async def texts_until(socket: Socket, room_id: str, last: str) -> list[str]:
    """Every message body pushed to ``socket`` in the room up to ``last``."""
    seen: list[str] = []
    while last not in seen:
        seen += texts(await socket.next_update(), room_id)
    return seen


# -- the handshake ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_handshake_without_a_token_is_refused_with_401(server: TestServer) -> None:
    resp = await server.client().get(STREAM_PATH, token=None, headers=UPGRADE_HEADERS)
    assert resp.code == 401
    assert resp.body["errcode"] == "M_MISSING_TOKEN"
    try:
        await connect(server, None)
    except HandshakeRefused as e:
        assert "401" in str(e)
    else:
        raise AssertionError("the handshake went through without a token")


@pytest_twisted.ensureDeferred
async def test_handshake_with_a_bad_token_is_refused_with_401(server: TestServer) -> None:
    resp = await server.client("not-a-token").get(STREAM_PATH, headers=UPGRADE_HEADERS)
    assert resp.code == 401
    assert resp.body["errcode"] == "M_UNKNOWN_TOKEN"
    try:
        await connect(server, server.client("not-a-token"))
    except HandshakeRefused as e:
        assert "401" in str(e)
    else:
        raise AssertionError("the handshake went through with a bad token")


@pytest_twisted.ensureDeferred
async def test_plain_http_get_is_told_to_upgrade(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(STREAM_PATH)
    assert resp.code == 426
    assert resp.body["errcode"] == "M_UNRECOGNIZED"


@pytest_twisted.ensureDeferred
async def test_bad_filter_or_presence_is_refused_before_the_upgrade(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(STREAM_PATH, headers=UPGRADE_HEADERS, params={"filter": "{nope"})
    assert resp.code == 400
    assert resp.body["errcode"] == "M_NOT_JSON"
    resp = await alice.get(STREAM_PATH, headers=UPGRADE_HEADERS,
                           params={"set_presence": "busy"})
    assert resp.code == 400
    assert resp.body["errcode"] == "M_INVALID_PARAM"


@pytest_twisted.ensureDeferred
async def test_first_frame_is_an_initial_sync(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, name="Lobby")
    socket = await connect(server, alice)
    assert socket.factory.subprotocol == "m.json"
    frame = await socket.next_update()
    assert isinstance(frame["next_batch"], str)
    state = room_section(frame, room_id)["state"]["events"] + \
        room_section(frame, room_id)["timeline"]["events"]
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "Lobby" for e in state)
    initial = await alice.get(f"{V3}/sync")
    assert initial.code == 200
    assert set(frame) == set(initial.body)


@pytest_twisted.ensureDeferred
async def test_token_in_header_and_no_subprotocol_are_accepted(server: TestServer) -> None:
    alice = await server.register("alice")
    socket = await connect(server, alice, token_in_header=True, protocols=[])
    assert socket.factory.subprotocol is None
    assert "next_batch" in await socket.next_update()


# -- pushed deltas ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_message_from_another_user_is_pushed(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    socket = await connect(server, bob)
    first = await socket.next_update()
    await say(alice, room_id, "hello")
    frame = await socket.next_update()
    assert texts(frame, room_id) == ["hello"]
    assert frame["next_batch"] != first["next_batch"]
    # the same JSON as /sync from the same token
    polled = await bob.get(f"{V3}/sync", params={"since": first["next_batch"]})
    assert texts(polled.body, room_id) == ["hello"]
    assert set(frame) == set(polled.body)


@pytest_twisted.ensureDeferred
async def test_reconnect_with_last_token_gets_exactly_what_was_missed(
        server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    socket = await connect(server, bob)
    await socket.next_update()
    await say(alice, room_id, "one")
    frame = await socket.update_where(lambda f: "one" in texts(f, room_id))
    last_token = frame["next_batch"]
    await socket.close()

    for text in ("two", "three", "four"):
        await say(alice, room_id, text)
    socket = await connect(server, bob, since=last_token)
    missed = await texts_until(socket, room_id, "four")
    await say(alice, room_id, "five")
    after = await texts_until(socket, room_id, "five")
    assert missed == ["two", "three", "four"]
    assert after == ["five"]


# -- requests --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ping_answers_with_an_empty_result(server: TestServer) -> None:
    alice = await server.register("alice")
    socket = await connect(server, alice)
    assert await socket.request("ping") == {"id": "r1", "result": {}}
    # the draft's spelling of params
    socket.send_raw(json.dumps({"id": "p", "method": "ping", "param": {}}).encode())
    assert await socket.next_response() == {"id": "p", "result": {}}


@pytest_twisted.ensureDeferred
async def test_send_returns_event_id_and_retry_returns_the_same(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    bob_socket = await connect(server, bob)
    await bob_socket.next_update()
    socket = await connect(server, alice)
    params = {"room_id": room_id, "event_type": "m.room.message",
              "content": {"msgtype": "m.text", "body": "over the socket"}}
    first = await socket.request("send", params, request_id="txn-1")
    event_id = first["result"]["event_id"]
    assert event_id.startswith("$")
    again = await socket.request("send", params, request_id="txn-1")
    assert again["result"]["event_id"] == event_id
    frame = await bob_socket.update_where(lambda f: texts(f, room_id))
    assert texts(frame, room_id) == ["over the socket"]
    resp = await alice.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b"})
    assert [e["event_id"] for e in resp.body["chunk"]].count(event_id) == 1


@pytest_twisted.ensureDeferred
async def test_send_shares_transaction_ids_with_rest(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await say(alice, room_id, "t1")  # PUT .../send/m.room.message/t1
    socket = await connect(server, alice)
    resp = await socket.request("send", {"room_id": room_id, "event_type": "m.room.message",
                                         "content": {"msgtype": "m.text", "body": "t1"}},
                                request_id="t1")
    assert resp["result"]["event_id"] == event_id


@pytest_twisted.ensureDeferred
async def test_send_to_a_room_one_is_not_in_is_forbidden(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice)
    socket = await connect(server, bob)
    resp = await socket.request("send", {"room_id": room_id, "event_type": "m.room.message",
                                         "content": {"body": "hi"}})
    assert resp["error"]["errcode"] == "M_FORBIDDEN"


@pytest_twisted.ensureDeferred
async def test_state_sets_room_state(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    socket = await connect(server, alice)
    resp = await socket.request("state", {"room_id": room_id, "event_type": "m.room.topic",
                                          "state_key": "", "content": {"topic": "socks"}})
    assert resp["result"]["event_id"].startswith("$")
    topic = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.topic")
    assert topic.body == {"topic": "socks"}


@pytest_twisted.ensureDeferred
async def test_typing_over_the_socket_reaches_the_other_user(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    bob_socket = await connect(server, bob)
    await bob_socket.next_update()
    socket = await connect(server, alice)
    resp = await socket.request("typing", {"room_id": room_id, "typing": True,
                                           "timeout": 30000})
    assert resp == {"id": "r1", "result": {}}
    frame = await bob_socket.update_where(lambda f: ephemeral(f, room_id, "m.typing"))
    assert ephemeral(frame, room_id, "m.typing")[0]["content"]["user_ids"] == [alice.user_id]


@pytest_twisted.ensureDeferred
async def test_receipt_over_the_socket_reaches_the_other_user(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    event_id = await say(alice, room_id, "read me")
    alice_socket = await connect(server, alice)
    first = await alice_socket.next_update()
    socket = await connect(server, bob)
    resp = await socket.request("receipt", {"room_id": room_id, "receipt_type": "m.read",
                                            "event_id": event_id})
    assert resp == {"id": "r1", "result": {}}
    frame = await alice_socket.update_where(lambda f: ephemeral(f, room_id, "m.receipt"))
    receipt = ephemeral(frame, room_id, "m.receipt")[0]["content"]
    assert bob.user_id in receipt[event_id]["m.read"]
    polled = await alice.get(f"{V3}/sync", params={"since": first["next_batch"]})
    assert ephemeral(polled.body, room_id, "m.receipt")


@pytest_twisted.ensureDeferred
async def test_read_markers_over_the_socket_set_fully_read(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    event_id = await say(alice, room_id, "marker")
    socket = await connect(server, alice)
    resp = await socket.request("read_markers", {"room_id": room_id,
                                                 "m.fully_read": event_id})
    assert resp == {"id": "r1", "result": {}}
    marker = await alice.get(f"{V3}/user/{alice.user_id}/rooms/{room_id}"
                             "/account_data/m.fully_read")
    assert marker.body == {"event_id": event_id}


@pytest_twisted.ensureDeferred
async def test_bad_frames_get_error_responses_and_the_socket_stays_usable(
        server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    socket = await connect(server, alice)

    socket.send_raw(b"this is not json")
    assert (await socket.next_response()) == {
        "id": None, "error": {"errcode": "M_NOT_JSON", "error": "Content not JSON."}}
    socket.send_raw(b'{"method": "ping"}')
    resp = await socket.next_response()
    assert (resp["id"], resp["error"]["errcode"]) == (None, "M_BAD_JSON")
    socket.send_raw(b'{"id": "x"}')
    resp = await socket.next_response()
    assert (resp["id"], resp["error"]["errcode"]) == ("x", "M_BAD_JSON")
    socket.send_raw(b"[1, 2]")
    assert (await socket.next_response())["error"]["errcode"] == "M_BAD_JSON"
    socket.send_raw(b'{"id": "b", "method": "ping"}', binary=True)
    assert (await socket.next_response())["error"]["errcode"] == "M_NOT_JSON"

    resp = await socket.request("fly", {})
    assert resp["error"]["errcode"] == "M_UNRECOGNIZED"
    resp = await socket.request("send", {"room_id": room_id, "event_type": "m.room.message"})
    assert resp["error"] == {"errcode": "M_MISSING_PARAM", "error": "Missing parameter: content"}
    resp = await socket.request("send", {"room_id": room_id, "event_type": 5, "content": {}})
    assert resp["error"]["errcode"] == "M_BAD_JSON"
    resp = await socket.request("typing", {"room_id": room_id, "typing": "yes"})
    assert resp["error"]["errcode"] == "M_BAD_JSON"
    resp = await socket.request("send", "not an object")  # type: ignore[arg-type]
    assert resp["error"]["errcode"] == "M_BAD_JSON"

    assert (await socket.request("ping"))["result"] == {}


@pytest_twisted.ensureDeferred
async def test_oversized_frame_closes_the_socket(server: TestServer) -> None:
    alice = await server.register("alice")
    socket = await connect(server, alice)
    socket.send_raw(json.dumps({"id": "big", "method": "ping",
                                "params": {"pad": "x" * 70_000}}).encode())
    code, _ = await socket.closed()
    assert code == 1009


@pytest_twisted.ensureDeferred
async def test_logged_out_socket_is_closed_with_4001(server: TestServer) -> None:
    alice, bob, room_id = await shared_room(server)
    socket = await connect(server, bob)
    await socket.next_update()
    resp = await bob.post(f"{V3}/logout", {})
    assert resp.code == 200
    await say(alice, room_id, "anyone there?")
    code, reason = await socket.closed()
    assert code == 4001
    assert reason is not None and reason.startswith("M_UNKNOWN_TOKEN")
    assert socket.factory.updates.pending == []


@pytest_twisted.ensureDeferred
async def test_bad_since_token_closes_the_socket_with_the_error(server: TestServer) -> None:
    alice = await server.register("alice")
    socket = await connect(server, alice, since="not-a-token")
    code, reason = await socket.closed()
    assert code == 4000
    assert reason is not None and reason.startswith("M_INVALID_PARAM")


# -- the loop's housekeeping -----------------------------------------------------


async def _sleep(seconds: float) -> None:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    await d


@pytest_twisted.ensureDeferred
async def test_quiet_turns_of_the_loop_push_nothing(server: TestServer,
                                                    monkeypatch: Any) -> None:
    monkeypatch.setattr(websocket, "SYNC_TIMEOUT_MS", 100)
    alice, bob, room_id = await shared_room(server)
    socket = await connect(server, bob)
    await socket.next_update()
    await _sleep(0.6)  # several empty turns
    assert socket.factory.updates.pending == []
    await say(alice, room_id, "news")
    assert texts(await socket.next_update(), room_id) == ["news"]


@pytest_twisted.ensureDeferred
async def test_closing_the_socket_forgets_its_waiting_sync(server: TestServer) -> None:
    alice = await server.register("alice")
    socket = await connect(server, alice)
    await socket.next_update()
    await _sleep(0.1)
    assert server.hs.notifier.waiting_count() == 1
    await socket.close()
    for _ in range(50):
        if server.hs.notifier.waiting_count() == 0:
            break
        await _sleep(0.02)
    assert server.hs.notifier.waiting_count() == 0
    assert not server.hs.websocket.connections


@pytest_twisted.ensureDeferred
async def test_peer_that_stops_answering_pings_is_dropped(server: TestServer) -> None:
    # autobahn's timers tick in 0.2 s buckets: nothing much shorter than this
    server.hs.websocket.setProtocolOptions(autoPingInterval=0.5, autoPingTimeout=1.0)
    alice = await server.register("alice")
    socket = await connect(server, alice)
    await socket.next_update()
    assert len(server.hs.websocket.connections) == 1
    await _sleep(1.0)  # pings came and were answered
    assert len(server.hs.websocket.connections) == 1
    socket.proto.transport.pauseProducing()  # the client hears nothing, answers nothing
    for _ in range(250):
        if not server.hs.websocket.connections:
            break
        await _sleep(0.02)
    assert not server.hs.websocket.connections
    socket.proto.transport.abortConnection()
    await socket.closed()
