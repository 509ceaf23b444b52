"""Finding a server: which address, port, certificate name and Host header.

server-server-api.md "Resolving server names", in order:

1. An IP literal (``1.2.3.4``, ``[::1]``, with or without a port): connect
   there (port 8448 by default); Host is the server name, the certificate
   must be valid for the IP.
2. A hostname with an explicit port: connect to it; Host is ``hostname:port``,
   the certificate is for ``hostname``.
3. Otherwise GET ``https://<hostname>/.well-known/matrix/server``; a valid
   ``{"m.server": "<delegated>[:<port>]"}`` delegates to that name, which
   is resolved by: IP literal, explicit port, SRV ``_matrix-fed._tcp``, the
   deprecated SRV ``_matrix._tcp``, then port 8448; Host and the certificate
   are the delegated name (with its port, if it had one, for Host).
4. Without a (valid) well-known: SRV ``_matrix-fed._tcp.<hostname>``, then
   ``_matrix._tcp.<hostname>``, then ``<hostname>:8448``; Host and the
   certificate are the server name.

Well-known answers are cached for their Cache-Control max-age (or Expires),
24 hours by default, at most 48 hours; failures for an hour. SRV answers are
cached for their TTL. Time is the server's clock (``ServerContext.clock``), so tests move it.

This module also holds the connection layer that the federation client
shares with the well-known fetch: every address a name resolves to is checked
against ``ip_range_blacklist``/``ip_range_whitelist`` when we connect, by the
outbound guard in ``http/outbound.py`` (a name that resolves to a private
address cannot smuggle a request past the check), TLS via
``tls.ClientTLSPolicy``, and bodies read with a size limit.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from twisted.internet import defer, protocol
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from homeserver.config import Config
from homeserver.http.outbound import FilteringReactor, IPFilter

if TYPE_CHECKING:
    from twisted.web.client import URI

    from homeserver.federation.tls import ClientTLSPolicy

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8448
WELL_KNOWN_MAX_SIZE = 50 * 1024
WELL_KNOWN_DEFAULT_CACHE_S = 24 * 3600
WELL_KNOWN_ERROR_CACHE_S = 3600
WELL_KNOWN_MAX_CACHE_S = 48 * 3600
WELL_KNOWN_TIMEOUT_S = 30.0
WELL_KNOWN_MAX_REDIRECTS = 5

_HOSTNAME = re.compile(r"[A-Za-z0-9.\-]+")
_SERVER_NAME = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::(\d{1,5}))?")


class ResolvedServer(NamedTuple):
    """Where to reach a server: connect to ``host``:``port``; send
    ``host_header`` as Host; the certificate must be valid for ``tls_name``."""

    host: str
    port: int
    host_header: str

    @property
    def tls_name(self) -> str:
        return split_server_name(self.host_header)[0]


def split_server_name(name: str) -> tuple[str, int | None]:
    """(host, port or None) of a server name; IPv6 literals lose their brackets.
    ValueError if it is not a valid server name."""
    m = _SERVER_NAME.fullmatch(name)
    if m is None:
        raise ValueError(f"not a valid server name: {name!r}")
    host, port_text = m.group(1), m.group(2)
    if host.startswith("["):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError if not an IPv6 address
    port = int(port_text) if port_text is not None else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"not a valid port in server name: {name!r}")
    return host, port


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Connector:
    """Outbound TLS connections: filtered addresses, verified certificates."""

    def __init__(self, reactor: Any, config: Config, connect_timeout_s: float = 30.0) -> None:
        self.reactor = reactor
        self.ip_filter = IPFilter.from_config(config)
        self.filtering_reactor = FilteringReactor(reactor, self.ip_filter)
        self.config = config
        self._tls: ClientTLSPolicy | None = None
        if config.federation_custom_ca_list:
            self._tls = self.tls  # a wrong CA file fails the start, not the first request
        self.connect_timeout_s = connect_timeout_s

    @property
    def tls(self) -> ClientTLSPolicy:
        # pyOpenSSL loads with the first outbound federation request (homeserver/lazy_tls.py)
        if self._tls is None:
            from homeserver.federation.tls import ClientTLSPolicy

            self._tls = ClientTLSPolicy(self.config)
        return self._tls

    def endpoint(self, host: str, port: int, tls_name: str) -> Any:
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        tcp: Any = HostnameEndpoint(self.filtering_reactor, host, port,
                               timeout=self.connect_timeout_s)
        return wrapClientTLS(self.tls.creator_for(tls_name), tcp)


@implementer(IAgentEndpointFactory)
class _HttpsEndpointFactory:
    """Endpoints for plain https:// URIs (the well-known fetch and its redirects)."""

    def __init__(self, connector: Connector, port_for_443: int) -> None:
        self._connector = connector
        self._port_for_443 = port_for_443

    def endpointForURI(self, uri: URI) -> Any:  # noqa: N802
        if uri.scheme != b"https":
            raise ValueError("well-known lookups only follow https:// URLs")
        host = uri.host.decode("ascii")
        if host.startswith("["):
            host = host[1:-1]
        port = uri.port
        if port == 443:
            port = self._port_for_443
        return self._connector.endpoint(host, port, host)


