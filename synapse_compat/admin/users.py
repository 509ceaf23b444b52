"""Synapse's user admin API: list, query, create or modify, deactivate, reset
password, admin flag, whois, devices, joined rooms, memberships, invite and
join counts, login as, username check, lookups by external ID and 3PID.

Endpoints parse and serialise; ``homeserver/admin/users.py`` holds the rules.
Every route here is AUTH_ADMIN: the router has checked the caller is a server
admin before the function runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.admin.users import (
    USER_TYPES,
    UserChanges,
    admin_device,
    parse_external_ids,
    parse_threepids,
)
from homeserver.api.client.devices import parse_device_list, parse_display_name
from homeserver.errors import Codes, MatrixError, bad_json
from homeserver.http.parse import get_bool, get_int, query_bool, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_ADMIN, Endpoint
from homeserver.storage.admin_users import USER_ORDER_COLUMNS, UserListQuery
from synapse_compat.admin.paging import body_bool, body_str, non_negative, order_and_dir

if TYPE_CHECKING:
    from homeserver.admin.users import AdminUsers

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
MAX_PASSWORD_LEN = 512


@dataclass(frozen=True)
class UsersApi:
    users: "AdminUsers"


def parse_user_changes(body: dict[str, Any]) -> UserChanges:
    password = body.get("password")
    if password is not None and (not isinstance(password, str)
                                 or len(password) > MAX_PASSWORD_LEN):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid password")
    threepids = body.get("threepids")
    user_type = body.get("user_type")
    if user_type not in USER_TYPES:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user type")
    displayname = body_str(body, "displayname", 256)
    return UserChanges(
        password=password,
        logout_devices=body_bool(body, "logout_devices", True),
        displayname=displayname,
        avatar_url=body_str(body, "avatar_url"),
        threepids=None if threepids is None else parse_threepids(threepids),
        admin=body_bool(body, "admin"),
        deactivated=body_bool(body, "deactivated"),
        user_type=user_type,
        set_user_type="user_type" in body,
        external_ids=None if body.get("external_ids") is None
        else parse_external_ids(body["external_ids"]))


async def get_users(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v2/users"""
    # v2: deactivated=true includes deactivated users (left out by default)
    deactivated = None if query_bool(req.args, "deactivated", False) else False
    return await _list_users(api, req, deactivated)


