"""Device management: list, inspect, rename and delete a user's own devices;
and ``/admin/whois``, a user's devices with where they were last seen.

Deleting devices logs them out (their access and refresh tokens go with
them) and needs user-interactive auth first, as the spec's security
considerations ask: a stolen access token alone must not be enough to log
the real user out everywhere. As on Synapse, a user cleaning up several
devices in a row is asked once per ``ui_auth.session_timeout`` (if set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.api.client.ui_auth import validate_user_via_ui_auth
from homeserver.errors import Codes, MatrixError, bad_json, missing_param, not_found
from homeserver.http.parse import get_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.accounts.uia import UiAuth
    from homeserver.context import ServerContext
    from homeserver.server import HomeServer
    from homeserver.storage.devices import DeviceStore
    from homeserver.storage.users import UserStore

CLIENT_V3 = "/_matrix/client/v3"

# Synapse's limit; display names are shown to other users' clients.
MAX_DEVICE_DISPLAY_NAME_LEN = 100


def parse_display_name(body: dict[str, Any]) -> str | None:
    """The new display name of a device update; None leaves it unchanged."""
    name: str | None = get_str(body, "display_name", None)
    if name is not None:
        if len(name) > MAX_DEVICE_DISPLAY_NAME_LEN:
            raise MatrixError(400, Codes.TOO_LARGE, "Device display name is too long "
                              f"(max {MAX_DEVICE_DISPLAY_NAME_LEN})")
    return name


def parse_device_list(body: dict[str, Any]) -> list[str]:
    """The ``devices`` of a delete_devices body: a list of device ID strings."""
    devices = body.get("devices")
    if devices is None:
        raise missing_param("devices")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise bad_json("'devices' must be a list of strings")
    return list(dict.fromkeys(devices))


@dataclass(frozen=True)
class Devices:
    """What the device endpoints use: the device store, and user-interactive
    auth (deleting devices asks for it)."""

    store: "DeviceStore"
    ui_auth: "UiAuth"
    # whois: who is a server admin, and which users are ours
    users: "UserStore"
    ctx: "ServerContext"


async def get_devices(devices: Devices, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/devices"""
    found = await devices.store.get_devices(req.user_id)
    return 200, {"devices": [d.to_client() for d in found]}


async def get_device(devices: Devices, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/devices/{deviceId}"""
    device = await devices.store.get_device(req.user_id, req.params["deviceId"])
    if device is None:
        raise not_found("No device found")
    return 200, device.to_client()


async def put_device(devices: Devices, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/devices/{deviceId}"""
    name = parse_display_name(req.json())
    device_id = req.params["deviceId"]
    if name is None:
        found = await devices.store.get_device(req.user_id, device_id) is not None
    else:
        found = await devices.store.set_display_name(req.user_id, device_id, name)
    if not found:
        raise not_found("Unknown device")
    return 200, {}


async def delete_device(devices: Devices, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/devices/{deviceId}"""
    assert req.requester is not None
    # Older clients send no body at all; that is the same as {}.
    req.json(allow_empty=True)
    await validate_user_via_ui_auth(devices.ui_auth, req, req.requester,
                                    "remove a device from your account",
                                    can_skip_ui_auth=True)
    device_id = req.params["deviceId"]
    if await devices.store.get_device(req.user_id, device_id) is None:
        raise not_found("Unknown device")
    await devices.store.delete_devices(req.user_id, [device_id])
    return 200, {}


async def delete_devices(devices: Devices, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/delete_devices"""
    assert req.requester is not None
    # Refuse a malformed list before asking for a password.
    parse_device_list(req.json(allow_empty=True))
    body = await validate_user_via_ui_auth(devices.ui_auth, req, req.requester,
                                           "remove device(s) from your account",
                                           can_skip_ui_auth=True)
    # Unknown device IDs are skipped, as Synapse does: the goal state holds.
    await devices.store.delete_devices(req.user_id, parse_device_list(body))
    return 200, {}


async def get_whois(devices: Devices, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/admin/whois/{userId}

    A server admin may ask about anyone, a user about themselves (as
    Synapse). Each device is one session, its one connection where we last
    saw it (we keep the last address per device, not a history)."""
    target = req.params["userId"]
    if target != req.user_id:
        info = await devices.users.get_user(req.user_id)
        if info is None or not info.admin:
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a server admin")
    if not devices.ctx.is_mine(target):
        raise MatrixError(400, Codes.INVALID_PARAM, "Can only whois a local user")
    out: dict[str, Any] = {}
    for device in await devices.store.get_devices(target):
        connections = []
        if device.last_seen_ts is not None:
            connections.append({"ip": device.last_seen_ip, "last_seen": device.last_seen_ts,
                                "user_agent": device.last_seen_user_agent})
        out[device.device_id] = {"sessions": [{"connections": connections}]}
    return 200, {"user_id": target, "devices": out}


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V3}/admin/whois/{{userId}}", get_whois),
    Endpoint("GET", f"{CLIENT_V3}/devices", get_devices, allow_guest=True),
    Endpoint("GET", f"{CLIENT_V3}/devices/{{deviceId}}", get_device, allow_guest=True),
    Endpoint("PUT", f"{CLIENT_V3}/devices/{{deviceId}}", put_device, allow_guest=True),
    Endpoint("DELETE", f"{CLIENT_V3}/devices/{{deviceId}}", delete_device),
    Endpoint("POST", f"{CLIENT_V3}/delete_devices", delete_devices),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(Devices(hs.stores.devices, hs.ui_auth, hs.stores.users, hs.ctx), ENDPOINTS)
