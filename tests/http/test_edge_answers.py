"""Requests the server cannot serve still get a Matrix answer a client can act on.

A join no server answers for is 404 "No known servers" (as Synapse says),
with no address of ours in it; a request line or headers over Twisted's
limits get 414 / 431 with a Matrix body instead of a dropped connection.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint

from tests.harness import TestServer

V3 = "/_matrix/client/v3"


@pytest_twisted.ensureDeferred
async def test_a_join_no_server_answers_is_404_without_addresses(server: TestServer) -> None:
    alice = await server.register("alice")
    # port 1 on loopback: nothing listens there, so nothing answers
    room_id = "!nowhere:127.0.0.1:1"
    resp = await alice.post(f"{V3}/join/{room_id}", {}, params={"via": "127.0.0.1:1"})
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND"), resp.body
    assert resp.body["error"] == "No known servers"
    joined = await alice.get(f"{V3}/joined_rooms")
    assert joined.body["joined_rooms"] == []


class _RawClient(protocol.Protocol):
    """Writes bytes as given and collects everything until the server closes."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""
        self.closed: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.closed.callback(self.received)


async def raw_exchange(server: TestServer, request: bytes) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of the server's answer to ``request`` sent raw."""
    from twisted.internet import reactor

    port = server.hs.ports[0].getHost().port
    client = _RawClient(request)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoint.connect(protocol.Factory.forProtocol(lambda: client))
    answer = await client.closed.addTimeout(30, reactor)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


@pytest_twisted.ensureDeferred
async def test_a_request_line_over_16_kib_is_414_with_a_matrix_body(server: TestServer) -> None:
    path = f"{V3}/publicRooms?since=" + "x" * 17_000
    status, body = await raw_exchange(
        server, f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    assert status == 414
    assert body["errcode"] == "M_UNKNOWN" and isinstance(body["error"], str)
    assert (await server.client().get("/_matrix/client/versions")).code == 200


@pytest_twisted.ensureDeferred
async def test_headers_over_16_kib_are_431_with_a_matrix_body(server: TestServer) -> None:
    many = "".join(f"X-Padding-{i}: {'y' * 100}\r\n" for i in range(200))
    status, body = await raw_exchange(
        server, f"GET /_matrix/client/versions HTTP/1.1\r\nHost: test\r\n{many}\r\n".encode())
    assert status == 431
    assert body["errcode"] == "M_UNKNOWN" and isinstance(body["error"], str)


@pytest_twisted.ensureDeferred
async def test_one_header_line_over_16_kib_is_431(server: TestServer) -> None:
    status, body = await raw_exchange(
        server, b"GET /_matrix/client/versions HTTP/1.1\r\nHost: test\r\n"
                b"Authorization: Bearer " + b"t" * 17_000 + b"\r\n\r\n")
    assert status == 431
    assert body["errcode"] == "M_UNKNOWN"


@pytest_twisted.ensureDeferred
async def test_a_head_just_under_the_limit_is_served(server: TestServer) -> None:
    path = "/_matrix/client/versions?x=" + "y" * 15_000
    status, body = await raw_exchange(
        server, f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    assert status == 200
    assert "versions" in body


@pytest_twisted.ensureDeferred
async def test_a_post_mislabelled_multipart_gets_a_matrix_error(server: TestServer) -> None:
    # Twisted parses a multipart/form-data POST itself unless told not to, and
    # answered a body that is not multipart with a bare 400 and a closed socket
    body = b'{"username": "carol", "password": "x"}'
    status, answer = await raw_exchange(
        server, b"POST " + V3.encode() + b"/login HTTP/1.1\r\nHost: test\r\n"
                b"Content-Type: multipart/form-data; boundary=zz\r\n"
                b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\n\r\n" + body)
    assert 400 <= status < 500
    assert isinstance(answer["errcode"], str) and isinstance(answer["error"], str)
