"""Server-side key backup endpoints: /room_keys/version and /room_keys/keys.

Thin: parsing, the replace rules and the version checks are in
e2e/backup.py, the SQL in storage/key_backup.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.e2e import backup
from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer
    from homeserver.storage.key_backup import KeyBackupStore

ROOM_KEYS = "/_matrix/client/v3/room_keys"


async def create_version(store: "KeyBackupStore", req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/room_keys/version"""
    algorithm, auth_data = backup.parse_version_body(req.json())
    version = await store.create_version(req.user_id, algorithm, auth_data)
    return 200, {"version": str(version)}


async def get_current_version(store: "KeyBackupStore", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/room_keys/version"""
    info = await store.get_version(req.user_id, None)
    if info is None:
        raise MatrixError(404, Codes.NOT_FOUND, "No current backup version")
    return 200, backup.version_to_client(info)


async def get_version(store: "KeyBackupStore", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/room_keys/version/{version}"""
    info = await backup.live_version(store, req.user_id, req.params["version"])
    return 200, backup.version_to_client(info)


async def put_version(store: "KeyBackupStore", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/room_keys/version/{version}"""
    body = req.json()
    algorithm, auth_data = backup.parse_version_body(body)
    raw = req.params["version"]
    if "version" in body and body["version"] != raw:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "The version in the body does not match the path")
    info = await backup.live_version(store, req.user_id, raw)
    if algorithm != info.algorithm:
        raise MatrixError(400, Codes.INVALID_PARAM, "Algorithm does not match")
    if not await store.update_auth_data(req.user_id, info.version, auth_data):
        raise backup.unknown_version()
    return 200, {}


async def delete_version(store: "KeyBackupStore", req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/room_keys/version/{version}"""
    version = backup.parse_version(req.params["version"])
    if version is None or not await store.delete_version(req.user_id, version):
        raise backup.unknown_version()
    return 200, {}


def version_arg(req: HttpRequest) -> str:
    raw: str = query_str(req.args, "version")
    return raw


async def get_keys(store: "KeyBackupStore", req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]"""
    info = await backup.live_version(store, req.user_id, version_arg(req))
    room_id = req.params.get("roomId")
    session_id = req.params.get("sessionId")
    rows = await store.get_keys(req.user_id, info.version, room_id, session_id)
    if session_id is not None:
        if not rows:
            raise MatrixError(404, Codes.NOT_FOUND, "No room_keys found")
        return 200, rows[0][2].to_client()
    rooms = backup.keys_to_client(rows)
    if room_id is not None:
        return 200, rooms.get(room_id, {"sessions": {}})
    return 200, {"rooms": rooms}


async def put_keys(store: "KeyBackupStore", req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]"""
    raw_version = version_arg(req)
    body = req.json()
    room_id = req.params.get("roomId")
    session_id = req.params.get("sessionId")
    if session_id is not None and room_id is not None:
        keys = [(room_id, session_id, backup.parse_key(body))]
    elif room_id is not None:
        keys = backup.parse_sessions(room_id, body)
    else:
        keys = backup.parse_rooms(body)
    info = await backup.put_keys(store, req.user_id, raw_version, keys)
    return 200, backup.counts_to_client(info)


async def delete_keys(store: "KeyBackupStore", req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]"""
    version = backup.parse_version(version_arg(req))
    info = None if version is None else await store.delete_keys(
        req.user_id, version, req.params.get("roomId"), req.params.get("sessionId"))
    if info is None:
        raise backup.unknown_version()
    return 200, backup.counts_to_client(info)


# the key routes: all of a user's keys, a room's, or one session's
_KEY_SUFFIXES = ("", "/{roomId}", "/{roomId}/{sessionId}")
ENDPOINTS = (
    Endpoint("POST", f"{ROOM_KEYS}/version", create_version),
    Endpoint("GET", f"{ROOM_KEYS}/version", get_current_version),
    Endpoint("GET", f"{ROOM_KEYS}/version/{{version}}", get_version),
    Endpoint("PUT", f"{ROOM_KEYS}/version/{{version}}", put_version),
    Endpoint("DELETE", f"{ROOM_KEYS}/version/{{version}}", delete_version),
    *(Endpoint(method, f"{ROOM_KEYS}/keys{suffix}", function)
      for suffix in _KEY_SUFFIXES
      for method, function in (("GET", get_keys), ("PUT", put_keys), ("DELETE", delete_keys))),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    # the backup store is all these endpoints use
    router.add_endpoints(hs.stores.key_backup, ENDPOINTS)
