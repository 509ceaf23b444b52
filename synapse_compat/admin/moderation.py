"""Synapse's event reports, registration tokens and federation destinations
admin APIs. The use cases: ``homeserver/admin/moderation.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.admin.moderation import DESTINATION_ORDERS
from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import query_bool, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, Endpoint
from synapse_compat.admin.paging import non_negative, order_and_dir

if TYPE_CHECKING:
    from homeserver.admin.moderation import Destinations, EventReports, RegistrationTokens

V1 = "/_synapse/admin/v1"


@dataclass(frozen=True)
class ModerationApi:
    reports: "EventReports"
    tokens: "RegistrationTokens"
    destinations: "Destinations"
    hostname: str = ""


def _report_id(req: HttpRequest) -> int:
    raw = req.params["reportId"]
    if not raw.isdigit() or len(raw) > 18:
        raise MatrixError(400, Codes.INVALID_PARAM, "The report_id parameter must be a "
                          "string representing a positive integer.")
    return int(raw)


def _paged(body: dict[str, Any], key: str, rows: list[Any], start: int,
           total: int) -> dict[str, Any]:
    body = {key: rows, "total": total, **body}
    if start + len(rows) < total and rows:
        body["next_token"] = start + len(rows)
    return body


async def get_event_reports(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/event_reports"""
    start = non_negative(req.args, "from", 0)
    limit = non_negative(req.args, "limit", 100)
    direction = query_str(req.args, "dir", "b")
    if direction not in ("f", "b"):
        raise MatrixError(400, Codes.INVALID_PARAM, "Unknown direction: " + direction)
    rows, total = await api.reports.list(start, limit, direction == "b",
                                         query_str(req.args, "user_id", None),
                                         query_str(req.args, "room_id", None))
    return 200, _paged({}, "event_reports", rows, start, total)


async def get_event_report(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/event_reports/{reportId}"""
    return 200, await api.reports.get(_report_id(req))


async def delete_event_report(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v1/event_reports/{reportId}"""
    await api.reports.delete(req.user_id, _report_id(req))
    return 200, {}


def _optional_int(body: dict[str, Any], key: str, *, non_negative_only: bool) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or \
            (non_negative_only and value < 0) or value > 2**62:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{key} must be a non-negative integer "
                          "or null" if non_negative_only else f"{key} must be an integer or null")
    return value


async def get_registration_tokens(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/registration_tokens"""
    valid = query_bool(req.args, "valid", None)
    return 200, {"registration_tokens": await api.tokens.list(valid)}


async def post_new_registration_token(api: ModerationApi,
                                      req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/registration_tokens/new"""
    body = req.json(allow_empty=True)
    token = body.get("token")
    if token is not None and not isinstance(token, str):
        raise MatrixError(400, Codes.INVALID_PARAM, "token must be a string")
    length = body.get("length", 16)
    if token is None and (not isinstance(length, int) or isinstance(length, bool)
                          or not 0 < length <= 64):
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "length must be an integer greater than 0 and at most 64")
    uses_allowed = _optional_int(body, "uses_allowed", non_negative_only=True)
    expiry_time = _optional_int(body, "expiry_time", non_negative_only=False)
    return 200, await api.tokens.create(req.user_id, token, int(length), uses_allowed,
                                        expiry_time)


async def get_registration_token(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/registration_tokens/{token}"""
    return 200, await api.tokens.get(req.params["token"])


async def put_registration_token(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_synapse/admin/v1/registration_tokens/{token}"""
    body = req.json(allow_empty=True)
    changes: dict[str, int | None] = {}
    if "uses_allowed" in body:
        changes["uses_allowed"] = _optional_int(body, "uses_allowed", non_negative_only=True)
    if "expiry_time" in body:
        changes["expiry_time"] = _optional_int(body, "expiry_time", non_negative_only=False)
    return 200, await api.tokens.update(req.user_id, req.params["token"], changes)


async def delete_registration_token(api: ModerationApi,
                                    req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v1/registration_tokens/{token}"""
    await api.tokens.delete(req.user_id, req.params["token"])
    return 200, {}


async def get_destinations(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/federation/destinations"""
    start = non_negative(req.args, "from", 0)
    limit = non_negative(req.args, "limit", 100)
    order_by, backwards = order_and_dir(req.args, DESTINATION_ORDERS, "destination")
    rows, total = await api.destinations.list(start, limit, order_by, backwards,
                                              query_str(req.args, "destination", None))
    return 200, _paged({}, "destinations", rows, start, total)


async def get_destination(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/federation/destinations/{destination}"""
    return 200, await api.destinations.get(req.params["destination"])


async def get_destination_rooms(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/federation/destinations/{destination}/rooms"""
    start = non_negative(req.args, "from", 0)
    limit = non_negative(req.args, "limit", 100)
    direction = query_str(req.args, "dir", "f")
    if direction not in ("f", "b"):
        raise MatrixError(400, Codes.INVALID_PARAM, "Unknown direction: " + direction)
    rows = await api.destinations.rooms(req.params["destination"], api.hostname)
    if direction == "b":
        rows.reverse()
    return 200, _paged({}, "rooms", rows[start:start + limit], start, len(rows))


async def post_reset_connection(api: ModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection"""
    await api.destinations.reset_connection(req.user_id, req.params["destination"])
    return 200, {}


ENDPOINTS = (
    Endpoint("GET", f"{V1}/event_reports", get_event_reports, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/event_reports/{{reportId}}", get_event_report, auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V1}/event_reports/{{reportId}}", delete_event_report,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/registration_tokens", get_registration_tokens, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/registration_tokens/new", post_new_registration_token,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/registration_tokens/{{token}}", get_registration_token,
             auth=AUTH_ADMIN),
    Endpoint("PUT", f"{V1}/registration_tokens/{{token}}", put_registration_token,
             auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V1}/registration_tokens/{{token}}", delete_registration_token,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/federation/destinations", get_destinations, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/federation/destinations/{{destination}}", get_destination,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/federation/destinations/{{destination}}/rooms",
             get_destination_rooms, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/federation/destinations/{{destination}}/reset_connection",
             post_reset_connection, auth=AUTH_ADMIN),
)
