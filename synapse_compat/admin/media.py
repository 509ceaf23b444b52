"""Synapse's media admin API and a user's media (list, delete). The use cases:
``homeserver/admin/media.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import query_bool, query_int
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, Endpoint
from homeserver.storage.admin_media import MEDIA_ORDER_COLUMNS
from synapse_compat.admin.paging import non_negative, order_and_dir

if TYPE_CHECKING:
    from homeserver.admin.media import AdminMedia

V1 = "/_synapse/admin/v1"


@dataclass(frozen=True)
class MediaApi:
    media: "AdminMedia"


def _user_media_query(req: HttpRequest) -> tuple[int, int, str, bool]:
    start = non_negative(req.args, "from", 0)
    limit = non_negative(req.args, "limit", 100)
    order_by, backwards = order_and_dir(req.args, MEDIA_ORDER_COLUMNS, "created_ts")
    if b"order_by" not in req.args and b"dir" not in req.args:
        # neither given: newest first, as Synapse
        backwards = True
    return start, limit, order_by, backwards


async def get_user_media(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/users/{userId}/media"""
    start, limit, order_by, backwards = _user_media_query(req)
    rows, total = await api.media.user_media(req.params["userId"], start, limit, order_by,
                                             backwards)
    body: dict[str, Any] = {"media": [r.to_admin() for r in rows], "total": total}
    if start + len(rows) < total and rows:
        body["next_token"] = start + len(rows)
    return 200, body


async def delete_user_media(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v1/users/{userId}/media"""
    start, limit, order_by, backwards = _user_media_query(req)
    deleted = await api.media.delete_user_media(req.user_id, req.params["userId"], start,
                                                limit, order_by, backwards)
    return 200, {"deleted_media": deleted, "total": len(deleted)}


async def get_room_media(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/room/{roomId}/media"""
    return 200, await api.media.room_media(req.params["roomId"])


async def post_quarantine(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}"""
    await api.media.quarantine(req.user_id, req.params["serverName"], req.params["mediaId"],
                               True)
    return 200, {}


async def post_unquarantine(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}"""
    await api.media.quarantine(req.user_id, req.params["serverName"], req.params["mediaId"],
                               False)
    return 200, {}


async def get_quarantine_changes(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/media/quarantine_changes"""
    changes, next_batch = await api.media.quarantine_changes(non_negative(req.args, "from", 0))
    return 200, {"changes": changes, "next_batch": next_batch}


async def post_quarantine_room(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/room/{roomId}/media/quarantine"""
    count = await api.media.quarantine_room(req.user_id, req.params["roomId"])
    return 200, {"num_quarantined": count}


async def post_quarantine_user(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/user/{userId}/media/quarantine"""
    count = await api.media.quarantine_user(req.user_id, req.params["userId"])
    return 200, {"num_quarantined": count}


async def post_protect(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/media/protect/{mediaId}"""
    await api.media.protect(req.user_id, req.params["mediaId"], True)
    return 200, {}


async def post_unprotect(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/media/unprotect/{mediaId}"""
    await api.media.protect(req.user_id, req.params["mediaId"], False)
    return 200, {}


async def get_media_info(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/media/{serverName}/{mediaId}"""
    info = await api.media.media_info(req.params["serverName"], req.params["mediaId"])
    return 200, {"media_info": info}


async def delete_media(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}"""
    deleted = await api.media.delete_media(req.user_id, req.params["serverName"],
                                           req.params["mediaId"])
    return 200, {"deleted_media": deleted, "total": len(deleted)}


async def post_delete_old_media(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/media/delete"""
    before_ts = query_int(req.args, "before_ts")
    size_gt = query_int(req.args, "size_gt", 0)
    keep_profiles = query_bool(req.args, "keep_profiles", True)
    deleted = await api.media.delete_old_media(req.user_id, before_ts, size_gt, keep_profiles)
    return 200, {"deleted_media": deleted, "total": len(deleted)}


async def post_delete_old_media_legacy(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/media/{serverName}/delete"""
    if req.params["serverName"] != api.media.ctx.hostname:
        raise MatrixError(400, Codes.UNKNOWN, "Can only delete local media")
    return await post_delete_old_media(api, req)


async def post_purge_media_cache(api: MediaApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/purge_media_cache"""
    count = await api.media.purge_remote_cache(req.user_id, query_int(req.args, "before_ts"))
    return 200, {"deleted": count}


ENDPOINTS = (
    Endpoint("GET", f"{V1}/users/{{userId}}/media", get_user_media, auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V1}/users/{{userId}}/media", delete_user_media, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/room/{{roomId}}/media", get_room_media, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/room/{{roomId}}/media/quarantine", post_quarantine_room,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/quarantine_media/{{roomId}}", post_quarantine_room,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/user/{{userId}}/media/quarantine", post_quarantine_user,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/media/quarantine_changes", get_quarantine_changes, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/media/quarantine/{{serverName}}/{{mediaId}}", post_quarantine,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/media/unquarantine/{{serverName}}/{{mediaId}}",
             post_unquarantine, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/media/protect/{{mediaId}}", post_protect, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/media/unprotect/{{mediaId}}", post_unprotect, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/media/{{serverName}}/{{mediaId}}", get_media_info,
             auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V1}/media/{{serverName}}/{{mediaId}}", delete_media,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/media/delete", post_delete_old_media, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/media/{{serverName}}/delete", post_delete_old_media_legacy,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/purge_media_cache", post_purge_media_cache, auth=AUTH_ADMIN),
)
