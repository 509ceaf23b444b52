"""The Twisted resource that serves every route: dispatch, errors, CORS, access log.

Each request is matched against the router, authenticated when the route
asks for it, handed to the async handler, and its ``(status, body)`` written
as JSON (or as raw bytes when the body is a ``RawResponse``: media).
Whatever goes wrong reaches the client as a Matrix error: a
``MatrixError`` as itself; the database out of reach (a PostgreSQL that is
down or restarting, an SQLite file locked or failing I/O) as 503 M_UNKNOWN
with ``Retry-After``, as Synapse answers when a service is unavailable: the
request was fine and will work again once the database is back, which the
connection pool finds by itself; anything else as 500 M_UNKNOWN with the
traceback kept in the server log only.
"""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from homeserver.errors import Codes, InteractiveAuthIncomplete, MatrixError
from homeserver.http.monitoring import HEALTH_PATH, METRICS_PATH, write_health, write_metrics
from homeserver.http.parse import check_query_args
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, AUTH_FEDERATION, AUTH_NONE, AUTH_REQUIRED, Router
from homeserver.http.webclient import is_web_client_path
from homeserver.logcompat import NO_REQUEST, current_request

if TYPE_CHECKING:
    from homeserver.federation.request_auth import FederationAuth
    from homeserver.http.auth import Auth
    from homeserver.http.webclient import WebClient
    from homeserver.metrics import Metrics

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("homeserver.access")
_REQUEST_IDS = itertools.count(1)

CORS_HEADERS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"GET, HEAD, POST, PUT, DELETE, OPTIONS",
    b"Access-Control-Allow-Headers": b"X-Requested-With, Content-Type, Authorization",
}

# A handler that took its connection over (the WebSocket upgrade) returns this
# status: the connection speaks another protocol now, nothing is written.
SWITCHING_PROTOCOLS = 101

_FEDERATION_PREFIXES = (b"/_matrix/federation/", b"/_matrix/key/")

# Query parameters whose values are secrets, never to be logged.
_SECRET_PARAMS = frozenset({b"access_token"})

# Seconds a client is asked to wait while the database is out of reach: the
# pool reconnects on the next request after it is back.
DATABASE_RETRY_AFTER_S = 5

# SQLite errors that say the file cannot be used now, not that a statement is
# wrong (those share sqlite3.OperationalError and stay 500s).
_SQLITE_OUTAGE_MESSAGES = ("database is locked", "disk i/o error", "unable to open database",
                           "database or disk is full")


