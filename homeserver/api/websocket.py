"""The WebSocket transport for sync (autobahn): ``GET /_matrix/client/unstable/stream``.

The protocol is described in docs/websocket.md; in short:

- The upgrade request goes through the ordinary router, so the access token,
  ``filter`` and ``set_presence`` are checked by the same code as /sync and a
  refusal is an ordinary HTTP error with a Matrix JSON body. Only then does
  :meth:`StreamFactory.take_over` hand the connection to autobahn.
- One sync loop per socket (:meth:`StreamProtocol._stream`): a sync with
  ``timeout=0`` first (sent whatever it holds), then long-polls from the last
  ``next_batch``, each non-empty result sent as one text frame in the very
  JSON of /sync. Resuming is the sync token's job: a client that reconnects
  with the last ``next_batch`` it received misses nothing and gets nothing
  twice. When the socket closes the pending sync is cancelled, which drops
  its waiter from the notifier.
- Requests from the client (``{"id", "method", "params"}``) run concurrently
  with the sync loop and with each other; each gets one response frame with
  the same ``id``. They call the same code as their REST endpoints.
- Keepalive is autobahn's: a ping every ``AUTO_PING_INTERVAL_S``, and a peer
  that does not answer within ``AUTO_PING_TIMEOUT_S`` is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.server import Request

from homeserver.api.client.sync import parse_set_presence
from homeserver.api.client.typing import parse_typing_body
from homeserver.api.streams import STREAM_PATH  # noqa: F401 - where the route lives
from homeserver.errors import Codes, MatrixError, bad_json, invalid_param
from homeserver.http.auth import hash_token, token_from_request
from homeserver.http.parse import (
    decode_json,
    get_object,
    get_str,
    query_str,
)
from homeserver.http.request import HttpRequest, Requester
from homeserver.http.resource import SWITCHING_PROTOCOLS, encode_json
from homeserver.sync.handler import SyncParams

if TYPE_CHECKING:
    from homeserver.server import HomeServer
    from homeserver.sync.filter import SyncFilter

logger = logging.getLogger(__name__)

SUBPROTOCOL = "m.json"

# How long one turn of the sync loop waits for news before it looks again
# (and re-checks that the access token still stands).
SYNC_TIMEOUT_MS = 30_000

AUTO_PING_INTERVAL_S = 30.0
AUTO_PING_TIMEOUT_S = 20.0
# Frames and messages from the client; bigger ones close the socket (1009).
MAX_PAYLOAD_BYTES = 64 * 1024

# Close codes of our own (RFC 6455 leaves 4000-4999 to applications).
CLOSE_MATRIX_ERROR = 4000
CLOSE_UNKNOWN_TOKEN = 4001
CLOSE_INTERNAL_ERROR = 4500

# Sections of a sync body that are counts, not news: a body with nothing
# else is not sent.
_COUNT_KEYS = frozenset({"next_batch", "device_one_time_keys_count",
                         "device_unused_fallback_key_types",
                         "org.matrix.msc2732.device_unused_fallback_key_types"})


@dataclass(frozen=True)
class StreamSession:
    """What the upgrade request established, for the socket it becomes."""

    requester: Requester
    token_hash: str
    since: str | None
    filter: "SyncFilter"
    set_presence: str | None
    # the token itself, only where requests are forwarded with it (a reader
    # process, docs/scale-out.md); never logged
    access_token: str = field(default="", repr=False)


def is_empty_delta(body: dict[str, Any]) -> bool:
    """True when a sync body holds nothing but its token and key counts."""
    return all(_is_empty(v) for k, v in body.items() if k not in _COUNT_KEYS)


def _is_empty(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_is_empty(v) for v in value.values())
    if isinstance(value, list):
        return not value
    return value is None


def _close_reason(err: MatrixError) -> str:
    """``"M_CODE: message"`` cut to the 123 bytes a close frame may carry."""
    reason = f"{err.errcode}: {err.msg}".encode()[:123]
    return reason.decode("utf-8", "ignore")


Method = Callable[["StreamProtocol", str, dict[str, Any]], Awaitable[dict[str, Any]]]


class StreamProtocol(WebSocketServerProtocol):
    """One client's socket: its sync loop and its requests."""

    factory: "StreamFactory"
    session: StreamSession | None = None

    def onConnect(self, request: ConnectionRequest) -> str | None:  # noqa: N802
        # the client was authenticated before the takeover; here we only
        # pick the subprotocol (a client offering none gets none)
        return SUBPROTOCOL if SUBPROTOCOL in request.protocols else None

    def onOpen(self) -> None:  # noqa: N802
        assert self.session is not None
        self._open = True
        self._sync: defer.Deferred[dict[str, Any]] | None = None
        self.factory.connections.add(self)
        d = defer.ensureDeferred(self._stream(self.session))
        d.addErrback(self._stream_failed)

    def onClose(self, wasClean: bool, code: int | None,  # noqa: N802, N803
                reason: str | None) -> None:
        self._stop_streaming()

    def _stop_streaming(self) -> None:
        self._open = False
        self.factory.connections.discard(self)
        sync = getattr(self, "_sync", None)
        if sync is not None:
            # the notifier forgets the waiter; the loop ends on CancelledError
            sync.cancel()

    def shut_down(self) -> None:
        """Stop the sync loop now and close the socket (the server is stopping)."""
        self._close(1000, "Server shutting down")
        self._stop_streaming()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        defer.ensureDeferred(self._answer(payload, isBinary))

    # -- server -> client -------------------------------------------------

    async def _stream(self, session: StreamSession) -> None:
        since = session.since
        timeout_ms = 0
        while self._open:
            params = SyncParams(since=since, timeout_ms=timeout_ms, full_state=False,
                                filter=session.filter, set_presence=session.set_presence)
            self._sync = defer.ensureDeferred(
                self.factory.sync_handler.sync(session.requester, params))
            try:
                body = await self._sync
            except Exception:
                if not self._open:
                    # cancelled as the socket closed (CancelledError, or a
                    # FirstError around one from a gatherResults inside)
                    return
                raise
            finally:
                self._sync = None
            # a client logged out while it waited hears nothing more
            if not (self._open and await self._token_still_valid(session)):
                self._close(CLOSE_UNKNOWN_TOKEN,
                            f"{Codes.UNKNOWN_TOKEN}: Access token no longer valid")
                return
            # the first frame always goes: it carries the token to resume from
            if timeout_ms == 0 or not is_empty_delta(body):
                self._send_json(body)
            since = body["next_batch"]
            timeout_ms = SYNC_TIMEOUT_MS

    async def _token_still_valid(self, session: StreamSession) -> bool:
        info = await self.factory.tokens.get_access_token(session.token_hash)
        if info is None:
            return False
        return info.valid_until_ms is None or info.valid_until_ms > self.factory.ctx.now_ms()

    def _stream_failed(self, failure: Failure) -> None:
        if failure.check(MatrixError):
            err: MatrixError = failure.value  # type: ignore[assignment]
            self._close(CLOSE_UNKNOWN_TOKEN if err.errcode == Codes.UNKNOWN_TOKEN
                        else CLOSE_MATRIX_ERROR, _close_reason(err))
            return
        logger.error("sync over WebSocket failed",
                     exc_info=(failure.type, failure.value,  # type: ignore[arg-type]
                               failure.getTracebackObject()))
        self._close(CLOSE_INTERNAL_ERROR, f"{Codes.UNKNOWN}: Internal server error")

    def _send_json(self, body: Any) -> None:
        # not once closing has begun: autobahn refuses to send then
        if self.state == self.STATE_OPEN:
            self.sendMessage(encode_json(body), isBinary=False)

    def _close(self, code: int, reason: str) -> None:
        if self.state == self.STATE_OPEN:
            self.sendClose(code, reason)

    # -- client -> server -------------------------------------------------

    async def _answer(self, payload: bytes, is_binary: bool) -> None:
        request_id: str | None = None
        try:
            if is_binary:
                raise MatrixError(400, Codes.NOT_JSON, "Requests are text frames of JSON")
            message = decode_json(payload, MAX_PAYLOAD_BYTES)
            if not isinstance(message, dict):
                raise bad_json("A request must be a JSON object")
            request_id = message.get("id")
            if not isinstance(request_id, str):
                request_id = None
                raise bad_json("'id' must be a string")
            method_name = message.get("method")
            if not isinstance(method_name, str):
                raise bad_json("'method' must be a string")
            # "param" is how the draft's table spells it
            params = message.get("params", message.get("param", {}))
            if not isinstance(params, dict):
                raise bad_json("'params' must be an object")
            method = METHODS.get(method_name)
            if method is None:
                raise MatrixError(400, Codes.UNRECOGNIZED, f"Unknown method {method_name!r}")
            forward = self.factory.forward_writes
            if forward is not None and method_name != "ping":
                # a reader process: the main process writes (docs/scale-out.md)
                assert self.session is not None
                result = await forward(self.session, method_name, request_id, params)
            else:
                result = await method(self, request_id, params)
            reply: dict[str, Any] = {"id": request_id, "result": result}
        except MatrixError as e:
            reply = {"id": request_id, "error": e.to_json()}
        except Exception:
            logger.exception("WebSocket request failed")
            reply = {"id": request_id,
                     "error": MatrixError(500, Codes.UNKNOWN, "Internal server error").to_json()}
        self._send_json(reply)

    @property
    def requester(self) -> Requester:
        assert self.session is not None
        return self.session.requester


