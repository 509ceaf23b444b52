"""The one guard on requests this server makes to addresses others chose.

Federation (a server name), URL previews (a URL a user posts) and push
gateways (a URL a user's pusher names) all make this server connect where
someone else says, which could be this host's admin ports, the cloud
metadata service (169.254.169.254) or the office network. Every such
connection goes through a ``FilteringReactor``: its name resolver drops each
resolved address that ``IPFilter`` refuses, so a request to a name that
resolves only to blocked addresses fails with a DNS lookup error before any
byte is sent, and a name cannot smuggle a private address past the check.

IP literals take the same path: Twisted's ``HostnameEndpoint`` (which
``Agent`` builds for every http and https URL) hands the host, IP literal or
not, to the reactor's ``nameResolver`` (tests/http/test_outbound.py checks it
for IPv4 and IPv6 literals). Each redirect is a new connection and is checked
again.

Which ranges: federation and push use ``ip_range_blacklist`` minus
``ip_range_whitelist`` (as Synapse does for both); previews their own
``url_preview_ip_range_*`` pair. ``guarded_agent`` builds the Agent.

Certificates: push gateways and previewed pages are checked against the
system's CAs (``https_policy``). Synapse's test-only
``use_insecure_ssl_client_just_for_testing_do_not_use: true`` (off by
default) turns that check off for them, so a test rig's gateway with a
self-signed or private-CA certificate can be reached; the address guard
above still applies. Federation has its own TLS settings
(``federation/tls.py``).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IHostnameResolver,
    IOpenSSLClientConnectionCreator,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from homeserver.config import Config

if TYPE_CHECKING:
    from OpenSSL import SSL
    from twisted.internet import ssl
    from twisted.web.client import Agent, HTTPConnectionPool

logger = logging.getLogger(__name__)


class IPFilter:
    """``ip_range_blacklist`` minus ``ip_range_whitelist``."""

    def __init__(self, blacklist: Iterable[str], whitelist: Iterable[str]) -> None:
        self._block = [ipaddress.ip_network(n, strict=False) for n in blacklist]
        self._allow = [ipaddress.ip_network(n, strict=False) for n in whitelist]

    @classmethod
    def from_config(cls, config: Config) -> "IPFilter":
        return cls(config.ip_range_blacklist or [], config.ip_range_whitelist or [])

    def allowed(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 scope
        except ValueError:
            return False
        if any(addr in net for net in self._allow if net.version == addr.version):
            return True
        if any(addr in net for net in self._block if net.version == addr.version):
            return False
        # an IPv4 address mapped into IPv6 is judged as the IPv4 address too
        mapped = getattr(addr, "ipv4_mapped", None)
        if mapped is not None:
            return self.allowed(str(mapped))
        return True


@implementer(IHostnameResolver)
class _FilteringResolver:
    """The reactor's name resolver, minus the addresses we must not reach."""

    def __init__(self, inner: Any, ip_filter: IPFilter) -> None:
        self._inner = inner
        self._filter = ip_filter

    def resolveHostName(self, receiver: Any, hostName: str,  # noqa: N802,N803
                        portNumber: int = 0, addressTypes: Any = None,  # noqa: N803
                        transportSemantics: str = "TCP") -> Any:  # noqa: N803
        ip_filter = self._filter

        @implementer(IResolutionReceiver)
        class Receiver:
            def resolutionBegan(self, resolution: Any) -> None:  # noqa: N802
                receiver.resolutionBegan(resolution)

            def addressResolved(self, address: Any) -> None:  # noqa: N802
                if isinstance(address, (IPv4Address, IPv6Address)) and \
                        not ip_filter.allowed(address.host):
                    logger.warning("not connecting to %s: %s is in ip_range_blacklist",
                                   hostName, address.host)
                    return
                receiver.addressResolved(address)

            def resolutionComplete(self) -> None:  # noqa: N802
                receiver.resolutionComplete()

        return self._inner.resolveHostName(Receiver(), hostName, portNumber, addressTypes,
                                           transportSemantics)


@implementer(IReactorPluggableNameResolver)
class FilteringReactor:
    """The reactor, with a name resolver that drops blocked addresses; what
    our outbound endpoints connect through."""

    def __init__(self, reactor: Any, ip_filter: IPFilter) -> None:
        self._reactor = reactor
        self._resolver = _FilteringResolver(reactor.nameResolver, ip_filter)

    @property
    def nameResolver(self) -> Any:  # noqa: N802 (Twisted API)
        return self._resolver

    def installNameResolver(self, resolver: Any) -> Any:  # noqa: N802
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedConnection:
    """TLS to ``hostname`` (sent as SNI) without checking its certificate."""

    def __init__(self, options: ssl.CertificateOptions, hostname: str) -> None:
        self._options = options
        self._hostname = hostname

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:  # noqa: N802
        from OpenSSL import SSL

        connection = SSL.Connection(self._options.getContext(), None)
        connection.set_app_data(tls_protocol)
        if not (isIPAddress(self._hostname) or isIPv6Address(self._hostname)):
            connection.set_tlsext_host_name(self._hostname.encode("idna"))
        return connection


@implementer(IPolicyForHTTPS)
class InsecurePolicyForHTTPS:
    """``use_insecure_ssl_client_just_for_testing_do_not_use``: any certificate."""

    def __init__(self) -> None:
        from twisted.internet import ssl

        self._options = ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:  # noqa: N802
        return _UnverifiedConnection(self._options, hostname.decode("ascii", "replace"))


def https_policy(config: Config) -> Any:
    """How pushers, URL previews and identity servers check HTTPS
    certificates: the system's CAs and the URL's host name, unless the
    test-only key turns checking off."""
    if config.use_insecure_ssl_client_just_for_testing_do_not_use:
        logger.warning("use_insecure_ssl_client_just_for_testing_do_not_use is true: "
                       "push gateways, URL previews and identity servers are fetched "
                       "without checking "
                       "TLS certificates")
        return _PolicyOnFirstUse(insecure=True)
    return _PolicyOnFirstUse(insecure=False)


@implementer(IPolicyForHTTPS)
class _PolicyOnFirstUse:
    """Builds the policy with the first HTTPS connection: pyOpenSSL and the
    system's CAs load then, not at start (homeserver/lazy_tls.py)."""

    def __init__(self, *, insecure: bool) -> None:
        self._insecure = insecure
        self._policy: Any = None

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:  # noqa: N802
        if self._policy is None:
            from twisted.web.client import BrowserLikePolicyForHTTPS

            self._policy = (InsecurePolicyForHTTPS() if self._insecure
                            else BrowserLikePolicyForHTTPS())
        return self._policy.creatorForNetloc(hostname, port)


def guarded_agent(reactor: Any, ip_filter: IPFilter, *, connect_timeout_s: float,
                  pool: HTTPConnectionPool | None = None,
                  context_factory: Any = None) -> Agent:
    """An Agent for http(s) URLs that connects only to addresses ``ip_filter``
    allows (names and IP literals alike), giving up on a connection after
    ``connect_timeout_s``. ``context_factory``: Twisted's default (the
    system's CAs, the URL's host name checked) unless given."""
    from twisted.web.client import Agent

    kwargs: dict[str, Any] = {"connectTimeout": connect_timeout_s, "pool": pool}
    if context_factory is not None:
        kwargs["contextFactory"] = context_factory
    return Agent(FilteringReactor(reactor, ip_filter), **kwargs)
