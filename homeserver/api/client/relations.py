"""Relations and threads: thin endpoints over ``rooms/relations.py`` and
``storage/relations.py``.

``/relations`` pages through the children of an event in stream order
(newest first by default); tokens are our ordinary pagination tokens
(``s<position>``; a ``/messages`` or ``/sync`` token works too). The parent
must be an event the reader may see (else 404), and each child passes the
history visibility rules like any timeline event. ``recurse=true`` follows
relations of relations up to ``RECURSION_DEPTH`` levels.

``/threads`` lists the room's thread roots, the most recently active
first; ``next_batch`` is the position of the last thread's latest reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import invalid_param, not_found
from homeserver.events.model import Event
from homeserver.http.parse import query_bool, query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.sync.tokens import pagination_token, parse_pagination_token

if TYPE_CHECKING:
    from homeserver.rooms.access import ReadAccess, RoomReader
    from homeserver.server import HomeServer
    from homeserver.storage import Stores

CLIENT_V1 = "/_matrix/client/v1"

DEFAULT_LIMIT = 5
MAX_LIMIT = 1000
MAX_THREADS_LIMIT = 100
# "Homeservers SHOULD traverse at least 3 levels of relationships"
RECURSION_DEPTH = 3


def _limit(req: HttpRequest, maximum: int) -> int:
    limit = query_int(req.args, "limit", DEFAULT_LIMIT)
    if limit < 0:
        raise invalid_param("'limit' must not be negative")
    return min(limit, maximum)


def _token(req: HttpRequest, name: str) -> int | None:
    text = query_str(req.args, name, None)
    return parse_pagination_token(text) if text is not None else None


@dataclass(frozen=True)
class Relations:
    """What the endpoints use: the event and relation stores, and the room
    reader (membership, history visibility, client format)."""

    stores: "Stores"
    reader: "RoomReader"


async def visible_parent(rel: Relations, user_id: str, access: "ReadAccess",
                         event_id: str) -> Event:
    pos = await rel.stores.events.get_event_position(event_id)
    if pos is None or pos.room_nid != access.room.room_nid or pos.stream_ordering is None \
            or (access.until_stream is not None
                and pos.stream_ordering > access.until_stream):
        raise not_found("Event not found.")
    event = await rel.stores.events.get_event(event_id)
    if event is None or not await rel.reader.filter_visible(
            user_id, access, [(pos.stream_ordering, event)]):
        raise not_found("Event not found.")
    return event


async def get_relations(rel: Relations, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]"""
    assert req.requester is not None
    stores, reader = rel.stores, rel.reader
    room_id = req.params["roomId"]
    direction = query_str(req.args, "dir", "b")
    if direction not in ("b", "f"):
        raise invalid_param("'dir' must be 'b' or 'f'")
    backwards = direction == "b"
    limit = _limit(req, MAX_LIMIT)
    from_pos, to_pos = _token(req, "from"), _token(req, "to")
    recurse = query_bool(req.args, "recurse", None)
    if recurse is None:  # the pre-v1.10 name, as Synapse accepts
        recurse = query_bool(req.args, "org.matrix.msc3981.recurse", None)
    depth = RECURSION_DEPTH if recurse else 1
    access = await reader.check_read(req.user_id, room_id)
    await visible_parent(rel, req.user_id, access, req.params["eventId"])
    until = access.until_stream
    if until is not None:  # a reader who left reads nothing after it
        if backwards:
            from_pos = until if from_pos is None else min(from_pos, until)
        else:
            to_pos = until if to_pos is None else min(to_pos, until)
    rows = await stores.relations.get_children(
        access.room.room_nid, req.params["eventId"], rel_type=req.params.get("relType"),
        event_type=req.params.get("eventType"), from_pos=from_pos, to_pos=to_pos,
        backwards=backwards, limit=limit, max_depth=depth)
    events = await stores.events.get_events([r.event_id for r in rows])
    found = [(r.stream_ordering, events[r.event_id]) for r in rows if r.event_id in events]
    # visibility is judged oldest first
    visible = await reader.filter_visible(req.user_id, access,
                                          sorted(found, key=lambda pe: pe[0]))
    shown = {e.event_id for e in visible}
    chunk = [e for _, e in found if e.event_id in shown]
    body: dict[str, Any] = {
        "chunk": await reader.serialize(req.requester, room_id, chunk)}
    if limit and len(rows) >= limit:
        last = rows[-1].stream_ordering
        body["next_batch"] = pagination_token(last - 1 if backwards else last)
    from_text = query_str(req.args, "from", None)
    if from_text is not None:
        body["prev_batch"] = from_text
    if recurse is not None:
        body["recursion_depth"] = depth
    return 200, body


async def get_threads(rel: Relations, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/rooms/{roomId}/threads"""
    assert req.requester is not None
    stores, reader = rel.stores, rel.reader
    room_id = req.params["roomId"]
    include = query_str(req.args, "include", "all")
    if include not in ("all", "participated"):
        raise invalid_param("'include' must be 'all' or 'participated'")
    limit = query_int(req.args, "limit", DEFAULT_LIMIT)
    if limit <= 0:
        raise invalid_param("'limit' must be an integer greater than zero")
    limit = min(limit, MAX_THREADS_LIMIT)
    before = _token(req, "from")
    access = await reader.check_read(req.user_id, room_id)
    if access.until_stream is not None:
        # a reader who left sees threads as they were when they left
        cap = access.until_stream + 1
        before = cap if before is None else min(before, cap)
    rows = await stores.relations.get_threads(
        access.room.room_nid, participant=req.user_id if include == "participated" else None,
        before=before, limit=limit)
    roots = await stores.events.get_events([root for root, _, _ in rows])
    candidates = sorted(((root_pos, roots[root]) for root, _, root_pos in rows
                         if root_pos is not None and root in roots
                         and (access.until_stream is None
                              or root_pos <= access.until_stream)),
                        key=lambda pe: pe[0])
    visible = {e.event_id for e in await reader.filter_visible(req.user_id, access,
                                                               candidates)}
    chunk = [roots[root] for root, _, _ in rows if root in visible]
    body: dict[str, Any] = {
        "chunk": await reader.serialize(req.requester, room_id, chunk)}
    if len(rows) >= limit:
        body["next_batch"] = pagination_token(rows[-1][1])
    return 200, body


_ROOM = f"{CLIENT_V1}/rooms/{{roomId}}"
ENDPOINTS = (
    Endpoint("GET", f"{_ROOM}/relations/{{eventId}}", get_relations),
    Endpoint("GET", f"{_ROOM}/relations/{{eventId}}/{{relType}}", get_relations),
    Endpoint("GET", f"{_ROOM}/relations/{{eventId}}/{{relType}}/{{eventType}}", get_relations),
    Endpoint("GET", f"{_ROOM}/threads", get_threads),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(Relations(hs.stores, hs.room_reader), ENDPOINTS)
