"""Synapse's room admin API: list, details, members, state, messages, block,
delete (v1 at once, v2 in the background with its status) and the older
shutdown_room, purge history, make room admin, forward extremities,
timestamp_to_event, fetch_event and joining a user. The use cases:
``homeserver/admin/rooms.py``, ``room_deletion.py``, ``purge_history.py``
and ``room_tools.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.admin.audit import log_admin_action
from homeserver.admin.room_deletion import (
    DEFAULT_MESSAGE,
    DEFAULT_ROOM_NAME,
    DeletionParams,
    status_body,
)
from homeserver.admin.rooms import ROOM_ORDERS, RoomListQuery
from homeserver.api.client.rooms import parse_limit, parse_room_event_filter, parse_token
from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import get_bool, query_bool, query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, Endpoint
from homeserver.rooms.client_format import client_event
from synapse_compat.admin.paging import body_bool, body_str, non_negative, order_and_dir

if TYPE_CHECKING:
    from homeserver.admin.purge_history import HistoryPurger
    from homeserver.admin.room_deletion import RoomDeleter
    from homeserver.admin.room_tools import RoomTools
    from homeserver.admin.rooms import AdminRooms
    from homeserver.context import ServerContext
    from homeserver.events.model import Event
    from homeserver.rooms.hierarchy import HierarchyHandler

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


@dataclass(frozen=True)
class RoomsApi:
    ctx: "ServerContext"
    rooms: "AdminRooms"
    deleter: "RoomDeleter"
    purger: "HistoryPurger"
    tools: "RoomTools"
    hierarchy: "HierarchyHandler | None" = None


def parse_deletion(body: dict[str, Any], *, block: bool = False,
                   purge: bool = True) -> DeletionParams:
    new_room_user_id = body_str(body, "new_room_user_id", 255)
    return DeletionParams(
        new_room_user_id=new_room_user_id,
        room_name=body_str(body, "room_name", 255) or DEFAULT_ROOM_NAME,
        message=body_str(body, "message", 65536) or DEFAULT_MESSAGE,
        block=bool(body_bool(body, "block", block)),
        purge=bool(body_bool(body, "purge", purge)),
        force_purge=bool(body_bool(body, "force_purge", False)))


async def get_rooms(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms"""
    start = non_negative(req.args, "from", 0)
    limit = non_negative(req.args, "limit", 100)
    order_by, backwards = order_and_dir(req.args, ROOM_ORDERS, "name")
    query = RoomListQuery(start=start, limit=limit, order_by=order_by, backwards=backwards,
                          search_term=query_str(req.args, "search_term", None),
                          public_rooms=query_bool(req.args, "public_rooms", None),
                          empty_rooms=query_bool(req.args, "empty_rooms", None))
    rooms, total = await api.rooms.list_rooms(query)
    body: dict[str, Any] = {"rooms": rooms, "offset": start, "total_rooms": total}
    if start + len(rooms) < total:
        body["next_batch"] = start + len(rooms)
    if start > 0:
        body["prev_batch"] = max(0, start - limit)
    return 200, body


