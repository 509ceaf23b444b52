"""Synapse's admin API for moderating users: shadow-ban, suspension, rate-limit override,
account data, pushers, redacting a user's events, server notices. The use
cases: ``homeserver/admin/user_moderation.py``, ``user_redaction.py``,
``server_notices.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.admin.user_redaction import RedactRequest
from homeserver.errors import Codes, MatrixError
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, Endpoint
from synapse_compat.admin.paging import body_bool, body_str

if TYPE_CHECKING:
    from homeserver.admin.server_notices import ServerNotices
    from homeserver.admin.user_moderation import UserModeration
    from homeserver.admin.user_redaction import UserRedactor

V1 = "/_synapse/admin/v1"
MAX_NOTICE_TXNS = 10_000


@dataclass(frozen=True)
class UserModerationApi:
    moderation: "UserModeration"
    redactor: "UserRedactor"
    notices: "ServerNotices"
    # (admin, txnId) -> event ID of PUT /send_server_notice/{txnId}
    notice_txns: dict[tuple[str, str], str] = field(default_factory=dict)


def _int_field(body: dict[str, Any], key: str, default: int | None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 2**53:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{key!r} parameter must be a positive int")
    return value


async def post_shadow_ban(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/users/{userId}/shadow_ban"""
    await api.moderation.set_shadow_banned(req.user_id, req.params["userId"], True)
    return 200, {}


async def delete_shadow_ban(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v1/users/{userId}/shadow_ban"""
    await api.moderation.set_shadow_banned(req.user_id, req.params["userId"], False)
    return 200, {}


async def put_suspend(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_synapse/admin/v1/suspend/{userId}"""
    user_id = req.params["userId"]
    suspend = req.json().get("suspend")
    if not isinstance(suspend, bool):
        raise MatrixError(400, Codes.BAD_JSON, "'suspend' must be a boolean")
    await api.moderation.set_suspended(req.user_id, user_id, suspend)
    return 200, {f"user_{user_id}_suspended": suspend}


async def get_override_ratelimit(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/users/{userId}/override_ratelimit"""
    return 200, await api.moderation.get_override(req.params["userId"])


async def post_override_ratelimit(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/users/{userId}/override_ratelimit"""
    body = req.json(allow_empty=True)
    per_second = _int_field(body, "messages_per_second", 0)
    burst = _int_field(body, "burst_count", 0)
    assert per_second is not None and burst is not None
    return 200, await api.moderation.set_override(req.user_id, req.params["userId"],
                                                  per_second, burst)


async def delete_override_ratelimit(api: UserModerationApi,
                                    req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v1/users/{userId}/override_ratelimit"""
    await api.moderation.delete_override(req.user_id, req.params["userId"])
    return 200, {}


async def get_account_data(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/users/{userId}/accountdata"""
    return 200, {"account_data": await api.moderation.account_data(req.params["userId"])}


async def get_pushers(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/users/{userId}/pushers"""
    pushers = await api.moderation.pushers(req.params["userId"])
    return 200, {"pushers": pushers, "total": len(pushers)}


async def post_redact(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/user/{userId}/redact"""
    body = req.json()
    rooms = body.get("rooms")
    if rooms is None:
        raise MatrixError(400, Codes.BAD_JSON, "Must provide a value for rooms.")
    if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
        raise MatrixError(400, Codes.BAD_JSON, "rooms must be a list of room IDs")
    limit = _int_field(body, "limit", 1000)
    assert limit is not None
    if limit == 0:
        raise MatrixError(400, Codes.INVALID_PARAM, "'limit' parameter must be a positive int")
    request = RedactRequest(
        user_id=req.params["userId"], rooms=tuple(rooms),
        reason=body_str(body, "reason", 1000), limit=limit,
        use_admin=bool(body_bool(body, "use_admin", False)),
        after_ts=_int_field(body, "after_ts", None),
        before_ts=_int_field(body, "before_ts", None))
    return 200, {"redact_id": api.redactor.start(req.user_id, request)}


async def get_redact_status(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/user/redact_status/{redactId}"""
    job = api.redactor.status(req.params["redactId"])
    if job is None:
        raise MatrixError(404, Codes.NOT_FOUND, "redact id not found")
    return 200, {"status": job.status, "failed_redactions": dict(job.failed_redactions)}


async def _send_notice(api: UserModerationApi, req: HttpRequest) -> str:
    body = req.json()
    user_id = body.get("user_id")
    if not isinstance(user_id, str):
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: user_id")
    content = body.get("content")
    if not isinstance(content, dict):
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: content")
    event_type = body.get("type", "m.room.message")
    state_key = body.get("state_key")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 255:
        raise MatrixError(400, Codes.INVALID_PARAM, "type must be an event type")
    if state_key is not None and not isinstance(state_key, str):
        raise MatrixError(400, Codes.INVALID_PARAM, "state_key must be a string")
    return await api.notices.send(req.user_id, user_id, event_type, content, state_key)


async def post_server_notice(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/send_server_notice"""
    return 200, {"event_id": await _send_notice(api, req)}


async def put_server_notice(api: UserModerationApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_synapse/admin/v1/send_server_notice/{txnId}"""
    key = (req.user_id, req.params["txnId"])
    earlier = api.notice_txns.get(key)
    if earlier is not None:
        return 200, {"event_id": earlier}
    event_id = await _send_notice(api, req)
    if len(api.notice_txns) >= MAX_NOTICE_TXNS:
        api.notice_txns.clear()
    api.notice_txns[key] = event_id
    return 200, {"event_id": event_id}


ENDPOINTS = (
    Endpoint("POST", f"{V1}/users/{{userId}}/shadow_ban", post_shadow_ban, auth=AUTH_ADMIN),
    Endpoint("PUT", f"{V1}/suspend/{{userId}}", put_suspend, auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V1}/users/{{userId}}/shadow_ban", delete_shadow_ban,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/users/{{userId}}/override_ratelimit", get_override_ratelimit,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/users/{{userId}}/override_ratelimit", post_override_ratelimit,
             auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V1}/users/{{userId}}/override_ratelimit",
             delete_override_ratelimit, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/users/{{userId}}/accountdata", get_account_data, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/users/{{userId}}/pushers", get_pushers, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/user/{{userId}}/redact", post_redact, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/user/redact_status/{{redactId}}", get_redact_status,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/send_server_notice", post_server_notice, auth=AUTH_ADMIN),
    Endpoint("PUT", f"{V1}/send_server_notice/{{txnId}}", put_server_notice,
             auth=AUTH_ADMIN),
)
