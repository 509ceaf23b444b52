"""The HTTP client for every outbound server-server request.

One request: check the destination may be contacted at all
(``federation_domain_whitelist``, never ourselves) before any network
traffic; resolve it (``discovery.py``: address, port, Host, certificate
name); connect through ``discovery.Connector`` (every resolved address
checked against ``ip_range_blacklist``/``ip_range_whitelist``, TLS verified
for the name discovery chose); send the body as canonical JSON with one
X-Matrix Authorization header per signing key (``request_auth.py``; the
signed ``uri`` is the path and query exactly as sent); read the answer with
a size limit (50 MiB by default), all within one timeout
(``federation.client_timeout`` or ``timeout_ms``) that covers resolution,
connection and response.

Outcomes: a 2xx JSON object or array is returned; any other status raises
``FederationError`` (the peer answered); anything else (DNS, refused address,
connection, TLS, timeout, too big, not JSON) raises ``RequestFailed``.
Retries and backoff are the caller's business (``sender.py``).

Connections are pooled per destination (``HTTPConnectionPool``, a few per
host) and kept alive between requests; ``close()`` drops them at shutdown.
"""

from __future__ import annotations

import io
import json
import logging
import urllib.parse
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from homeserver.events.canonical import encode_canonical_json
from homeserver.federation.discovery import (
    BodyTooLarge,
    Connector,
    Discovery,
    ResolvedServer,
    read_body,
)
from homeserver.federation.request_auth import authorization_headers

if TYPE_CHECKING:
    from twisted.web.client import URI, Agent, HTTPConnectionPool

    from homeserver.context import ServerContext

logger = logging.getLogger(__name__)

QueryArgs = dict[str, str | list[str]]

DEFAULT_MAX_SIZE = 50 * 1024 * 1024
USER_AGENT = b"homeserver"


class RequestFailed(Exception):
    """The destination could not be reached or gave no usable answer: DNS,
    connection, TLS, timeout, a refused (private) address, a body too large
    or not JSON."""


class FederationError(Exception):
    """The destination answered with an HTTP error status."""

    def __init__(self, code: int, errcode: str | None, body: Any) -> None:
        super().__init__(f"{code} {errcode}")
        self.code = code
        self.errcode = errcode
        self.body = body

    def is_unknown_endpoint(self) -> bool:
        """Whether the destination does not implement the endpoint (so an
        older form of it may work): 404/405 M_UNRECOGNIZED, or a 404/405
        whose body is not a JSON object (older servers), or the 400
        M_UNRECOGNIZED of older Synapses."""
        if self.code in (404, 405):
            return not isinstance(self.body, dict) or self.errcode == "M_UNRECOGNIZED"
        return self.code == 400 and self.errcode == "M_UNRECOGNIZED"


@implementer(IAgentEndpointFactory)
class _FixedEndpoint:
    """The endpoint discovery chose for this request, whatever the URI says."""

    def __init__(self, endpoint: Any) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: URI) -> Any:  # noqa: N802 (Twisted API)
        return self._endpoint


def encode_query(args: QueryArgs | None) -> str:
    """The query string of ``args`` (a list value repeats the key)."""
    if not args:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in args.items():
        if isinstance(value, list):
            pairs.extend((key, v) for v in value)
        else:
            pairs.append((key, value))
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)


