"""Reporting content to the server's admins (client-server API, "Reporting
Content"): an event, a room, or a user.

Reports are stored (``storage/reports.py``) for the admin API to read; what
admins do with them is theirs to decide.

- POST /rooms/{roomId}/report/{eventId}: the reporter must be joined to the
  room now (spec v1.8) and allowed to see the event by history visibility;
  otherwise, and for an unknown event, 404 M_NOT_FOUND, so a report does not
  tell anyone that an event they cannot see exists. ``reason`` is optional
  here; ``score`` (dropped from the spec in v1.18, still sent by older
  clients) must be an integer from -100 to 0 when given, as Synapse checks.
- POST /rooms/{roomId}/report (v1.13): anyone may report a room we know,
  joined or not (the spec forbids requiring it); an unknown room is 404.
- POST /users/{userId}/report (v1.14): anyone may report a user; one of our
  own users that does not exist is 404, a user of another server is taken
  as is (we cannot tell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.identifiers import is_valid_room_id, parse_user_id
from homeserver.errors import bad_json, invalid_param, not_found
from homeserver.http.parse import get_str, require_object
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.storage.reports import EVENT_REPORT, ROOM_REPORT, USER_REPORT

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.rooms.access import RoomReader
    from homeserver.server import HomeServer
    from homeserver.storage import Stores

CLIENT_V3 = "/_matrix/client/v3"
MIN_SCORE = -100
MAX_SCORE = 0


def parse_reason(body: dict[str, Any], *, required: bool) -> str | None:
    reason: str | None = get_str(body, "reason") if required else get_str(body, "reason", None)
    return reason


def parse_score(body: dict[str, Any]) -> int | None:
    score = body.get("score")
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, int) \
            or not MIN_SCORE <= score <= MAX_SCORE:
        raise bad_json(f"'score' must be an integer from {MIN_SCORE} to {MAX_SCORE}")
    return score


@dataclass(frozen=True)
class Reporting:
    """What the report endpoints use: the stores (rooms, events, users,
    reports), the room reader for visibility, and the clock."""

    ctx: "ServerContext"
    stores: "Stores"
    reader: "RoomReader"


def room_id_of(req: HttpRequest) -> str:
    room_id: str = req.params["roomId"]
    if not is_valid_room_id(room_id):
        raise invalid_param(f"{room_id} is not a valid room ID")
    return room_id


async def check_may_report_event(r: Reporting, user_id: str, room_id: str,
                                 event_id: str) -> str:
    """The event's sender, if ``user_id`` is joined and may see the event;
    else the same 404 whatever the reason, so nothing hidden is revealed."""
    stores = r.stores
    hidden = not_found("The event was not found or you are not joined to the room.")
    room = await stores.rooms.get_room(room_id)
    if room is None:
        raise hidden
    membership = await stores.rooms.get_membership(user_id, room.room_nid)
    if membership is None or membership.membership != "join":
        raise hidden
    pos = await stores.events.get_event_position(event_id)
    if pos is None or pos.room_nid != room.room_nid or pos.stream_ordering is None:
        raise hidden
    event = await stores.events.get_event(event_id)
    if event is None:
        raise hidden
    access = await r.reader.check_read(user_id, room_id)
    if not await r.reader.filter_visible(user_id, access, [(pos.stream_ordering, event)]):
        raise hidden
    return event.sender


async def report_event(r: Reporting, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}"""
    room_id = room_id_of(req)
    event_id = req.params["eventId"]
    body = require_object(req.json())
    reason = parse_reason(body, required=False)
    score = parse_score(body)
    sender = await check_may_report_event(r, req.user_id, room_id, event_id)
    await r.stores.reports.add_report(
        kind=EVENT_REPORT, reporter=req.user_id, received_ts=r.ctx.now_ms(), room_id=room_id,
        event_id=event_id, target_user_id=sender, reason=reason, score=score)
    return 200, {}


async def report_room(r: Reporting, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/report"""
    room_id = room_id_of(req)
    reason = parse_reason(require_object(req.json()), required=True)
    if await r.stores.rooms.get_room(room_id) is None:
        raise not_found("The room was not found.")
    await r.stores.reports.add_report(kind=ROOM_REPORT, reporter=req.user_id,
                                      received_ts=r.ctx.now_ms(), room_id=room_id,
                                      reason=reason)
    return 200, {}


async def report_user(r: Reporting, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/users/{userId}/report"""
    user_id = req.params["userId"]
    parsed = parse_user_id(user_id)
    if parsed is None:
        raise invalid_param("Invalid user ID")
    reason = parse_reason(require_object(req.json()), required=True)
    if parsed[1] == r.ctx.hostname and await r.stores.users.get_user(user_id) is None:
        raise not_found("The user was not found.")
    await r.stores.reports.add_report(kind=USER_REPORT, reporter=req.user_id,
                                      received_ts=r.ctx.now_ms(), target_user_id=user_id,
                                      reason=reason)
    return 200, {}


ENDPOINTS = (
    Endpoint("POST", f"{CLIENT_V3}/rooms/{{roomId}}/report/{{eventId}}", report_event),
    Endpoint("POST", f"{CLIENT_V3}/rooms/{{roomId}}/report", report_room),
    Endpoint("POST", f"{CLIENT_V3}/users/{{userId}}/report", report_user),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(Reporting(hs.ctx, hs.stores, hs.room_reader), ENDPOINTS)
