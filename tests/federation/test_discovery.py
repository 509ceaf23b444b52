"""Resolving server names (server-server-api.md "Resolving server names").

Real parts on loopback: a DNS server (twisted.names) that serves the SRV
records a test sets, and an HTTPS server (certificate from the test CA) that
serves ``/.well-known/matrix/server`` for ``localhost``. Time is a Clock, so
caching is checked without waiting.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from OpenSSL import crypto
from twisted.internet import defer, ssl, task
from twisted.internet import reactor as _reactor
from twisted.names import client as dns_client
from twisted.names import dns, server
from twisted.names.common import ResolverBase
from twisted.names.error import DomainError
from twisted.web.resource import Resource
from twisted.web.server import Site

from homeserver.config import build_config
from homeserver.federation.discovery import Connector, Discovery, ResolvedServer
from tests.federation.ca import TestCA

reactor: Any = _reactor


def _srv_record(priority: int, weight: int, port: int, target: str, ttl: int) -> Any:
    return dns.Record_SRV(priority, weight, port, target, ttl=ttl)


class _Records(ResolverBase):
    """The authority of the test DNS server: SRV records set by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.srv: dict[str, list[tuple[int, int, int, str, int]]] = {}
        self.queries: list[str] = []

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any = None) -> Any:  # noqa: A002
        text = name.decode().lower()
        self.queries.append(text)
        records = self.srv.get(text)
        if type != dns.SRV or not records:
            return defer.fail(DomainError(text))
        answers = [dns.RRHeader(name, dns.SRV, dns.IN, ttl,
                                _srv_record(prio, weight, port, target, ttl), auth=True)
                   for prio, weight, port, target, ttl in records]
        return defer.succeed((answers, [], []))