# --- reading a body with a limit ---------------------------------------------------

class BodyTooLarge(Exception):
    pass


class _LimitedBody(protocol.Protocol):
    def __init__(self, finished: "defer.Deferred[bytes]", max_size: int) -> None:
        self._finished = finished
        self._max = max_size
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._finished.called:
            return
        self._size += len(data)
        if self._size > self._max:
            self._finished.errback(BodyTooLarge(f"response body over {self._max} bytes"))
            transport: Any = self.transport
            transport.loseConnection()
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        if self._finished.called:
            return
        from twisted.web.client import ResponseDone
        from twisted.web.http import PotentialDataLoss
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._chunks))
        else:
            self._finished.errback(reason)


async def read_body(response: Any, max_size: int) -> bytes:
    """The response body; BodyTooLarge past ``max_size`` bytes (the
    connection is then dropped, not read to the end)."""
    length = response.length
    if isinstance(length, int) and length > max_size:
        response.deliverBody(_Discard())
        raise BodyTooLarge(f"response body of {length} bytes is over {max_size}")
    finished: defer.Deferred[bytes] = defer.Deferred()
    response.deliverBody(_LimitedBody(finished, max_size))
    return await finished


class _Discard(protocol.Protocol):
    def connectionMade(self) -> None:  # noqa: N802
        transport: Any = self.transport
        transport.loseConnection()


# --- the resolver ----------------------------------------------------------------

@dataclass
class _Cached:
    value: Any
    expires_s: float