async def get_room(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms/{roomId}"""
    return 200, await api.rooms.details(req.params["roomId"])


async def get_room_members(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms/{roomId}/members"""
    members = await api.rooms.members(req.params["roomId"])
    return 200, {"members": members, "total": len(members)}


async def get_room_state(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms/{roomId}/state"""
    room_id = req.params["roomId"]
    now = api.ctx.now_ms()
    events = await api.rooms.state(room_id)
    return 200, {"state": [client_event(e, room_id, now) for e in events]}


async def get_room_messages(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms/{roomId}/messages"""
    room_id = req.params["roomId"]
    direction = query_str(req.args, "dir", "f")
    if direction not in ("b", "f"):
        raise MatrixError(400, Codes.INVALID_PARAM, "'dir' must be 'b' or 'f'")
    event_filter = parse_room_event_filter(query_str(req.args, "filter", None))
    limit = parse_limit(req.args, event_filter)
    from_token = query_str(req.args, "from", None)
    to_token = query_str(req.args, "to", None)
    backwards = direction == "b"
    if from_token is not None:
        from_pos = parse_token(from_token)
    else:
        from_pos = 2**62 if backwards else -(2**62)
    to_pos = parse_token(to_token) if to_token is not None else None
    events, next_pos = await api.rooms.messages(room_id, from_pos, to_pos, backwards, limit,
                                                event_filter)
    now = api.ctx.now_ms()
    body: dict[str, Any] = {"chunk": [client_event(e, room_id, now) for e in events],
                            "start": f"s{from_pos}"}
    if events:
        body["end"] = f"s{next_pos}"
    return 200, body


async def get_room_context(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms/{roomId}/context/{eventId}"""
    room_id = req.params["roomId"]
    event_filter = parse_room_event_filter(query_str(req.args, "filter", None))
    limit = parse_limit(req.args, event_filter)
    found = await api.rooms.context(room_id, req.params["eventId"], limit, event_filter)
    now = api.ctx.now_ms()
    every = [found["event"], *found["events_before"], *found["events_after"], *found["state"]]
    replaced = await api.rooms.stores.events.get_replaced_state(
        [e.event_id for e in every if e.is_state()])

    def shown(event: "Event") -> dict[str, Any]:
        # Synapse's admin context answers in the older format: user_id, age
        # and a state event's prev_content and replaces_state at the top too
        out = client_event(event, room_id, now, replaced=replaced.get(event.event_id))
        out["user_id"] = event.sender
        out["age"] = max(0, now - event.origin_server_ts)
        for key in ("prev_content", "replaces_state"):
            if key in out.get("unsigned", {}):
                out[key] = out["unsigned"][key]
        return out
    return 200, {
        "event": shown(found["event"]),
        "events_before": [shown(e) for e in found["events_before"]],
        "events_after": [shown(e) for e in found["events_after"]],
        "state": [shown(e) for e in found["state"]],
        "start": f"s{found['start']}", "end": f"s{found['end']}"}


async def get_room_hierarchy(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms/{roomId}/hierarchy"""
    assert api.hierarchy is not None
    limit = non_negative(req.args, "limit", 50)
    max_depth = query_int(req.args, "max_depth", None)
    if max_depth is not None and max_depth < 0:
        raise MatrixError(400, Codes.INVALID_PARAM, "'max_depth' must be a non-negative integer")
    return 200, await api.hierarchy.get_hierarchy(
        req.user_id, req.params["roomId"], suggested_only=False, max_depth=max_depth,
        limit=limit or None, from_token=query_str(req.args, "from", None), as_admin=True)


async def get_room_block(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms/{roomId}/block"""
    by = await api.rooms.stores.admin_rooms.room_blocked_by(req.params["roomId"])
    return 200, {"block": True, "user_id": by} if by is not None else {"block": False}


async def put_room_block(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_synapse/admin/v1/rooms/{roomId}/block"""
    room_id = req.params["roomId"]
    if not room_id.startswith("!"):
        raise MatrixError(400, Codes.INVALID_PARAM, f"{room_id} is not a legal room ID")
    block = get_bool(req.json(), "block")
    store = api.rooms.stores.admin_rooms
    if block:
        await store.block_room(room_id, req.user_id, api.ctx.now_ms())
    else:
        await store.unblock_room(room_id)
    log_admin_action(req.user_id, "block_room" if block else "unblock_room", room_id)
    return 200, {"block": block}


async def delete_room_v1(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v1/rooms/{roomId}"""
    params = parse_deletion(req.json(allow_empty=True))
    deletion = await api.deleter.start(req.user_id, req.params["roomId"], params)
    return 200, await api.deleter.run(deletion)


async def post_shutdown_room(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/shutdown_room/{roomId}"""
    # the older API: always blocks, never purges
    body = req.json(allow_empty=True)
    params = parse_deletion({k: v for k, v in body.items() if k not in ("block", "purge")},
                            block=True, purge=False)
    deletion = await api.deleter.start(req.user_id, req.params["roomId"], params)
    return 200, await api.deleter.run(deletion)


async def delete_room_v2(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v2/rooms/{roomId}"""
    params = parse_deletion(req.json(allow_empty=True))
    deletion = await api.deleter.start(req.user_id, req.params["roomId"], params)
    api.ctx.run_in_background(api.deleter.run(deletion))
    return 200, {"delete_id": deletion.delete_id}


async def get_delete_status_of_room(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v2/rooms/{roomId}/delete_status"""
    found = await api.deleter.statuses_of_room(req.params["roomId"])
    return 200, {"results": [status_body(d) for d in found]}


async def get_delete_status(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v2/rooms/delete_status/{deleteId}"""
    body = status_body(await api.deleter.status(req.params["deleteId"]))
    del body["delete_id"]
    return 200, body


async def post_purge_history(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]"""
    body = req.json(allow_empty=True)
    event_id = req.params.get("eventId") or body_str(body, "purge_up_to_event_id", 255)
    ts = None
    if event_id is None:
        ts = body.get("purge_up_to_ts")
        if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "purge_up_to_ts must be an int timestamp")
    delete_local = bool(body_bool(body, "delete_local_events", False))
    purge_id = await api.purger.start(req.user_id, req.params["roomId"], event_id, ts,
                                      delete_local)
    return 200, {"purge_id": purge_id}


async def get_purge_history_status(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/purge_history_status/{purgeId}"""
    status, error = api.purger.status(req.params["purgeId"])
    body: dict[str, Any] = {"status": status}
    if error is not None:
        body["error"] = error
    return 200, body


async def post_make_room_admin(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/rooms/{roomId}/make_room_admin (an ID or an alias)"""
    body = req.json(allow_empty=True)
    user_id = body_str(body, "user_id", 255) or req.user_id
    room = await api.tools.resolve(req.params["roomId"])
    await api.tools.make_room_admin(req.user_id, room, user_id)
    return 200, {}


async def get_forward_extremities(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms/{roomId}/forward_extremities (an ID or an alias)"""
    room = await api.tools.resolve(req.params["roomId"])
    results = await api.tools.forward_extremities(room)
    return 200, {"count": len(results), "results": results}


async def delete_forward_extremities(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v1/rooms/{roomId}/forward_extremities (an ID or an alias)"""
    room = await api.tools.resolve(req.params["roomId"])
    return 200, {"deleted": await api.tools.delete_forward_extremities(req.user_id, room)}


async def get_timestamp_to_event(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/rooms/{roomId}/timestamp_to_event"""
    ts = query_int(req.args, "ts")
    direction = query_str(req.args, "dir", "f")
    if direction not in ("b", "f"):
        raise MatrixError(400, Codes.INVALID_PARAM, "'dir' must be 'b' or 'f'")
    if not 0 <= ts < 2**62:
        raise MatrixError(400, Codes.INVALID_PARAM, "'ts' is out of range")
    room = await api.tools.resolve(req.params["roomId"])
    found = await api.rooms.stores.events.get_events_near_timestamp(
        room.room_nid, ts, forwards=direction == "f", until=None, limit=1)
    if not found:
        raise MatrixError(404, Codes.NOT_FOUND,
                          f"Unable to find event from {ts} in direction {direction}")
    event = found[0][1]
    return 200, {"event_id": event.event_id, "origin_server_ts": event.origin_server_ts}


async def get_fetch_event(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/fetch_event/{eventId}"""
    event = await api.rooms.stores.events.get_event(req.params["eventId"])
    if event is None:
        raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
    unsigned = event.json.get("unsigned")
    unsigned = dict(unsigned) if isinstance(unsigned, dict) else {}
    unsigned.setdefault("age_ts", event.origin_server_ts)
    unsigned["age"] = max(0, api.ctx.now_ms() - event.origin_server_ts)
    return 200, {"event": dict(event.json, event_id=event.event_id, unsigned=unsigned)}


async def post_join(api: RoomsApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/join/{roomIdOrAlias}"""
    body = req.json()
    user_id = body_str(body, "user_id", 255)
    if user_id is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'user_id'")
    try:
        via = [v.decode("utf-8") for v in req.args.get(b"server_name", [])]
    except UnicodeDecodeError:
        raise MatrixError(400, Codes.INVALID_PARAM, "'server_name' is not valid UTF-8") from None
    room_id = await api.tools.join_user(req.user_id, req.params["roomIdOrAlias"], user_id, via)
    return 200, {"room_id": room_id}


ENDPOINTS = (
    Endpoint("GET", f"{V1}/rooms", get_rooms, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/rooms/{{roomId}}", get_room, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/rooms/{{roomId}}/members", get_room_members, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/rooms/{{roomId}}/state", get_room_state, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/rooms/{{roomId}}/messages", get_room_messages, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/rooms/{{roomId}}/context/{{eventId}}", get_room_context,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/rooms/{{roomId}}/hierarchy", get_room_hierarchy, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/rooms/{{roomId}}/block", get_room_block, auth=AUTH_ADMIN),
    Endpoint("PUT", f"{V1}/rooms/{{roomId}}/block", put_room_block, auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V1}/rooms/{{roomId}}", delete_room_v1, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/shutdown_room/{{roomId}}", post_shutdown_room, auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V2}/rooms/{{roomId}}", delete_room_v2, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V2}/rooms/{{roomId}}/delete_status", get_delete_status_of_room,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V2}/rooms/delete_status/{{deleteId}}", get_delete_status,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/purge_history/{{roomId}}", post_purge_history, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/purge_history/{{roomId}}/{{eventId}}", post_purge_history,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/purge_history_status/{{purgeId}}", get_purge_history_status,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/rooms/{{roomId}}/make_room_admin", post_make_room_admin,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/rooms/{{roomId}}/forward_extremities",
             get_forward_extremities, auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V1}/rooms/{{roomId}}/forward_extremities",
             delete_forward_extremities, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/rooms/{{roomId}}/timestamp_to_event", get_timestamp_to_event,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/fetch_event/{{eventId}}", get_fetch_event, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/join/{{roomIdOrAlias}}", post_join, auth=AUTH_ADMIN),
)