class _WellKnown(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.code = 404
        self.body: bytes = b"{}"
        self.headers: dict[str, str] = {}
        self.hits = 0
        self.redirect_to: str | None = None

    def set(self, body: Any, code: int = 200, **headers: str) -> None:
        self.code = code
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = {k.replace("_", "-"): v for k, v in headers.items()}

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        if request.path == b"/.well-known/matrix/server" and self.redirect_to:
            request.setResponseCode(302)
            request.setHeader(b"location", self.redirect_to.encode())
            return b""
        self.hits += 1
        request.setResponseCode(self.code)
        for k, v in self.headers.items():
            request.setHeader(k.encode(), v.encode())
        return self.body


class World:
    """A DNS server, a well-known server for ``localhost`` and a Discovery using them."""

    def __init__(self, ca: TestCA, tmp_dir: str, **config: Any) -> None:
        self.records = _Records()
        factory = server.DNSServerFactory(authorities=[self.records])
        self.dns_port = reactor.listenUDP(
            0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        self.well_known = _WellKnown()
        cert, key = ca.issue("wellknown")
        with open(cert, "rb") as f:
            x509 = crypto.load_certificate(crypto.FILETYPE_PEM, f.read())
        with open(key, "rb") as f:
            pkey = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
        self.https_port = reactor.listenSSL(
            0, Site(self.well_known), ssl.CertificateOptions(privateKey=pkey, certificate=x509),
            interface="127.0.0.1")
        data = {"server_name": "me.test",
                "database": {"name": "sqlite3", "args": {"database": ":memory:"}},
                "federation_custom_ca_list": [ca.ca_cert_path],
                "ip_range_whitelist": ["127.0.0.0/8", "::1/128"]}
        data.update(config)
        self.clock = task.Clock()
        resolver = dns_client.Resolver(
            servers=[("127.0.0.1", self.dns_port.getHost().port)], reactor=reactor)
        connector = Connector(reactor, build_config(data, tmp_dir))
        self.discovery = Discovery(reactor, self.clock, connector, dns_resolver=resolver,
                                   well_known_port=self.https_port.getHost().port)

    def srv(self, name: str, *records: tuple[int, int, int, str, int]) -> None:
        self.records.srv[name] = list(records)

    async def resolve(self, name: str) -> ResolvedServer:
        return await self.discovery.resolve(name)

    async def stop(self) -> None:
        self.discovery.close()
        await self.dns_port.stopListening()
        await self.https_port.stopListening()


@pytest_twisted.async_yield_fixture
async def world(test_ca: TestCA, tmp_path: Any) -> Any:
    w = World(test_ca, str(tmp_path))
    yield w
    await w.stop()


@pytest_twisted.ensureDeferred
async def test_ip_literals_connect_directly(world: World) -> None:
    assert await world.resolve("1.2.3.4") == ("1.2.3.4", 8448, "1.2.3.4")
    assert await world.resolve("1.2.3.4:99") == ("1.2.3.4", 99, "1.2.3.4:99")
    resolved = await world.resolve("[::1]:8000")
    assert resolved == ("::1", 8000, "[::1]:8000")
    assert resolved.tls_name == "::1"
    assert await world.resolve("[2001:db8::1]") == ("2001:db8::1", 8448, "[2001:db8::1]")
    assert world.records.queries == [] and world.well_known.hits == 0


@pytest_twisted.ensureDeferred
async def test_hostname_with_port_connects_directly(world: World) -> None:
    resolved = await world.resolve("example.test:1234")

    assert resolved == ("example.test", 1234, "example.test:1234")
    assert resolved.tls_name == "example.test"
    assert world.records.queries == [] and world.well_known.hits == 0


@pytest_twisted.ensureDeferred
async def test_invalid_server_name_is_refused(world: World) -> None:
    with pytest.raises(ValueError):
        await world.resolve("bad name")
    with pytest.raises(ValueError):
        await world.resolve("[not-ipv6]:80")


@pytest_twisted.ensureDeferred
async def test_well_known_delegation_with_port(world: World) -> None:
    world.well_known.set({"m.server": "delegated.test:4443"})

    resolved = await world.resolve("localhost")

    assert resolved == ("delegated.test", 4443, "delegated.test:4443")
    assert resolved.tls_name == "delegated.test"


@pytest_twisted.ensureDeferred
async def test_well_known_delegation_to_ip_literal(world: World) -> None:
    world.well_known.set({"m.server": "[::1]"})

    assert await world.resolve("localhost") == ("::1", 8448, "[::1]")


@pytest_twisted.ensureDeferred
async def test_delegated_name_uses_srv_then_deprecated_srv_then_8448(world: World) -> None:
    world.well_known.set({"m.server": "delegated.test"})
    world.srv("_matrix-fed._tcp.delegated.test", (10, 0, 7000, "target.test", 300))
    world.srv("_matrix._tcp.delegated.test", (10, 0, 7001, "old.test", 300))
    world.srv("_matrix-fed._tcp.other.test", (10, 0, 7002, "other-target.test", 300))

    resolved = await world.resolve("localhost")
    # SRV decides where to connect; Host and the certificate stay the delegated name
    assert resolved == ("target.test", 7000, "delegated.test")
    assert resolved.tls_name == "delegated.test"

    world.well_known.set({"m.server": "legacy.test"})
    world.srv("_matrix._tcp.legacy.test", (10, 0, 7003, "old.test", 300))
    world.clock.advance(48 * 3600)
    assert await world.resolve("localhost") == ("old.test", 7003, "legacy.test")

    world.well_known.set({"m.server": "plain.test"})
    world.clock.advance(48 * 3600)
    assert await world.resolve("localhost") == ("plain.test", 8448, "plain.test")


@pytest_twisted.ensureDeferred
async def test_without_well_known_srv_on_the_server_name(world: World) -> None:
    world.srv("_matrix-fed._tcp.localhost", (5, 0, 9000, "target.test", 300),
              (20, 0, 9001, "backup.test", 300))

    assert await world.resolve("localhost") == ("target.test", 9000, "localhost")
    assert world.well_known.hits == 1


@pytest_twisted.ensureDeferred
async def test_without_well_known_or_srv_port_8448(world: World) -> None:
    assert await world.resolve("localhost") == ("localhost", 8448, "localhost")
    assert "_matrix-fed._tcp.localhost" in world.records.queries
    assert "_matrix._tcp.localhost" in world.records.queries


@pytest_twisted.ensureDeferred
async def test_invalid_well_known_is_ignored(world: World) -> None:
    for body in (b"not json", {"m.server": 5}, {"m.server": "bad name"}, ["x"]):
        world.well_known.set(body)
        world.clock.advance(48 * 3600)
        assert await world.resolve("localhost") == ("localhost", 8448, "localhost")


@pytest_twisted.ensureDeferred
async def test_oversized_well_known_is_ignored(world: World) -> None:
    world.well_known.set({"m.server": "delegated.test:1", "pad": "x" * 60_000})

    assert await world.resolve("localhost") == ("localhost", 8448, "localhost")


@pytest_twisted.ensureDeferred
async def test_well_known_redirect_is_followed(world: World) -> None:
    port = world.https_port.getHost().port
    world.well_known.set({"m.server": "delegated.test:1"})
    world.well_known.redirect_to = f"https://localhost:{port}/elsewhere"

    assert await world.resolve("localhost") == ("delegated.test", 1, "delegated.test:1")
    assert world.well_known.hits == 1


@pytest_twisted.ensureDeferred
async def test_well_known_cached_for_max_age(world: World) -> None:
    world.well_known.set({"m.server": "first.test:1"}, Cache_Control="max-age=600")
    assert await world.resolve("localhost") == ("first.test", 1, "first.test:1")

    world.well_known.set({"m.server": "second.test:1"})
    world.clock.advance(599)
    assert await world.resolve("localhost") == ("first.test", 1, "first.test:1")
    world.clock.advance(2)
    assert await world.resolve("localhost") == ("second.test", 1, "second.test:1")
    assert world.well_known.hits == 2


@pytest_twisted.ensureDeferred
async def test_well_known_cache_defaults_to_a_day_and_is_capped(world: World) -> None:
    world.well_known.set({"m.server": "first.test:1"})
    await world.resolve("localhost")
    world.well_known.set({"m.server": "second.test:1"}, Cache_Control="max-age=9999999")
    world.clock.advance(24 * 3600 - 10)
    assert (await world.resolve("localhost")).host == "first.test"
    world.clock.advance(20)
    assert (await world.resolve("localhost")).host == "second.test"
    world.well_known.set({"m.server": "third.test:1"})
    world.clock.advance(48 * 3600 + 1)
    assert (await world.resolve("localhost")).host == "third.test"


@pytest_twisted.ensureDeferred
async def test_missing_well_known_is_remembered_for_an_hour(world: World) -> None:
    assert (await world.resolve("localhost")).host == "localhost"

    world.well_known.set({"m.server": "late.test:1"})
    world.clock.advance(3500)
    assert (await world.resolve("localhost")).host == "localhost"
    world.clock.advance(200)
    assert (await world.resolve("localhost")).host == "late.test"


@pytest_twisted.ensureDeferred
async def test_srv_cached_for_its_ttl(world: World) -> None:
    world.srv("_matrix-fed._tcp.localhost", (10, 0, 9000, "first.test", 60))
    assert (await world.resolve("localhost")).host == "first.test"

    world.srv("_matrix-fed._tcp.localhost", (10, 0, 9000, "second.test", 60))
    world.clock.advance(59)
    assert (await world.resolve("localhost")).host == "first.test"
    world.clock.advance(2)
    assert (await world.resolve("localhost")).host == "second.test"


@pytest_twisted.ensureDeferred
async def test_well_known_on_a_blocked_address_is_not_fetched(
        test_ca: TestCA, tmp_path: Any) -> None:
    w = World(test_ca, str(tmp_path), ip_range_whitelist=[])
    try:
        w.well_known.set({"m.server": "delegated.test:1"})
        assert await w.resolve("localhost") == ("localhost", 8448, "localhost")
        assert w.well_known.hits == 0
    finally:
        await w.stop()