class Discovery:
    """Resolves server names (see the module docstring), with caches.

    ``dns_resolver`` answers the SRV lookups (a ``twisted.names`` resolver;
    tests point one at a DNS server on loopback); ``well_known_port`` is the
    port of ``https://<hostname>/`` (443; tests serve it elsewhere).
    """

    def __init__(self, reactor: Any, clock: Any, connector: Connector,
                 dns_resolver: Any = None, well_known_port: int = 443) -> None:
        self.reactor = reactor
        self.clock = clock
        self.connector = connector
        # created on first use: the system resolver reads resolv.conf
        self._dns = dns_resolver
        self.well_known_port = well_known_port
        self._well_known: dict[str, _Cached] = {}
        self._srv: dict[str, _Cached] = {}
        self._pool: Any = None  # built with the first well-known fetch
        self._agent: Any = None

    def _well_known_agent(self) -> Any:
        if self._agent is None:
            from twisted.web.client import Agent, HTTPConnectionPool, RedirectAgent

            self._pool = HTTPConnectionPool(self.reactor, persistent=False)
            endpoints = _HttpsEndpointFactory(self.connector, self.well_known_port)
            self._agent = RedirectAgent(
                Agent.usingEndpointFactory(self.reactor, endpoints, pool=self._pool),
                redirectLimit=WELL_KNOWN_MAX_REDIRECTS)
        return self._agent

    def dns_resolver(self) -> Any:
        if self._dns is None:
            from twisted.names import client as dns_client  # with the first SRV lookup

            self._dns = dns_client.createResolver()
        return self._dns

    def set_dns_resolver(self, resolver: Any) -> None:
        """Use ``resolver`` for SRV lookups (tests: a DNS server on loopback)."""
        self._dns = resolver
        self._srv.clear()

    async def resolve(self, server_name: str) -> ResolvedServer:
        """Where to reach ``server_name``. ValueError if it is not a valid server name."""
        host, port = split_server_name(server_name)
        if is_ip_literal(host):
            return ResolvedServer(host, port or DEFAULT_PORT, server_name)
        if port is not None:
            return ResolvedServer(host, port, server_name)
        delegated = await self.well_known(host)
        if delegated is not None:
            d_host, d_port = split_server_name(delegated)
            if is_ip_literal(d_host):
                return ResolvedServer(d_host, d_port or DEFAULT_PORT, delegated)
            if d_port is not None:
                return ResolvedServer(d_host, d_port, delegated)
            target = await self._srv_target(d_host)
            if target is not None:
                return ResolvedServer(target[0], target[1], delegated)
            return ResolvedServer(d_host, DEFAULT_PORT, delegated)
        target = await self._srv_target(host)
        if target is not None:
            return ResolvedServer(target[0], target[1], server_name)
        return ResolvedServer(host, DEFAULT_PORT, server_name)

    # -- well-known --

    async def well_known(self, hostname: str) -> str | None:
        """The delegated server name from ``https://hostname/.well-known/matrix/server``
        (cached), or None."""
        now = self.clock.seconds()
        cached = self._well_known.get(hostname)
        if cached is not None and cached.expires_s > now:
            return cached.value  # type: ignore[no-any-return]
        try:
            value, ttl = await self._fetch_well_known(hostname)
        except Exception as e:  # any failure means "no delegation", per the spec
            logger.info("no .well-known/matrix/server for %s: %s", hostname, e)
            value, ttl = None, WELL_KNOWN_ERROR_CACHE_S
        if ttl > 0:
            self._well_known[hostname] = _Cached(value, self.clock.seconds() + ttl)
        else:
            self._well_known.pop(hostname, None)
        return value

    async def _fetch_well_known(self, hostname: str) -> tuple[str | None, float]:
        port = "" if self.well_known_port == 443 else f":{self.well_known_port}"
        url = f"https://{hostname}{port}/.well-known/matrix/server".encode("ascii")
        agent = self._well_known_agent()
        d = agent.request(b"GET", url, Headers({b"User-Agent": [b"homeserver"]}))
        d.addTimeout(WELL_KNOWN_TIMEOUT_S, self.reactor)
        response = await d
        body_d = defer.ensureDeferred(read_body(response, WELL_KNOWN_MAX_SIZE))
        body_d.addTimeout(WELL_KNOWN_TIMEOUT_S, self.reactor)
        body = await body_d
        if response.code != 200:
            raise ValueError(f"HTTP {response.code}")
        ttl = _cache_period(response.headers, self.clock.seconds())
        parsed = json.loads(body)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("m.server"), str):
            raise ValueError("no m.server string in the response")
        delegated: str = parsed["m.server"]
        split_server_name(delegated)  # ValueError if invalid
        return delegated, ttl

    # -- SRV --

    async def _srv_target(self, hostname: str) -> tuple[str, int] | None:
        for service in ("_matrix-fed._tcp.", "_matrix._tcp."):
            records = await self._srv_records(service + hostname)
            if records:
                return _pick_srv(records)
        return None

    async def _srv_records(self, name: str) -> list[tuple[int, int, int, str]]:
        """(priority, weight, port, target) of the SRV records for ``name`` (cached per TTL)."""
        now = self.clock.seconds()
        cached = self._srv.get(name)
        if cached is not None and cached.expires_s > now:
            return cached.value  # type: ignore[no-any-return]
        from twisted.names import dns
        from twisted.names.error import DNSNameError, DomainError

        try:
            answers, _, _ = await self.dns_resolver().lookupService(name)
        except (DNSNameError, DomainError):  # no such name: cached like an empty answer
            answers = []
        except Exception as e:
            # a DNS failure is not an answer: do not cache it, try again next time
            logger.info("SRV lookup of %s failed: %s", name, e)
            return []
        records = []
        ttls = []
        ttl = 300.0
        for rr in answers:
            if rr.type != dns.SRV:
                continue
            payload = rr.payload
            target = str(payload.target).rstrip(".")
            ttls.append(rr.ttl)
            if not target:  # "." means "no such service here"
                continue
            records.append((payload.priority, payload.weight, payload.port, target))
        if ttls:
            ttl = float(min(ttls))
        if ttl > 0:
            self._srv[name] = _Cached(records, self.clock.seconds() + ttl)
        return records

    def close(self) -> None:
        if self._pool is not None:
            self._pool.closeCachedConnections()


def _pick_srv(records: list[tuple[int, int, int, str]]) -> tuple[str, int]:
    """RFC 2782: the lowest priority, then a weighted random choice."""
    best = min(r[0] for r in records)
    candidates = [r for r in records if r[0] == best]
    total = sum(r[1] for r in candidates)
    if total == 0:
        chosen = random.choice(candidates)
    else:
        point = random.uniform(0, total)
        chosen = candidates[-1]
        for r in candidates:
            point -= r[1]
            if point <= 0:
                chosen = r
                break
    return chosen[3], chosen[2]


def _cache_period(headers: Headers, now_s: float) -> float:
    """How long to keep a well-known answer: Cache-Control max-age, else
    Expires, else 24 h; capped at 48 h; 0 for no-store/no-cache."""
    period: float | None = None
    for value in headers.getRawHeaders(b"cache-control", []):
        for directive in value.decode("latin-1").split(","):
            name, _, arg = directive.strip().partition("=")
            name = name.lower()
            if name in ("no-store", "no-cache"):
                return 0
            if name == "max-age":
                try:
                    period = max(0, int(arg.strip().strip('"')))
                except ValueError:
                    pass
    if period is None:
        expires = headers.getRawHeaders(b"expires", [])
        if expires:
            try:
                period = max(0.0, parsedate_to_datetime(expires[0].decode("latin-1"))
                             .timestamp() - now_s)
            except (TypeError, ValueError):
                period = 0
    if period is None:
        period = WELL_KNOWN_DEFAULT_CACHE_S
    return min(period, WELL_KNOWN_MAX_CACHE_S)
