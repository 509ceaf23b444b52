"""A process hands what it does not serve to the process that does.

A sync reader answers /sync, the WebSocket and the read paths below from
its own memory and the database. Every other request (sends, state,
receipts, typing, account data writes, logins, media, admin, federation) is
forwarded as it came, over HTTP, to the main process's ``instance_map``
address, and its answer relayed: a client pointed at a reader sees the
whole API. The address is our own deployment's (configured, usually on a
private network), so the outbound guard for untrusted destinations
(``http/outbound.py``) does not apply.

With event writers (``stream_writers.events``; ``writers.py``), a request
that writes an event into a room goes to the room's writer instead, from
whichever process it reached (main included), before any handler runs.

The main process's listener for forwarded requests should have
``x_forwarded: true``: the client's address travels in ``X-Forwarded-For``
so rate limits and the access log see the client, not the reader.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import treq
from twisted.internet import defer
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from homeserver.api.client.typing import parse_typing_body
from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import get_object, get_str
from homeserver.replication.writers import alias_write, event_write_room, room_writer

if TYPE_CHECKING:
    from homeserver.api.websocket import StreamSession
    from homeserver.config import WorkerConfig

# (method, path) -> the base URL of the process to forward to, None: served here
Route = Callable[[bytes, bytes], "str | None"]
# a room ID -> the base URL of its writer, None: this process
RoomRoute = Callable[[str], "str | None"]

logger = logging.getLogger(__name__)

# GET /_matrix/client/{version}/{first segment}/...: what a reader serves
LOCAL_GET = frozenset({
    "sync", "stream", "events", "initialSync", "joined_rooms", "capabilities", "profile",
    "pushrules", "keys", "account", "devices", "publicRooms", "directory", "user", "rooms",
    "voip", "notifications", "thirdparty",
})
# not relayed either way (RFC 9110 7.6.1), or set anew by us
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate",
                         b"proxy-authorization", b"te", b"trailer", b"transfer-encoding",
                         b"upgrade", b"host", b"content-length"})
FORWARD_TIMEOUT_S = 120.0
# how many times one request may be handed on (a reader to main to a room's
# writer is two); more means the processes disagree on who serves what (two
# configs differing in stream_writers): answered 502, not passed round for ever
MAX_HOPS = 3
HOPS_HEADER = b"X-Homeserver-Hops"


def served_locally(method: bytes, path: bytes) -> bool:
    """Whether a reader answers ``method path`` itself."""
    if method not in (b"GET", b"HEAD", b"OPTIONS"):
        return False
    if method == b"OPTIONS":
        return True  # CORS preflight: the same answer everywhere
    if path in (b"/_matrix/client/versions", b"/health"):
        return True
    parts = path.split(b"/", 5)
    # ['', '_matrix', 'client', version, first, rest]
    if len(parts) < 5 or parts[1] != b"_matrix" or parts[2] != b"client":
        return False
    return parts[4].decode("ascii", "replace") in LOCAL_GET


def media_path(path: bytes) -> bool:
    """Whether ``path`` is the media repository's: ``/_matrix/media/...``
    or ``/_matrix/client/v1/media/...`` (authenticated media)."""
    return path.startswith(b"/_matrix/media/") or path.startswith(b"/_matrix/client/v1/media/")


def build_room_route(worker: "WorkerConfig") -> RoomRoute:
    """Where a room's event writes go from this process (None: here)."""
    writers = worker.event_writers
    urls = {name: inst.base_url.rstrip("/") for name, inst in worker.instance_map.items()}

    def route(room_id: str) -> str | None:
        owner = room_writer(room_id, writers)
        return None if owner == worker.name else urls[owner]
    return route