# -- request methods -----------------------------------------------------------


async def _ping(proto: StreamProtocol, request_id: str,
                params: dict[str, Any]) -> dict[str, Any]:
    return {}


async def _send(proto: StreamProtocol, request_id: str,
                params: dict[str, Any]) -> dict[str, Any]:
    event_id = await proto.factory.room_sender.send_message(
        proto.requester, get_str(params, "room_id"), get_str(params, "event_type"),
        get_object(params, "content"), request_id)
    return {"event_id": event_id}


async def _state(proto: StreamProtocol, request_id: str,
                 params: dict[str, Any]) -> dict[str, Any]:
    event_id = await proto.factory.room_sender.send_state(
        proto.requester.user_id, get_str(params, "room_id"), get_str(params, "event_type"),
        get_str(params, "state_key"), get_object(params, "content"))
    return {"event_id": event_id}


async def _typing(proto: StreamProtocol, request_id: str,
                  params: dict[str, Any]) -> dict[str, Any]:
    room_id = get_str(params, "room_id")
    typing, timeout_ms = parse_typing_body(params)
    await proto.factory.typing.set_typing(proto.requester.user_id, room_id, typing,
                                          timeout_ms)
    return {}


async def _receipt(proto: StreamProtocol, request_id: str,
                   params: dict[str, Any]) -> dict[str, Any]:
    await proto.factory.receipts.post_receipt(
        proto.requester.user_id, get_str(params, "room_id"), get_str(params, "receipt_type"),
        get_str(params, "event_id"), params.get("thread_id"))
    return {}


