"""The deprecated event-stream API: ``GET /events``, ``GET /events/{eventId}``,
``GET /initialSync`` and ``GET /rooms/{roomId}/initialSync``.

Thin: parses the query and hands it to ``sync/event_stream.py``, which reads
through the same reader, stream and notifier as /sync and /messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.http.parse import query_int, query_str
from homeserver.http.request import HttpRequest, until_done_or_gone
from homeserver.http.router import Endpoint, Router
from homeserver.sync.event_stream import (
    DEFAULT_LIMIT,
    DEFAULT_TIMEOUT_MS,
    MAX_LIMIT,
    EventsParams,
)

if TYPE_CHECKING:
    from homeserver.rooms.access import RoomReader
    from homeserver.server import HomeServer
    from homeserver.storage import Stores
    from homeserver.sync.event_stream import EventStream

CLIENT_V3 = "/_matrix/client/v3"


@dataclass(frozen=True)
class EventsApi:
    """What the event-stream endpoints use."""

    stream: "EventStream"
    reader: "RoomReader"
    stores: "Stores"


def parse_limit(req: HttpRequest) -> int:
    limit: int = query_int(req.args, "limit", DEFAULT_LIMIT)
    if limit < 0:
        raise invalid_param("'limit' must not be negative")
    return min(limit, MAX_LIMIT)


def parse_timeout(req: HttpRequest) -> int:
    timeout: int = query_int(req.args, "timeout", DEFAULT_TIMEOUT_MS)
    if timeout < 0:
        raise invalid_param("'timeout' must not be negative")
    return timeout


async def get_events(api: EventsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/events"""
    assert req.requester is not None
    # an empty ``from`` is no ``from`` (events from now), as on Synapse:
    # clients that never had a token send ``from=``
    params = EventsParams(
        from_token=query_str(req.args, "from", None) or None,
        timeout_ms=parse_timeout(req),
        limit=parse_limit(req),
        room_id=query_str(req.args, "room_id", None),
    )
    d = defer.ensureDeferred(api.stream.get_events(req.requester, params))
    return await until_done_or_gone(req, d)


async def get_event(api: EventsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/events/{eventId}"""
    assert req.requester is not None
    event_id = req.params["eventId"]
    event = await api.stores.events.get_event(event_id)
    pos = await api.stores.events.get_event_position(event_id)
    if event is None or pos is None or pos.stream_ordering is None:
        raise not_found("Event not found.")
    try:
        access = await api.reader.check_read(req.user_id, event.room_id)
    except MatrixError as e:
        raise not_found("Event not found.") from e
    if (access.until_stream is not None and pos.stream_ordering > access.until_stream) \
            or not await api.reader.filter_visible(req.user_id, access,
                                                   [(pos.stream_ordering, event)]):
        raise not_found("Event not found.")
    return 200, (await api.reader.serialize(req.requester, event.room_id, [event]))[0]


async def get_initial_sync(api: EventsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/initialSync"""
    assert req.requester is not None
    archived = query_str(req.args, "archived", "false") == "true"
    return 200, await api.stream.initial_sync(req.requester, parse_limit(req), archived)


async def get_room_initial_sync(api: EventsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/initialSync"""
    assert req.requester is not None
    return 200, await api.stream.room_initial_sync(req.requester, req.params["roomId"],
                                                   parse_limit(req))


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/events", get_events, allow_guest=True),
    Endpoint("GET", f"{CLIENT_V3}/events/{{eventId}}", get_event),
    Endpoint("GET", f"{CLIENT_V3}/initialSync", get_initial_sync),
    Endpoint("GET", f"{CLIENT_V3}/rooms/{{roomId}}/initialSync", get_room_initial_sync,
             allow_guest=True),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(EventsApi(hs.event_stream, hs.room_reader, hs.stores), ENDPOINTS)