class FederationClient:
    def __init__(self, ctx: "ServerContext") -> None:
        self.ctx = ctx
        config = ctx.config
        self.default_timeout_ms: int = config.federation["client_timeout"]
        self.connector = Connector(ctx.reactor, config)
        self.discovery = Discovery(ctx.reactor, ctx.clock, self.connector)
        whitelist = config.federation_domain_whitelist
        self.domain_whitelist: frozenset[str] | None = (
            frozenset(whitelist) if whitelist is not None else None)
        self._pool: HTTPConnectionPool | None = None  # with the first request

    def _connection_pool(self) -> HTTPConnectionPool:
        if self._pool is None:
            # Twisted's HTTP client (and pyOpenSSL) load with the first outbound request
            from twisted.web.client import HTTPConnectionPool

            pool = HTTPConnectionPool(self.ctx.reactor, persistent=True)
            pool.maxPersistentPerHost = 5
            pool.cachedConnectionTimeout = 120
            # a GET on a pooled connection the other server closed as it was
            # sent is sent again once on a new one (Twisted retries only
            # bodiless GET/HEAD/OPTIONS/DELETE/TRACE that got no response: a
            # PUT or POST is never sent twice; the sender retries those)
            pool.retryAutomatically = True
            self._pool = pool
        return self._pool

    async def get_json(self, destination: str, path: str, args: QueryArgs | None = None, *,
                       timeout_ms: int | None = None, sign: bool = True,
                       max_size: int = DEFAULT_MAX_SIZE) -> Any:
        """GET ``path`` (already percent-encoded) on ``destination``; the JSON answer."""
        return await self.request("GET", destination, path, args=args, timeout_ms=timeout_ms,
                                  sign=sign, max_size=max_size)

    async def put_json(self, destination: str, path: str, body: Any, *,
                       args: QueryArgs | None = None, timeout_ms: int | None = None,
                       max_size: int = DEFAULT_MAX_SIZE) -> Any:
        return await self.request("PUT", destination, path, body, args=args,
                                  timeout_ms=timeout_ms, max_size=max_size)

    async def post_json(self, destination: str, path: str, body: Any, *,
                        args: QueryArgs | None = None, timeout_ms: int | None = None,
                        max_size: int = DEFAULT_MAX_SIZE) -> Any:
        return await self.request("POST", destination, path, body, args=args,
                                  timeout_ms=timeout_ms, max_size=max_size)

    def check_destination(self, destination: str) -> None:
        """RequestFailed unless we may send to ``destination`` at all."""
        if destination == self.ctx.hostname:
            raise RequestFailed(f"refusing to send a federation request to ourselves "
                                f"({destination})")
        if self.domain_whitelist is not None and destination not in self.domain_whitelist:
            raise RequestFailed(f"{destination} is not in federation_domain_whitelist")

    async def request(self, method: str, destination: str, path: str, body: Any = None, *,
                      args: QueryArgs | None = None, timeout_ms: int | None = None,
                      sign: bool = True, max_size: int = DEFAULT_MAX_SIZE) -> Any:
        """Send one request (see the module docstring for what it checks and raises)."""
        self.check_destination(destination)
        if not path.startswith("/"):
            raise ValueError(f"path must start with /: {path!r}")
        query = encode_query(args)
        uri = path + ("?" + query if query else "")
        timeout_s = (timeout_ms if timeout_ms is not None else self.default_timeout_ms) / 1000
        d = defer.ensureDeferred(self._send(method, destination, uri, body, sign, max_size))
        d.addTimeout(timeout_s, self.ctx.reactor)
        try:
            return await d
        except (RequestFailed, FederationError):
            raise
        except (defer.CancelledError, TxTimeoutError):
            raise RequestFailed(f"{method} {destination}{path}: no answer within "
                                f"{timeout_s:g}s") from None
        except BodyTooLarge as e:
            raise RequestFailed(f"{method} {destination}{path}: {e}") from None
        except Exception as e:
            raise RequestFailed(f"{method} {destination}{path}: {_describe(e)}") from e

    async def _send(self, method: str, destination: str, uri: str, body: Any, sign: bool,
                    max_size: int) -> Any:
        try:
            target = await self.discovery.resolve(destination)
        except ValueError as e:
            raise RequestFailed(str(e)) from None
        headers = Headers({b"User-Agent": [USER_AGENT],
                           b"Host": [target.host_header.encode("ascii")]})
        data: bytes | None = None
        if body is not None:
            data = encode_canonical_json(body)
            headers.addRawHeader(b"Content-Type", b"application/json")
        if sign:
            for value in authorization_headers(self.ctx.hostname, self.ctx.signing_key, method,
                                               uri, destination, body):
                headers.addRawHeader(b"Authorization", value)
        response = await self._agent_for(target).request(
            method.encode("ascii"),
            b"matrix-federation://" + destination.encode("ascii") + uri.encode("ascii"),
            headers,
            _body_producer(data))
        raw = await read_body(response, max_size)
        if not 200 <= response.code < 300:
            parsed: Any = raw
            errcode = None
            try:
                parsed = json.loads(raw)
                if isinstance(parsed, dict) and isinstance(parsed.get("errcode"), str):
                    errcode = parsed["errcode"]
            except ValueError:
                pass
            logger.info("%s %s%s -> %d %s", method, destination, uri.split("?")[0],
                        response.code, errcode)
            raise FederationError(response.code, errcode, parsed)
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise RequestFailed(f"{method} {destination}{uri.split('?')[0]}: the answer is "
                                "not JSON") from None
        if not isinstance(parsed, (dict, list)):
            raise RequestFailed(f"{method} {destination}{uri.split('?')[0]}: the answer is "
                                "not a JSON object or array")
        return parsed

    def _agent_for(self, target: ResolvedServer) -> Agent:
        # Agents are cheap; the pool (keyed by destination) is what persists.
        from twisted.web.client import Agent

        endpoint = self.connector.endpoint(target.host, target.port, target.tls_name)
        return Agent.usingEndpointFactory(self.ctx.reactor, _FixedEndpoint(endpoint),
                                          pool=self._connection_pool())

    def close(self) -> None:
        """Drop pooled connections (at shutdown)."""
        if self._pool is not None:
            self._pool.closeCachedConnections()
        self.discovery.close()


def _body_producer(data: bytes | None) -> Any:
    from twisted.web.client import FileBodyProducer

    return FileBodyProducer(io.BytesIO(data)) if data is not None else None


def _describe(e: Exception) -> str:
    """A short reason for a failed connection (Twisted wraps them in layers)."""
    from twisted.web._newclient import RequestTransmissionFailed, ResponseFailed
    from twisted.web.client import ResponseNeverReceived
    if isinstance(e, (ResponseNeverReceived, ResponseFailed, RequestTransmissionFailed)):
        reasons = getattr(e, "reasons", None)
        if reasons:
            return "; ".join(_describe_failure(r) for r in reasons)
    return f"{type(e).__name__}: {e}"


def _describe_failure(f: Any) -> str:
    value = getattr(f, "value", f)
    return f"{type(value).__name__}: {value}"
