"""Membership over federation: make_/send_ join, leave and knock, and invites.

The logic is in ``federation/membership.py``; these handlers parse and
answer. v1 of send_join, send_leave and invite wrap the body in
``[200, body]``, as the spec kept for compatibility.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.api.federation import FEDERATION_V1, FEDERATION_V2
from homeserver.errors import Codes, MatrixError
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_FEDERATION, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.federation.membership import FederationMembership
    from homeserver.server import HomeServer

# a send_join body is one event; an invite carries some stripped state too
MAX_BODY = 1024 * 1024


def _versions(req: HttpRequest) -> list[str]:
    return [v.decode("utf-8", "replace") for v in req.args.get(b"ver", [])] or ["1"]


async def _make(fm: "FederationMembership", req: HttpRequest, membership: str) -> Any:
    ver = _versions(req) if membership != "leave" else None
    return await fm.make_membership(req.origin, req.params["roomId"], req.params["userId"],
                                    membership, ver)


async def get_make_join(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/make_join/{roomId}/{userId}"""
    return 200, await _make(fm, req, "join")


async def get_make_leave(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/make_leave/{roomId}/{userId}"""
    return 200, await _make(fm, req, "leave")


async def get_make_knock(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/make_knock/{roomId}/{userId}"""
    return 200, await _make(fm, req, "knock")


async def _send_join(fm: "FederationMembership", req: HttpRequest) -> dict[str, Any]:
    room, event = await fm.send_membership(req.origin, req.params["roomId"],
                                           req.params["eventId"], req.json(), "join")
    omit = req.args.get(b"omit_members", [b"false"])[0] == b"true"
    return await fm.join_response(room, event, omit)


async def put_send_join_v1(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}"""
    body = await _send_join(fm, req)
    return 200, [200, body]


async def put_send_join_v2(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}"""
    return 200, await _send_join(fm, req)


async def put_send_leave_v1(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}"""
    await fm.send_membership(req.origin, req.params["roomId"], req.params["eventId"],
                             req.json(), "leave")
    return 200, [200, {}]


async def put_send_leave_v2(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}"""
    await fm.send_membership(req.origin, req.params["roomId"], req.params["eventId"],
                             req.json(), "leave")
    return 200, {}


async def put_send_knock(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}"""
    room, _ = await fm.send_membership(req.origin, req.params["roomId"],
                                       req.params["eventId"], req.json(), "knock")
    return 200, {"knock_room_state": await fm.knock_state(room)}


async def put_invite_v2(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/federation/v2/invite/{roomId}/{eventId}"""
    body = req.json()
    version = body.get("room_version")
    if not isinstance(version, str):
        raise MatrixError(400, Codes.BAD_JSON, "Missing room_version")
    return 200, await fm.on_invite(req.origin, req.params["roomId"], req.params["eventId"],
                                   body.get("event"), version, body.get("invite_room_state"))


async def put_invite_v1(fm: "FederationMembership", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/federation/v1/invite/{roomId}/{eventId}"""
    body = req.json()
    state = body.get("unsigned", {}).get("invite_room_state") \
        if isinstance(body.get("unsigned"), dict) else None
    result = await fm.on_invite(req.origin, req.params["roomId"], req.params["eventId"],
                                body, "1", state)
    return 200, [200, result]


_V1, _V2 = FEDERATION_V1, FEDERATION_V2
_MAKE = "{roomId}/{userId}"
_EVENT = "{roomId}/{eventId}"
ENDPOINTS = (
    Endpoint("GET", f"{_V1}/make_join/{_MAKE}", get_make_join, auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/make_leave/{_MAKE}", get_make_leave, auth=AUTH_FEDERATION),
    Endpoint("GET", f"{_V1}/make_knock/{_MAKE}", get_make_knock, auth=AUTH_FEDERATION),
    Endpoint("PUT", f"{_V1}/send_join/{_EVENT}", put_send_join_v1, auth=AUTH_FEDERATION,
             max_body=MAX_BODY),
    Endpoint("PUT", f"{_V2}/send_join/{_EVENT}", put_send_join_v2, auth=AUTH_FEDERATION,
             max_body=MAX_BODY),
    Endpoint("PUT", f"{_V1}/send_leave/{_EVENT}", put_send_leave_v1, auth=AUTH_FEDERATION,
             max_body=MAX_BODY),
    Endpoint("PUT", f"{_V2}/send_leave/{_EVENT}", put_send_leave_v2, auth=AUTH_FEDERATION,
             max_body=MAX_BODY),
    Endpoint("PUT", f"{_V1}/send_knock/{_EVENT}", put_send_knock, auth=AUTH_FEDERATION,
             max_body=MAX_BODY),
    Endpoint("PUT", f"{_V2}/invite/{_EVENT}", put_invite_v2, auth=AUTH_FEDERATION,
             max_body=MAX_BODY),
    Endpoint("PUT", f"{_V1}/invite/{_EVENT}", put_invite_v1, auth=AUTH_FEDERATION,
             max_body=MAX_BODY),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(hs.federation_membership, ENDPOINTS)