async def get_users_v3(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v3/users"""
    # v3: deactivated=true only them, false none of them, absent both
    return await _list_users(api, req, query_bool(req.args, "deactivated", None))


async def _list_users(api: UsersApi, req: HttpRequest,
                      deactivated: bool | None) -> tuple[int, Any]:
    start = non_negative(req.args, "from", 0)
    limit = non_negative(req.args, "limit", 100)
    order_by, backwards = order_and_dir(req.args, USER_ORDER_COLUMNS, "name")
    admins = query_bool(req.args, "admins", None)
    query = UserListQuery(start=start, limit=limit,
                          guests=query_bool(req.args, "guests", True),
                          deactivated=deactivated,
                          admins=admins, name=query_str(req.args, "name", None),
                          user_id=query_str(req.args, "user_id", None),
                          order_by=order_by, backwards=backwards)
    rows, total = await api.users.list_users(query)
    body: dict[str, Any] = {"users": [r.to_admin() for r in rows], "total": total}
    if start + len(rows) < total and rows:
        body["next_token"] = str(start + len(rows))
    return 200, body


async def get_user(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v2/users/{userId}"""
    return 200, await api.users.user_details(req.params["userId"])


async def put_user(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_synapse/admin/v2/users/{userId}"""
    target = req.params["userId"]
    changes = parse_user_changes(req.json())
    created = await api.users.upsert_user(req.user_id, target, changes)
    return (201 if created else 200), await api.users.user_details(target)


async def post_deactivate(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/deactivate/{userId}"""
    body = req.json(allow_empty=True)
    erase = body_bool(body, "erase", False)
    unbound = await api.users.deactivate(req.user_id, req.params["userId"], bool(erase))
    return 200, {"id_server_unbind_result": unbound}


async def post_reset_password(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/reset_password/{userId}"""
    body = req.json()
    new_password = body.get("new_password")
    if new_password is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: new_password")
    if not isinstance(new_password, str) or len(new_password) > MAX_PASSWORD_LEN:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid password")
    logout = body_bool(body, "logout_devices", True)
    await api.users.reset_password(req.user_id, req.params["userId"], new_password,
                                   bool(logout))
    return 200, {}


async def get_user_admin(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/users/{userId}/admin"""
    row = await api.users.require_user(req.params["userId"])
    return 200, {"admin": row.admin}


async def put_user_admin(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_synapse/admin/v1/users/{userId}/admin"""
    flag = get_bool(req.json(), "admin")
    await api.users.set_admin(req.user_id, req.params["userId"], flag)
    return 200, {}


async def get_whois(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/whois/{userId}"""
    target = req.params["userId"]
    devices = await api.users.devices(target)
    out: dict[str, Any] = {}
    for device in devices:
        connections = []
        if device.last_seen_ts is not None:
            connections.append({"ip": device.last_seen_ip, "last_seen": device.last_seen_ts,
                                "user_agent": device.last_seen_user_agent})
        out[device.device_id] = {"sessions": [{"connections": connections}]}
    return 200, {"user_id": target, "devices": out}


async def get_devices(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v2/users/{userId}/devices"""
    devices = await api.users.devices(req.params["userId"])
    return 200, {"devices": [admin_device(d) for d in devices], "total": len(devices)}


async def get_device(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}"""
    device = await api.users.device(req.params["userId"], req.params["deviceId"])
    return 200, admin_device(device)


async def put_device(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_synapse/admin/v2/users/{userId}/devices/{deviceId}"""
    name = parse_display_name(req.json())
    await api.users.rename_device(req.user_id, req.params["userId"], req.params["deviceId"],
                                  name)
    return 200, {}


async def delete_device(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}"""
    # deleting a device that is not there succeeds, as on Synapse
    await api.users.delete_devices(req.user_id, req.params["userId"], [req.params["deviceId"]])
    return 200, {}


async def post_delete_devices(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v2/users/{userId}/delete_devices"""
    devices = parse_device_list(req.json())
    await api.users.delete_devices(req.user_id, req.params["userId"], devices)
    return 200, {}


async def post_device(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v2/users/{userId}/devices"""
    device_id = req.json().get("device_id")
    if not isinstance(device_id, str) or not 0 < len(device_id) <= 255 \
            or not device_id.isprintable():
        raise MatrixError(400, Codes.INVALID_PARAM, "'device_id' must be a non-empty string")
    await api.users.create_device(req.user_id, req.params["userId"], device_id)
    return 200, {}


async def post_allow_cross_signing_replacement(api: UsersApi,
                                               req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/users/{userId}/_allow_cross_signing_replacement_without_uia"""
    until = await api.users.allow_cross_signing_replacement(req.user_id, req.params["userId"])
    return 200, {"updatable_without_uia_before_ms": until}


async def get_joined_rooms(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/users/{userId}/joined_rooms"""
    rooms = await api.users.joined_rooms(req.params["userId"])
    return 200, {"joined_rooms": rooms, "total": len(rooms)}


async def post_login_as(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """POST /_synapse/admin/v1/users/{userId}/login"""
    body = req.json(allow_empty=True)
    valid_until_ms = get_int(body, "valid_until_ms", None)
    if valid_until_ms is not None and valid_until_ms < api.users.ctx.now_ms():
        raise MatrixError(400, Codes.INVALID_PARAM, "'valid_until_ms' is in the past")
    token = await api.users.login_as(req.user_id, req.params["userId"], valid_until_ms)
    return 200, {"access_token": token}


async def get_username_available(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/username_available"""
    username = query_str(req.args, "username")
    if not isinstance(username, str):
        raise bad_json("username must be a string")
    await api.users.username_available(username.lower())
    return 200, {"available": True}


async def get_user_by_external_id(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/auth_providers/{provider}/users/{externalId}"""
    user_id = await api.users.user_by_external_id(req.params["provider"],
                                                  req.params["externalId"])
    return 200, {"user_id": user_id}


def _from_ts(req: HttpRequest) -> int:
    if b"from_ts" not in req.args:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing integer query parameter 'from_ts'")
    return non_negative(req.args, "from_ts", 0)


async def get_memberships(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/users/{userId}/memberships"""
    return 200, {"memberships": await api.users.memberships(req.params["userId"])}


async def get_sent_invite_count(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/users/{userId}/sent_invite_count"""
    count = await api.users.sent_invite_count(req.params["userId"], _from_ts(req))
    return 200, {"invite_count": count}


async def get_cumulative_joined_room_count(api: UsersApi,
                                           req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/users/{userId}/cumulative_joined_room_count"""
    count = await api.users.cumulative_joined_room_count(req.params["userId"], _from_ts(req))
    return 200, {"cumulative_joined_room_count": count}


async def get_user_by_threepid(api: UsersApi, req: HttpRequest) -> tuple[int, Any]:
    """GET /_synapse/admin/v1/threepid/{medium}/users/{address}"""
    user_id = await api.users.user_by_threepid(req.params["medium"], req.params["address"])
    return 200, {"user_id": user_id}


ENDPOINTS = (
    Endpoint("GET", f"{V2}/users", get_users, auth=AUTH_ADMIN),
    Endpoint("GET", "/_synapse/admin/v3/users", get_users_v3, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V2}/users/{{userId}}", get_user, auth=AUTH_ADMIN),
    Endpoint("PUT", f"{V2}/users/{{userId}}", put_user, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/deactivate/{{userId}}", post_deactivate, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/reset_password/{{userId}}", post_reset_password, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/users/{{userId}}/admin", get_user_admin, auth=AUTH_ADMIN),
    Endpoint("PUT", f"{V1}/users/{{userId}}/admin", put_user_admin, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/whois/{{userId}}", get_whois, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V2}/users/{{userId}}/devices", get_devices, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V2}/users/{{userId}}/devices", post_device, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V2}/users/{{userId}}/devices/{{deviceId}}", get_device, auth=AUTH_ADMIN),
    Endpoint("PUT", f"{V2}/users/{{userId}}/devices/{{deviceId}}", put_device, auth=AUTH_ADMIN),
    Endpoint("DELETE", f"{V2}/users/{{userId}}/devices/{{deviceId}}", delete_device,
             auth=AUTH_ADMIN),
    Endpoint("POST", f"{V2}/users/{{userId}}/delete_devices", post_delete_devices,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/users/{{userId}}/joined_rooms", get_joined_rooms, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/users/{{userId}}/login", post_login_as, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/username_available", get_username_available, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/auth_providers/{{provider}}/users/{{externalId}}",
             get_user_by_external_id, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/threepid/{{medium}}/users/{{address}}", get_user_by_threepid,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/users/{{userId}}/memberships", get_memberships, auth=AUTH_ADMIN),
    Endpoint("POST", f"{V1}/users/{{userId}}/_allow_cross_signing_replacement_without_uia",
             post_allow_cross_signing_replacement, auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/users/{{userId}}/sent_invite_count", get_sent_invite_count,
             auth=AUTH_ADMIN),
    Endpoint("GET", f"{V1}/users/{{userId}}/cumulative_joined_room_count",
             get_cumulative_joined_room_count, auth=AUTH_ADMIN),
)
