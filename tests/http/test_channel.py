"""Connections that try to hold the server open: a header deadline and a per-IP cap.

Raw TCP clients against a real listener, so what is asserted is what a
client on the wire sees: an answer, a 408, or a closed socket.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from homeserver.http.channel import HEADER_DEADLINE_S, MAX_CONNECTIONS_PER_IP, GuardedSite

REQUEST = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: test.local\r\n\r\n"


class RawClient(protocol.Protocol):
    """Bytes out as the test says, everything that comes back kept."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._waiting: list[tuple[bytes, defer.Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data
        for item in list(self._waiting):
            if item[0] in self.received:
                self._waiting.remove(item)
                item[1].callback(None)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost.callback(None)

    async def wait_for(self, marker: bytes, timeout: float = 10.0) -> None:
        if marker in self.received:
            return
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((marker, d))
        d.addTimeout(timeout, reactor)
        await d

    async def wait_closed(self, timeout: float = 10.0) -> None:
        d = defer.Deferred()
        self.lost.addBoth(lambda r: d.callback(None) if not d.called else None)
        d.addTimeout(timeout, reactor)
        await d

    @property
    def closed(self) -> bool:
        return self.lost.called

    def close(self) -> None:
        if not self.lost.called and self.transport is not None:
            self.transport.loseConnection()


async def connect(port: int) -> RawClient:
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return client


async def real_pause(seconds: float = 0.05) -> None:
    """Let the server's reactor read what the client just wrote."""
    await task.deferLater(reactor, seconds, lambda: None)


def port_of(srv: Any) -> int:
    return int(srv.hs.ports[0].getHost().port)


# --- the header deadline ----------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_headers_trickled_a_byte_a_second_are_cut_at_the_deadline(
        make_server: Any) -> None:
    clock = task.Clock()
    srv = await make_server(clock=clock)
    client = await connect(port_of(srv))
    try:
        # one byte a second, each one restarting Twisted's own idle timer
        seconds = 0
        for byte in REQUEST[:int(HEADER_DEADLINE_S) - 1]:
            client.transport.write(bytes([byte]))
            await real_pause()
            clock.advance(1)
            seconds += 1
        assert not client.closed, f"cut after {seconds} s, before the deadline"
        for byte in REQUEST[seconds:seconds + 3]:
            client.transport.write(bytes([byte]))
            await real_pause()
            clock.advance(1)
        await client.wait_closed()
        assert client.received.startswith(b"HTTP/1.1 408 "), client.received
        assert b'"errcode":"M_UNKNOWN"' in client.received
    finally:
        client.close()


@pytest_twisted.ensureDeferred
async def test_a_kept_alive_connection_may_wait_past_the_deadline_between_requests(
        make_server: Any) -> None:
    clock = task.Clock()
    srv = await make_server(clock=clock)
    client = await connect(port_of(srv))
    try:
        client.transport.write(REQUEST)
        await client.wait_for(b"\r\n\r\n")
        assert client.received.startswith(b"HTTP/1.1 200 ")
        # idle between requests is the idle timeout's business, not the deadline's
        clock.advance(HEADER_DEADLINE_S * 3)
        await real_pause()
        assert not client.closed
        client.received = b""
        client.transport.write(REQUEST)
        await client.wait_for(b"\r\n\r\n")
        assert client.received.startswith(b"HTTP/1.1 200 ")
    finally:
        client.close()


# --- the per-IP connection cap ----------------------------------------------------

async def _listen_capped(srv: Any, cap: int) -> tuple[Any, GuardedSite]:
    """The server's own site on a second port, capped per IP with loopback
    not exempt (on the real listener loopback is: tests, local proxies)."""
    site = srv.hs.build_site()
    site.max_connections_per_ip = cap
    site.exempt = ()
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return port, site


@pytest_twisted.ensureDeferred
async def test_one_address_over_the_cap_is_closed_and_a_freed_slot_is_reused(
        server: Any) -> None:
    port, site = await _listen_capped(server, 3)
    clients: list[RawClient] = []
    try:
        for _ in range(3):
            c = await connect(port.getHost().port)
            clients.append(c)
            c.transport.write(REQUEST)
            await c.wait_for(b"\r\n\r\n")
            assert c.received.startswith(b"HTTP/1.1 200 ")
        extra = await connect(port.getHost().port)
        clients.append(extra)
        extra.transport.write(REQUEST)
        await extra.wait_closed()
        assert extra.received == b""
        # the three within the cap are still served
        clients[0].received = b""
        clients[0].transport.write(REQUEST)
        await clients[0].wait_for(b"\r\n\r\n")
        assert clients[0].received.startswith(b"HTTP/1.1 200 ")
        # one goes away: its slot is free again
        clients[1].close()
        await clients[1].wait_closed()
        for _ in range(100):
            if site.open_connections("127.0.0.1") == 2:
                break
            await real_pause(0.02)
        again = await connect(port.getHost().port)
        clients.append(again)
        again.transport.write(REQUEST)
        await again.wait_for(b"\r\n\r\n")
        assert again.received.startswith(b"HTTP/1.1 200 ")
        # behind a reverse proxy every client has the proxy's address: no cap
        assert not server.hs.build_site(x_forwarded=True).is_capped("203.0.113.7")
    finally:
        for c in clients:
            c.close()
        await port.stopListening()


def test_loopback_peers_are_not_capped() -> None:
    site = GuardedSite(None, reactor)
    assert site.max_connections_per_ip == MAX_CONNECTIONS_PER_IP
    assert site.is_capped("203.0.113.7")
    assert site.is_capped("2001:db8::1")
    assert not site.is_capped("127.0.0.1")
    assert not site.is_capped("::1")
    assert not site.is_capped("::ffff:127.0.0.1")
    assert not GuardedSite(None, reactor, max_connections_per_ip=0).is_capped("203.0.113.7")