def build_route(worker: "WorkerConfig") -> Route:
    """Where this process sends each request (module docstring): a room's
    event writes to the room's writer; on a worker, what it does not serve
    to main; the rest served here."""
    writers = worker.event_writers
    urls = {name: inst.base_url.rstrip("/") for name, inst in worker.instance_map.items()}
    me = worker.name
    serves_all = worker.is_main
    # a media worker serves every media request itself (uploads too)
    serves_media = worker.app == "media_repository"

    def route(method: bytes, path: bytes) -> str | None:
        if serves_media and media_path(path):
            return None
        if writers:
            room_id = event_write_room(method, path)
            if room_id is not None:
                owner = room_writer(room_id, writers)
                return None if owner == me else urls[owner]
        if serves_all or served_locally(method, path):
            return None
        return urls["main"]
    return route


class ForwardingResource(Resource):
    """Serves locally what this process serves, forwards the rest where
    ``route`` says (by default: what a reader does not serve, to ``main_url``)."""

    isLeaf = True

    def __init__(self, local: Resource, main_url: str, x_forwarded: bool,
                 reactor: Any, route: Route | None = None,
                 alias_room: Callable[[str], Awaitable[str | None]] | None = None,
                 room_route: RoomRoute | None = None) -> None:
        super().__init__()
        # with event writers: a join or knock by alias served here goes to
        # the writer of the room the alias names (a local alias; any other
        # is served here)
        self.alias_room = alias_room
        self.room_route = room_route
        self.local = local
        self.main_url = main_url.rstrip("/")
        self.route: Route = route or (
            lambda method, path: None if served_locally(method, path) else self.main_url)
        self.x_forwarded = x_forwarded
        self.reactor = reactor
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 50
        self.forwarded = 0

    def render(self, request: Request) -> Any:
        if self.alias_room is not None:
            alias = alias_write(request.method, request.path)
            if alias is not None:
                d = defer.ensureDeferred(self._by_alias(request, alias))
                d.addErrback(self._failed, request)
                return NOT_DONE_YET
        target = self.route(request.method, request.path)
        if target is None:
            return self.local.render(request)
        self.forwarded += 1
        d = defer.ensureDeferred(self._forward(request, target))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _by_alias(self, request: Request, alias: str) -> None:
        assert self.alias_room is not None and self.room_route is not None
        room_id = await self.alias_room(alias)
        if room_id is None:
            # not one of ours: served as any other request (the join goes
            # over federation from main)
            target = self.route(request.method, request.path)
        else:
            target = self.room_route(room_id)
        if target is None:
            self.local.render(request)
            return
        self.forwarded += 1
        await self._forward(request, target)

    def _client_chain(self, request: Request) -> bytes:
        peer = str(getattr(request.getClientAddress(), "host", None) or "-").encode("ascii")
        earlier = request.requestHeaders.getRawHeaders(b"X-Forwarded-For")
        if self.x_forwarded and earlier:
            return b", ".join([*earlier, peer])
        return peer

    async def _forward(self, request: Request, target: str) -> None:
        hops = request.getHeader(HOPS_HEADER)
        hops_n = int(hops) if hops is not None and hops.isdigit() else 0
        if hops_n >= MAX_HOPS:
            raise RuntimeError(f"handed on {hops_n} times already: do the processes' "
                               "configs agree on stream_writers?")
        headers: dict[bytes | str, list[bytes | str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() not in (
                    b"x-forwarded-for", HOPS_HEADER.lower()):
                headers[name] = list(values)
        headers[b"X-Forwarded-For"] = [self._client_chain(request)]
        headers[HOPS_HEADER] = [str(hops_n + 1).encode("ascii")]
        body = b""
        if request.content is not None:
            request.content.seek(0)
            body = request.content.read()
        url = target.encode("ascii") + request.uri
        response = await treq.request(
            request.method.decode("ascii"), url, headers=headers, data=body or None,
            pool=self.pool, timeout=FORWARD_TIMEOUT_S, reactor=self.reactor)
        if request._disconnected:  # the client went away meanwhile
            await treq.content(response)
            return
        request.setResponseCode(response.code)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in _HOP_BY_HOP:
                request.responseHeaders.setRawHeaders(name, values)
        await treq.collect(response, lambda chunk: None if request._disconnected
                           else request.write(chunk))
        if not request.finished and not request._disconnected:
            request.finish()

    def _failed(self, failure: Any, request: Request) -> None:
        logger.warning("forwarding %s %s failed: %s",
                       request.method.decode("ascii", "replace"),
                       request.path.decode("ascii", "replace"), failure.getErrorMessage())
        if request.finished or request._disconnected or request.startedWriting:
            if not request.finished and not request._disconnected:
                request.finish()
            return
        err = MatrixError(502, Codes.UNKNOWN,
                          "The server process for this request could not be reached")
        request.setResponseCode(err.status)
        request.setHeader(b"Content-Type", b"application/json")
        request.write(json.dumps(err.to_json()).encode("utf-8"))
        request.finish()


class WebSocketWrites:
    """A reader's WebSocket requests that write (``send``, ``state``,
    ``typing``, ``receipt``, ``read_markers``; docs/websocket.md), made as
    their REST twins on the main process with the socket's access token, so
    the checks, limits, errors and transaction IDs are main's own. With
    event writers, ``route`` sends each to where its REST twin goes (a send
    or state event to the room's writer), from main's sockets too."""

    def __init__(self, main_url: str, reactor: Any, pool: HTTPConnectionPool,
                 route: Route | None = None) -> None:
        self.main_url = main_url.rstrip("/")
        self.reactor = reactor
        self.pool = pool
        self.route = route

    async def __call__(self, session: "StreamSession", method: str, request_id: str,
                       params: dict[str, Any]) -> dict[str, Any]:
        http_method, path, body = _rest_twin(session.requester.user_id, method, request_id,
                                             params)
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": "Bearer " + session.access_token}
        base = self.main_url
        if self.route is not None:
            base = self.route(http_method.encode("ascii"), path.encode("ascii")) or base
        response = await treq.request(
            http_method, base + path, json=body, pool=self.pool, headers=headers,
            timeout=FORWARD_TIMEOUT_S, reactor=self.reactor)
        try:
            answer = await treq.json_content(response)
        except ValueError:
            answer = {}
        if response.code != 200:
            if isinstance(answer, dict) and isinstance(answer.get("errcode"), str):
                extra = {k: v for k, v in answer.items() if k not in ("errcode", "error")}
                raise MatrixError(response.code, answer["errcode"],
                                  str(answer.get("error", "")), **extra)
            raise MatrixError(502, Codes.UNKNOWN, "The server process could not answer")
        if method in ("send", "state"):
            return {"event_id": answer["event_id"]}
        return {}


def _rest_twin(user_id: str, method: str, request_id: str,
               params: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(HTTP method, path, body) of the REST endpoint a WebSocket request mirrors,
    its parameters checked as the socket's own handler checks them."""
    def q(value: str) -> str:
        return quote(value, safe="")

    rooms = "/_matrix/client/v3/rooms/"
    room_id = get_str(params, "room_id")
    if method == "send":
        event_type = get_str(params, "event_type")
        return ("PUT", f"{rooms}{q(room_id)}/send/{q(event_type)}/{q(request_id)}",
                get_object(params, "content"))
    if method == "state":
        event_type, state_key = get_str(params, "event_type"), get_str(params, "state_key")
        return ("PUT", f"{rooms}{q(room_id)}/state/{q(event_type)}/{q(state_key)}",
                get_object(params, "content"))
    if method == "typing":
        typing, timeout_ms = parse_typing_body(params)
        body: dict[str, Any] = {"typing": typing}
        if typing:
            body["timeout"] = timeout_ms
        return "PUT", f"{rooms}{q(room_id)}/typing/{q(user_id)}", body
    if method == "receipt":
        receipt_type, event_id = get_str(params, "receipt_type"), get_str(params, "event_id")
        body = {} if params.get("thread_id") is None else {"thread_id": params["thread_id"]}
        return "POST", f"{rooms}{q(room_id)}/receipt/{q(receipt_type)}/{q(event_id)}", body
    if method == "read_markers":
        return ("POST", f"{rooms}{q(room_id)}/read_markers",
                {k: v for k, v in params.items() if k != "room_id"})
    raise MatrixError(400, Codes.UNRECOGNIZED, f"Unknown method {method!r}")
