"""Synapse's statistics admin API: users' media usage, the largest rooms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, Endpoint
from homeserver.storage.admin_stats import MEDIA_STATS_ORDER, AdminStatsStore, MediaStatsQuery
from synapse_compat.admin.paging import non_negative, order_and_dir

V1 = "/_synapse/admin/v1"


@dataclass(frozen=True)
class StatisticsApi:
    store: AdminStatsStore


def _ts(req: HttpRequest, name: str) -> int | None:
    value: int | None = query_int(req.args, name, None)
    if value is not None and value < 0:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          f"Query parameter {name} must be a positive integer.")
    return value


async def get_users_media(api: StatisticsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/statistics/users/media"""
    start = non_negative(req.args, "from", 0)
    limit = non_negative(req.args, "limit", 100)
    order_by, backwards = order_and_dir(req.args, MEDIA_STATS_ORDER, "user_id")
    from_ts, until_ts = _ts(req, "from_ts"), _ts(req, "until_ts")
    if from_ts is not None and until_ts is not None and until_ts < from_ts:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "Query parameter until_ts must be greater than from_ts.")
    search = query_str(req.args, "search_term", None)
    if search is not None and search == "":
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "Query parameter search_term cannot be an empty string.")
    users, total = await api.store.users_media(MediaStatsQuery(
        start, limit, order_by, backwards, from_ts, until_ts, search))
    body: dict[str, Any] = {"users": users, "total": total}
    if start + len(users) < total and users:
        body["next_token"] = start + len(users)
    return 200, body


async def get_largest_rooms(api: StatisticsApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/statistics/database/rooms"""
    return 200, {"rooms": await api.store.largest_rooms()}


ENDPOINTS = (
    Endpoint("GET", f"{V1}/statistics/users/media", get_users_media, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/statistics/database/rooms", get_largest_rooms, auth=AUTH_ADMIN),
)
