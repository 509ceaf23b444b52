"""HTTP connections as our listeners accept them: limits Twisted does not set.

Twisted's idle timeout (60 s) restarts on every byte, so a client that
trickles a request's headers one byte at a time holds its connection, and a
few thousand such clients hold every file descriptor we have (slowloris).
Two limits close that:

- **Header deadline.** From the first byte of a request until the blank
  line that ends its headers, a client has ``HEADER_DEADLINE_S`` (20 s) in
  all, however it spaces its bytes; then it gets a 408 and the connection is
  closed. Waiting between requests on a kept-alive connection is not counted
  (the idle timeout governs that), nor is the body (its size is capped
  elsewhere, and an upload over a slow link may take long).
- **Connections per IP.** At most ``MAX_CONNECTIONS_PER_IP`` (200) open
  connections from one address per listener; the next is closed at once.
  The cap is generous because one address is often many people (a NAT, a
  university); loopback is exempt (a reverse proxy on the same host, the
  tests, the bench), and so is every peer of a listener with ``x_forwarded``
  set, whose peer is by definition a reverse proxy carrying everyone. Synapse
  has neither limit as a setting (it leaves them to the reverse proxy), so
  neither is a config key.

The classes here are ours alone; other guards on the same channel (request
line and header sizes) belong in classes of their own.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import _GenericHTTPChannelProtocol
from twisted.web.server import Site

from homeserver.http.head_limits import HeadLimitsChannel

logger = logging.getLogger(__name__)

HEADER_DEADLINE_S = 20.0
MAX_CONNECTIONS_PER_IP = 200
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

_TIMEOUT_BODY = b'{"errcode":"M_UNKNOWN","error":"Request headers took too long to send"}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class HeaderDeadlineChannel(HeadLimitsChannel):
    """An HTTP/1.1 channel that gives each request's head a total deadline
    and counts itself against its site's per-IP cap."""

    _deadline_call: Any = None
    # between the end of a request's headers and the end of its body
    _in_body = False
    # the address this connection is counted under (None: not counted)
    _counted_ip: str | None = None
    # set by Site.buildProtocol (through Twisted's protocol wrapper)
    site: Any = None

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        site = self.site
        if isinstance(site, GuardedSite):
            ip = _peer_ip(self.transport)
            if ip is not None and site.is_capped(ip):
                if not site.admit(ip):
                    logger.warning("closing a connection from %s: over %d open from one "
                                   "address", ip, site.max_connections_per_ip)
                    self._transport().abortConnection()
                    return
                self._counted_ip = ip
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._deadline_call is None and not self._handlingRequest and not self._in_body:
            # the first byte of a request's head: its clock starts now
            self._deadline_call = self._clock().callLater(self._deadline_s(),
                                                          self._deadline_passed)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:  # noqa: N802
        self._cancel_deadline()
        self._in_body = True
        super().allHeadersReceived()

    def allContentReceived(self) -> None:  # noqa: N802
        self._in_body = False
        super().allContentReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._cancel_deadline()
        if self._counted_ip is not None:
            site = self.site
            if isinstance(site, GuardedSite):
                site.release(self._counted_ip)
            self._counted_ip = None
        super().connectionLost(reason)

    def _cancel_deadline(self) -> None:
        call, self._deadline_call = self._deadline_call, None
        if call is not None and call.active():
            call.cancel()

    def _deadline_passed(self) -> None:
        self._deadline_call = None
        logger.info("closing a connection from %s: request headers took over %.0f s",
                    _peer_ip(self.transport), self._deadline_s())
        self._transport().write(_TIMEOUT_RESPONSE)
        # as on an idle timeout: close, and abort if the client will not let go
        self.timeoutConnection()

    def _transport(self) -> Any:
        return self.transport

    def _deadline_s(self) -> float:
        site = self.site
        return site.header_deadline_s if isinstance(site, GuardedSite) else HEADER_DEADLINE_S

    def _clock(self) -> Any:
        site = self.site
        if isinstance(site, GuardedSite):
            return site.clock
        from twisted.internet import reactor
        return reactor


class GuardedSite(Site):
    """A Site whose connections are ``HeaderDeadlineChannel``s, capped per IP.

    ``clock`` times the header deadline (a test's ``task.Clock`` moves it);
    ``max_connections_per_ip`` of 0 turns the cap off; addresses in
    ``exempt`` are never capped.
    """

    def __init__(self, resource: Any, clock: Any, *,
                 header_deadline_s: float = HEADER_DEADLINE_S,
                 max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP,
                 exempt: tuple[Any, ...] = LOOPBACK, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.clock = clock
        self.header_deadline_s = header_deadline_s
        self.max_connections_per_ip = max_connections_per_ip
        self.exempt = exempt
        self._open: dict[str, int] = {}

    def protocol(self) -> Any:  # type: ignore[override]  # Twisted calls self.protocol()
        # what HTTPFactory's default builds, with our channel inside
        return _GenericHTTPChannelProtocol(HeaderDeadlineChannel())

    def is_capped(self, ip: str) -> bool:
        """Whether connections from ``ip`` count against the cap."""
        return self.max_connections_per_ip > 0 and not self._exempt(ip)

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False (not counted) if over the cap."""
        n = self._open.get(ip, 0)
        if n >= self.max_connections_per_ip:
            return False
        self._open[ip] = n + 1
        return True

    def release(self, ip: str) -> None:
        n = self._open.get(ip, 0) - 1
        if n > 0:
            self._open[ip] = n
        else:
            self._open.pop(ip, None)

    def open_connections(self, ip: str) -> int:
        return self._open.get(ip, 0)

    def _exempt(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(addr, "ipv4_mapped", None)  # a dual-stack listener's IPv4 peer
        if mapped is not None:
            addr = mapped
        return any(addr in net for net in self.exempt if net.version == addr.version)


def _peer_ip(transport: Any) -> str | None:
    peer = transport.getPeer() if transport is not None else None
    host = getattr(peer, "host", None)
    return host if isinstance(host, str) else None
