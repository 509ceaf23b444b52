"""The route of the WebSocket transport (``api/websocket.py``), with autobahn
loaded at the first connection: a server nobody streams from does not carry
it (a few MiB of memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer

# The draft's /_matrix/client/rN/stream; the draft never became a spec, so
# it lives under the unstable prefix.
STREAM_PATH = "/_matrix/client/unstable/stream"


class Streams:
    """The server's WebSocket connections: the autobahn factory, made on
    first use; its attributes (``connections``, ``setProtocolOptions``) read
    through. It holds the HomeServer because a socket's frames are served as
    requests of the whole client API (``api/websocket.py``)."""

    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs
        self._factory: Any = None

    @property
    def factory(self) -> Any:
        if self._factory is None:
            from homeserver.api.websocket import StreamFactory
            self._factory = StreamFactory(self.hs)
        return self._factory

    def __getattr__(self, name: str) -> Any:
        return getattr(self.factory, name)

    def close_all(self) -> None:
        """Close every open socket (server shutdown)."""
        if self._factory is not None:
            self._factory.close_all()


async def get_stream(streams: Streams, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/unstable/stream"""
    from homeserver.api.websocket import handle_stream

    return await handle_stream(streams.hs, streams.factory, req)


# who may connect is who may call /sync
ENDPOINTS = (Endpoint("GET", STREAM_PATH, get_stream),)


def register_routes(hs: "HomeServer", router: Router) -> Streams:
    streams = Streams(hs)
    router.add_endpoints(streams, ENDPOINTS)
    return streams
