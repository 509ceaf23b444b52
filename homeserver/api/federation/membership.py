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
from homeserver.http.router import AUTH_FEDERATION, Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer

# a send_join body is one event; an invite carries some stripped state too
MAX_BODY = 1024 * 1024


def register_routes(hs: "HomeServer", router: Router) -> None:
    fm = hs.federation_membership

    def versions(req: HttpRequest) -> list[str]:
        return [v.decode("utf-8", "replace") for v in req.args.get(b"ver", [])] or ["1"]

    def make(membership: str) -> Any:
        async def handler(req: HttpRequest) -> tuple[int, Any]:
            ver = versions(req) if membership != "leave" else None
            return 200, await fm.make_membership(req.origin, req.params["roomId"],
                                                 req.params["userId"], membership, ver)
        handler.__doc__ = f"GET /_matrix/federation/v1/make_{membership}/{{roomId}}/{{userId}}"
        return handler

    async def send_join(req: HttpRequest) -> dict[str, Any]:
        room, event = await fm.send_membership(req.origin, req.params["roomId"],
                                               req.params["eventId"], req.json(), "join")
        omit = req.args.get(b"omit_members", [b"false"])[0] == b"true"
        return await fm.join_response(room, event, omit)

    async def put_send_join_v1(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}"""
        body = await send_join(req)
        return 200, [200, body]

    async def put_send_join_v2(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}"""
        return 200, await send_join(req)

    async def put_send_leave_v1(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}"""
        await fm.send_membership(req.origin, req.params["roomId"], req.params["eventId"],
                                 req.json(), "leave")
        return 200, [200, {}]

    async def put_send_leave_v2(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}"""
        await fm.send_membership(req.origin, req.params["roomId"], req.params["eventId"],
                                 req.json(), "leave")
        return 200, {}

    async def put_send_knock(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}"""
        room, _ = await fm.send_membership(req.origin, req.params["roomId"],
                                           req.params["eventId"], req.json(), "knock")
        return 200, {"knock_room_state": await fm.knock_state(room)}

    async def put_invite_v2(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/federation/v2/invite/{roomId}/{eventId}"""
        body = req.json()
        version = body.get("room_version")
        if not isinstance(version, str):
            raise MatrixError(400, Codes.BAD_JSON, "Missing room_version")
        return 200, await fm.on_invite(req.origin, req.params["roomId"],
                                       req.params["eventId"], body.get("event"), version,
                                       body.get("invite_room_state"))

    async def put_invite_v1(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/federation/v1/invite/{roomId}/{eventId}"""
        body = req.json()
        state = body.get("unsigned", {}).get("invite_room_state") \
            if isinstance(body.get("unsigned"), dict) else None
        result = await fm.on_invite(req.origin, req.params["roomId"], req.params["eventId"],
                                    body, "1", state)
        return 200, [200, result]

    v1, v2 = FEDERATION_V1, FEDERATION_V2
    for membership in ("join", "leave", "knock"):
        router.add("GET", f"{v1}/make_{membership}/{{roomId}}/{{userId}}", make(membership),
                   auth=AUTH_FEDERATION)
    for method_path, handler in (
            (f"{v1}/send_join/{{roomId}}/{{eventId}}", put_send_join_v1),
            (f"{v2}/send_join/{{roomId}}/{{eventId}}", put_send_join_v2),
            (f"{v1}/send_leave/{{roomId}}/{{eventId}}", put_send_leave_v1),
            (f"{v2}/send_leave/{{roomId}}/{{eventId}}", put_send_leave_v2),
            (f"{v1}/send_knock/{{roomId}}/{{eventId}}", put_send_knock),
            (f"{v2}/invite/{{roomId}}/{{eventId}}", put_invite_v2),
            (f"{v1}/invite/{{roomId}}/{{eventId}}", put_invite_v1)):
        router.add("PUT", method_path, handler, auth=AUTH_FEDERATION, max_body=MAX_BODY)
