"""Synapse's background updates admin API: status, pause, start a job. The
use case: ``homeserver/admin/background_updates.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, Endpoint

if TYPE_CHECKING:
    from homeserver.admin.background_updates import BackgroundUpdates
    from homeserver.context import ServerContext

V1 = "/_synapse/admin/v1"


@dataclass(frozen=True)
class BackgroundUpdatesApi:
    ctx: "ServerContext"
    updates: "BackgroundUpdates"


async def get_status(api: BackgroundUpdatesApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/background_updates/status"""
    return 200, api.updates.status()


async def get_enabled(api: BackgroundUpdatesApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/background_updates/enabled"""
    return 200, {"enabled": api.updates.enabled}


async def post_enabled(api: BackgroundUpdatesApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/background_updates/enabled"""
    enabled = req.json().get("enabled", True)
    if not isinstance(enabled, bool):
        raise MatrixError(400, Codes.BAD_JSON, "'enabled' must be a boolean")
    api.updates.set_enabled(req.user_id, enabled)
    return 200, {"enabled": enabled}


async def post_start_job(api: BackgroundUpdatesApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/background_updates/start_job"""
    body = req.json()
    if "job_name" not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'job_name'")
    job = api.updates.start_job(req.user_id, body["job_name"])
    if job is not None:
        api.ctx.run_in_background(job)
    return 200, {}


ENDPOINTS = (
    Endpoint("GET", f"{V1}/background_updates/status", get_status, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/background_updates/enabled", get_enabled, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/background_updates/enabled", post_enabled, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/background_updates/start_job", post_start_job, auth=AUTH_ADMIN),
)