def is_database_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` means the database is unreachable or unusable for now."""
    while isinstance(exc, defer.FirstError):  # one of several parallel lookups
        exc = exc.subFailure.value
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return any(m in message for m in _SQLITE_OUTAGE_MESSAGES)
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - a SQLite-only install
        return False
    # OperationalError: cannot connect, the server closed or terminated the
    # connection, a statement timeout; InterfaceError: the connection is closed
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))


class RawResponse:
    """A response body that is not JSON (media downloads): written as given,
    with its own headers, instead of being encoded as JSON."""

    __slots__ = ("body", "content_type", "headers")

    def __init__(self, body: bytes, content_type: str,
                 headers: dict[str, str] | None = None) -> None:
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


class EncodedDict(dict):  # type: ignore[type-arg]
    """A JSON object that also carries its encoding, made from parts many
    responses share (the sync fast path): ``encode_json`` returns ``encoded``."""

    encoded: bytes = b""


def encode_json(body: Any) -> bytes:
    if type(body) is EncodedDict and body.encoded:
        return body.encoded
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # a lone surrogate a client once sent as "\ud800" (say, in account
        # data) has no UTF-8 form; escaped, it goes back as it came
        return json.dumps(body, separators=(",", ":")).encode("ascii")


class MatrixResource(Resource):
    """One leaf resource for the whole listener."""

    isLeaf = True

    def __init__(self, router: Router, auth: "Auth", federation_auth: "FederationAuth",
                 max_client_json_size: int,
                 resources: frozenset[str] = frozenset({"client", "federation"}),
                 metrics: "Metrics | None" = None,
                 web_client: "WebClient | None" = None) -> None:
        super().__init__()
        # the web client's files at / (http/webclient.py), where enabled
        self.web_client = web_client
        # counts every request; serves the scrape at /_synapse/metrics only
        # where the listener names the metrics resource
        self.metrics = metrics
        self.serves_metrics = metrics is not None and "metrics" in resources
        self.router = router
        self.auth = auth
        self.federation_auth = federation_auth
        # a route's JSON body limit unless it sets its own (max_body)
        self.max_client_json_size = max_client_json_size
        # a listener serves the server-server API (/_matrix/federation,
        # /_matrix/key) only if its resources name "federation"
        self.serves_federation = "federation" in resources or "keys" in resources

    def render(self, request: Request) -> Any:  # noqa: N802 - Twisted's name
        start = time.monotonic()
        for name, value in CORS_HEADERS.items():
            request.setHeader(name, value)
        # every line logged while serving it carries the request's ID
        request_id = f"{request.method.decode('ascii', 'replace')}-{next(_REQUEST_IDS)}"
        request.request_id = request_id  # type: ignore[attr-defined]
        token = current_request.set(request_id)
        try:
            d = defer.ensureDeferred(self._dispatch(request))
        finally:
            current_request.reset(token)
        d.addErrback(self._unexpected, request)
        d.addBoth(lambda _: self._log_access(request, start))
        return NOT_DONE_YET

    def client_ip(self, request: Request) -> str:
        peer = request.getClientAddress()
        host = getattr(peer, "host", None) or "-"
        if getattr(request, "x_forwarded", False):
            forwarded = request.getHeader(b"X-Forwarded-For")
            if forwarded:
                host = forwarded.split(b",")[0].strip().decode("ascii", "replace")
        return str(host)

    async def _dispatch(self, request: Request) -> None:
        method = request.method.decode("ascii", "replace")
        raw_path = request.path
        if method in ("GET", "HEAD"):
            if raw_path == HEALTH_PATH:
                request.route_name = "health"  # type: ignore[attr-defined]
                write_health(request)
                return
            if raw_path == METRICS_PATH and self.serves_metrics:
                assert self.metrics is not None
                request.route_name = "metrics"  # type: ignore[attr-defined]
                write_metrics(request, self.metrics)
                return
            if self.web_client is not None and is_web_client_path(raw_path):
                request.route_name = "web_client"  # type: ignore[attr-defined]
                self.web_client.render(request)
                return
        try:
            if method == "OPTIONS":
                # CORS preflight: answered for every known path, no auth.
                if not self.router.has_path(raw_path):
                    raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
                self._write(request, 204, None)
                return
            if not self.serves_federation and raw_path.startswith(_FEDERATION_PREFIXES):
                raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
            route, params = self.router.match(method, raw_path)
            request.route_name = route.name  # type: ignore[attr-defined]
            check_query_args(request.args or {})
            max_json = route.max_body or self.max_client_json_size
            req = HttpRequest(request, params, max_json, self.client_ip(request),
                              nul_in_json=route.auth == AUTH_FEDERATION)
            if route.auth == AUTH_FEDERATION:
                req.origin = await self.federation_auth.authenticate(req)
                request.requester_id = req.origin  # type: ignore[attr-defined]
            elif route.auth != AUTH_NONE:
                req.requester = await self.auth.get_requester(
                    req, required=route.auth in (AUTH_REQUIRED, AUTH_ADMIN),
                    allow_guest=route.allow_guest)
                if req.requester is not None:
                    request.requester_id = req.requester.user_id  # type: ignore[attr-defined]
                    if route.auth == AUTH_ADMIN:
                        await self.auth.require_server_admin(req.requester)
            status, body = await route.handler(req)
            if status == SWITCHING_PROTOCOLS:
                return
            self._write(request, status, body)
        except MatrixError as e:
            for name, value in e.headers.items():
                request.setHeader(name.encode("ascii"), value.encode("ascii"))
            self._write(request, e.status, e.to_json())
        except InteractiveAuthIncomplete as e:
            self._write(request, 401, e.body)

    def _unexpected(self, failure: Failure, request: Request) -> None:
        token = current_request.set(getattr(request, "request_id", NO_REQUEST))
        try:
            self._report_unexpected(failure, request)
        finally:
            current_request.reset(token)

    def _report_unexpected(self, failure: Failure, request: Request) -> None:
        if is_database_outage(failure.value):
            # one line, no traceback: an outage fails every request at once
            logger.warning("request %s %s: database unavailable: %s",
                           request.method.decode("ascii", "replace"), _redacted_uri(request),
                           (str(failure.value).strip().splitlines() or [""])[0])
            if not (request.finished or getattr(request, "_disconnected", False)):
                request.setHeader(b"Retry-After", str(DATABASE_RETRY_AFTER_S).encode("ascii"))
            self._write(request, 503, {"errcode": Codes.UNKNOWN,
                                       "error": "The database is unavailable; try again later"})
            return
        logger.error("request %s %s failed", request.method.decode("ascii", "replace"),
                     _redacted_uri(request),
                     exc_info=(failure.type, failure.value,  # type: ignore[arg-type]
                               failure.getTracebackObject()))
        self._write(request, 500, {"errcode": Codes.UNKNOWN, "error": "Internal server error"})

    def _write(self, request: Request, status: int, body: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(status)
        if status == 204 or body is None:
            request.setHeader(b"Content-Length", b"0")
            request.finish()
            return
        if isinstance(body, RawResponse):
            for name, value in body.headers.items():
                request.setHeader(name.encode("ascii"), value.encode("ascii"))
            request.setHeader(b"Content-Type", body.content_type.encode("ascii"))
            request.setHeader(b"Content-Length", str(len(body.body)).encode("ascii"))
            request.write(body.body)
            request.finish()
            return
        data = encode_json(body)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", str(len(data)).encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-cache, no-store, must-revalidate")
        request.write(data)
        request.finish()

    def _log_access(self, request: Request, start: float) -> None:
        token = current_request.set(getattr(request, "request_id", NO_REQUEST))
        try:
            self._write_access_line(request, start)
        finally:
            current_request.reset(token)

    def _write_access_line(self, request: Request, start: float) -> None:
        elapsed = time.monotonic() - start
        elapsed_ms = elapsed * 1000
        if self.metrics is not None:
            self.metrics.observe_request(request.method.decode("ascii", "replace"),
                                         getattr(request, "route_name", ""), request.code,
                                         elapsed)
        user = getattr(request, "requester_id", "-")
        access_logger.info("%s - %s %s %s %d %dB %.1fms %s", self.client_ip(request), user,
                           request.method.decode("ascii", "replace"), _redacted_uri(request),
                           request.code, request.sentLength, elapsed_ms,
                           (request.getHeader(b"User-Agent") or b"-").decode("utf-8", "replace"))


def _redacted_uri(request: Request) -> str:
    """The request URI with any access token in the query string masked.

    Names are compared as Twisted decodes them for ``request.args``, so an
    encoded name (``access%5Ftoken``) that authenticates is masked too.
    """
    path, sep, query = request.uri.partition(b"?")
    if not sep:
        return path.decode("ascii", "replace")
    pairs = []
    for pair in query.split(b"&"):
        name, eq, _ = pair.partition(b"=")
        decoded = name
        if b"%" in name or b"+" in name:
            decoded = unquote_to_bytes(name.replace(b"+", b" "))
        if decoded in _SECRET_PARAMS:
            pair = name + b"=<redacted>"
        pairs.append(pair)
    return (path + b"?" + b"&".join(pairs)).decode("ascii", "replace")
