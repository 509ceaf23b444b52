"""GET /_synapse/admin/v1/server_version."""

from __future__ import annotations

from typing import Any

from homeserver.api.federation.queries import server_version
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, Endpoint

V1 = "/_synapse/admin/v1"


async def get_server_version(_: None, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/server_version"""
    return 200, {"server_version": server_version()}


ENDPOINTS = (
    Endpoint("GET", f"{V1}/server_version", get_server_version, auth=AUTH_ADMIN),
)
