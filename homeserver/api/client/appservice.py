"""Third-party lookups (proxied to the application services that answer for
a protocol) and the application service ping
(``content/client-server-api/modules/third_party_networks.md``,
``content/application-service-api.md``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import not_found
from homeserver.http.parse import get_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.appservice.handler import AppServiceHandler
    from homeserver.server import HomeServer

CLIENT_V3 = "/_matrix/client/v3"
CLIENT_V1 = "/_matrix/client/v1"


def _fields(req: HttpRequest) -> list[tuple[str, str]]:
    """The query's fields, passed on as they came (the access token aside)."""
    out = []
    for name, values in (req.args or {}).items():
        if name == b"access_token":
            continue
        for value in values:
            out.append((name.decode("utf-8", "replace"), value.decode("utf-8", "replace")))
    return out


async def get_protocols(h: "AppServiceHandler", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/thirdparty/protocols"""
    return 200, await h.get_protocols()


async def get_protocol(h: "AppServiceHandler", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/thirdparty/protocol/{protocol}"""
    protocol = req.params["protocol"]
    found = (await h.get_protocols(only=protocol)).get(protocol)
    if found is None:
        raise not_found("The protocol is unknown")
    return 200, found


async def get_location_of_protocol(h: "AppServiceHandler", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/thirdparty/location/{protocol}"""
    return 200, await h.query_3pe("location", req.params["protocol"], _fields(req))


async def get_user_of_protocol(h: "AppServiceHandler", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/thirdparty/user/{protocol}"""
    return 200, await h.query_3pe("user", req.params["protocol"], _fields(req))


async def get_location(h: "AppServiceHandler", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/thirdparty/location"""
    return 200, await h.query_3pe("location", None, _fields(req))


async def get_user(h: "AppServiceHandler", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/thirdparty/user"""
    return 200, await h.query_3pe("user", None, _fields(req))


async def post_ping(h: "AppServiceHandler", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v1/appservice/{appserviceId}/ping"""
    transaction_id = get_str(req.json(allow_empty=True), "transaction_id", None)
    assert req.requester is not None
    duration = await h.ping(req.requester.app_service, req.params["appserviceId"],
                            transaction_id)
    return 200, {"duration_ms": duration}


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/thirdparty/protocols", get_protocols),
    Endpoint("GET", f"{CLIENT_V3}/thirdparty/protocol/{{protocol}}", get_protocol),
    Endpoint("GET", f"{CLIENT_V3}/thirdparty/location/{{protocol}}", get_location_of_protocol),
    Endpoint("GET", f"{CLIENT_V3}/thirdparty/user/{{protocol}}", get_user_of_protocol),
    Endpoint("GET", f"{CLIENT_V3}/thirdparty/location", get_location),
    Endpoint("GET", f"{CLIENT_V3}/thirdparty/user", get_user),
    Endpoint("POST", f"{CLIENT_V1}/appservice/{{appserviceId}}/ping", post_ping),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(hs.appservice_handler, ENDPOINTS)