async def _read_markers(proto: StreamProtocol, request_id: str,
                        params: dict[str, Any]) -> dict[str, Any]:
    room_id = get_str(params, "room_id")
    body = {k: v for k, v in params.items() if k != "room_id"}
    await proto.factory.receipts.post_read_markers(proto.requester.user_id, room_id, body)
    return {}


METHODS: dict[str, Method] = {
    "ping": _ping,
    "send": _send,
    "state": _state,
    "typing": _typing,
    "receipt": _receipt,
    "read_markers": _read_markers,
}


# -- the factory and the upgrade -------------------------------------------------


class StreamFactory(WebSocketServerFactory):
    """Builds a ``StreamProtocol`` for each upgraded request."""

    def __init__(self, hs: "HomeServer") -> None:
        super().__init__(server=None, reactor=hs.reactor)
        # what the sockets use
        self.room_sender = hs.room_sender
        self.ctx = hs.ctx
        self.sync_handler = hs.sync_handler
        self.tokens = hs.stores.tokens
        self.typing = hs.typing
        self.receipts = hs.receipts
        self.filter_cache = hs.filter_cache
        # in a reader process: hands the requests that write to the main
        # process (replication/forward.py; set by HomeServer)
        self.forward_writes: Callable[[StreamSession, str, str, dict[str, Any]],
                                      Awaitable[dict[str, Any]]] | None = None
        self.setProtocolOptions(
            autoPingInterval=AUTO_PING_INTERVAL_S, autoPingTimeout=AUTO_PING_TIMEOUT_S,
            maxFramePayloadSize=MAX_PAYLOAD_BYTES, maxMessagePayloadSize=MAX_PAYLOAD_BYTES,
            # a protocol violation (an oversized frame) gets a close frame
            # with its code (1009) before the connection goes
            failByDrop=False)
        self.connections: set[StreamProtocol] = set()
        self._resource = WebSocketResource(self)
        self._pending: StreamSession | None = None

    def take_over(self, request: Request, session: StreamSession) -> None:
        """Hand ``request``'s connection to autobahn, which answers the handshake."""
        # buildProtocol runs inside render: the session goes to that protocol
        self._pending = session
        try:
            self._resource.render(request)
        finally:
            self._pending = None

    # Any: Twisted types the result by a type variable autobahn leaves unbound
    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        proto = StreamProtocol()
        proto.factory = self
        proto.session = self._pending
        return proto

    def close_all(self) -> None:
        """Close every open socket and forget its sync (server shutdown)."""
        for proto in list(self.connections):
            proto.shut_down()


def _offered_protocols(req: HttpRequest) -> list[str]:
    header = req.header("Sec-WebSocket-Protocol")
    if header is None:
        return []
    return [p.strip() for p in header.split(",") if p.strip()]


async def handle_stream(hs: "HomeServer", factory: StreamFactory,
                        req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/unstable/stream (routed by api/streams.py)"""
    assert req.requester is not None
    if (req.header("Upgrade") or "").lower() != "websocket":
        err = MatrixError(426, Codes.UNRECOGNIZED,
                          "This endpoint speaks WebSocket: send 'Upgrade: websocket'")
        err.headers["Upgrade"] = "websocket"
        raise err
    offered = _offered_protocols(req)
    if offered and SUBPROTOCOL not in offered:
        raise invalid_param(f"The only subprotocol spoken here is {SUBPROTOCOL!r}")
    args = req.args
    since = query_str(args, "since", None)
    set_presence = parse_set_presence(query_str(args, "set_presence", None))
    sync_filter = await factory.filter_cache.load(req.user_id, query_str(args, "filter", None))
    token = token_from_request(req)
    assert token is not None
    session = StreamSession(req.requester, hash_token(token), since, sync_filter,
                            set_presence,
                            access_token=token if factory.forward_writes is not None else "")
    req.raw.setResponseCode(SWITCHING_PROTOCOLS)  # for the access log
    factory.take_over(req.raw, session)
    return SWITCHING_PROTOCOLS, None
