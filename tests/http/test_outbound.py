"""The outbound guard: no request reaches a blocked address, whether the URL
names it by IP literal (v4 or v6) or by a host name resolving to it."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.error import DNSLookupError
from twisted.web.resource import Resource
from twisted.web.server import Site

from homeserver.config import build_config
from homeserver.http.outbound import IPFilter, guarded_agent


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        return b"hello"


class CountingServer:
    """A real HTTP server on a loopback address that counts connections."""

    def __init__(self, interface: str) -> None:
        self.connections = 0
        site = Site(Hello())
        build = site.buildProtocol

        def counted(addr: Any) -> Any:
            self.connections += 1
            return build(addr)
        site.buildProtocol = counted  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, site, interface=interface)  # type: ignore[attr-defined]

    def url(self, host: str) -> bytes:
        return f"http://{host}:{self.port.getHost().port}/".encode()


@pytest.fixture
def default_filter(tmp_path: Any) -> IPFilter:
    config = build_config({"server_name": "test.local",
                           "database": {"name": "sqlite3",
                                        "args": {"database": str(tmp_path / "x.db")}}},
                          str(tmp_path))
    return IPFilter.from_config(config)


@pytest.mark.parametrize("interface,host", [("127.0.0.1", "127.0.0.1"),
                                            ("::1", "[::1]"),
                                            ("127.0.0.1", "localhost")])
@pytest_twisted.ensureDeferred
async def test_blocked_address_is_never_connected_to(default_filter: IPFilter,
                                                      interface: str, host: str) -> None:
    server = CountingServer(interface)
    try:
        agent = guarded_agent(reactor, default_filter, connect_timeout_s=5)
        with pytest.raises(DNSLookupError):
            await agent.request(b"GET", server.url(host))
        assert server.connections == 0
    finally:
        await server.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_whitelisted_loopback_is_reached() -> None:
    server = CountingServer("127.0.0.1")
    try:
        ip_filter = IPFilter(["127.0.0.0/8"], ["127.0.0.0/8"])
        agent = guarded_agent(reactor, ip_filter, connect_timeout_s=5)
        resp = await agent.request(b"GET", server.url("127.0.0.1"))
        assert resp.code == 200
        assert server.connections == 1
    finally:
        await server.port.stopListening()


def test_default_blacklist_covers_metadata_private_and_mapped_addresses(
        default_filter: IPFilter) -> None:
    for ip in ("169.254.169.254", "127.0.0.1", "10.1.2.3", "192.168.1.1", "::1",
               "::ffff:127.0.0.1", "fd00::1"):
        assert not default_filter.allowed(ip), ip
    assert default_filter.allowed("8.8.8.8")
    assert default_filter.allowed("2a00:1450::1")
