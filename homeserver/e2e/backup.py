"""Server-side key backups (client-server API, "Server-side key backups").

The server stores what the client encrypted: per backup version an
``algorithm`` and its ``auth_data`` (public key, signatures), and per megolm
session an opaque ``session_data`` (both stored as the client sent them:
their shape is the algorithm's business) with the three numbers the server uses to
keep the better of two copies of one session:

1. a verified key beats an unverified one (``is_verified``);
2. then the lower ``first_message_index`` (it decrypts more messages);
3. then the lower ``forwarded_count`` (fewer hops, more trustworthy).

Only the current (latest) version takes keys; a client writing to another
gets 403 M_WRONG_ROOM_KEYS_VERSION with ``current_version``, so it notices a
backup reset by another device. Reads and deletes work on any live version.
Versions are strings on the wire and integers here; a version string that
is not a number names no backup (404).

The functions that read the store take it (``KeyBackupStore``) as their
first argument: nothing else of the server is needed here.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.storage.key_backup import (
    BackupVersion,
    KeyBackupStore,
    KeyRow,
    RoomKey,
    WrongVersion,
)

# The spec's errcode for keys sent to a backup version that is not current.
WRONG_ROOM_KEYS_VERSION = Codes.WRONG_ROOM_KEYS_VERSION

# Bounds on what one request may store (Synapse has none; a megolm session's
# backup is ~500 bytes, the request body limit bounds the rest).
MAX_ID_LEN = 255


def should_replace(stored: RoomKey, new: RoomKey) -> bool:
    """The spec's rule: does ``new`` beat the ``stored`` copy of a session?"""
    if stored.is_verified != new.is_verified:
        return new.is_verified
    if stored.first_message_index != new.first_message_index:
        return new.first_message_index < stored.first_message_index
    return new.forwarded_count < stored.forwarded_count


def parse_version(raw: str | None) -> int | None:
    """A version string as an integer; None if it cannot name a backup."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


def version_to_client(info: BackupVersion) -> dict[str, Any]:
    return {"algorithm": info.algorithm, "auth_data": info.auth_data,
            "count": info.count, "etag": str(info.etag), "version": str(info.version)}


def counts_to_client(info: BackupVersion) -> dict[str, Any]:
    return {"etag": str(info.etag), "count": info.count}


def unknown_version() -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, "Unknown backup version")


def parse_version_body(body: dict[str, Any]) -> tuple[str, Any]:
    """(algorithm, auth_data) of a version create/update body."""
    algorithm = body.get("algorithm")
    if not isinstance(algorithm, str) or not algorithm or len(algorithm) > MAX_ID_LEN:
        raise MatrixError(400, Codes.BAD_JSON if algorithm is not None
                          else Codes.MISSING_PARAM, "'algorithm' must be a string")
    # auth_data is the algorithm's business (an object for
    # m.megolm_backup.v1.curve25519-aes-sha2, an opaque string for others):
    # stored and served as given, as Synapse does
    if "auth_data" not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, "'auth_data' is required")
    return algorithm, body["auth_data"]


def parse_key(value: Any) -> RoomKey:
    """One KeyBackupData object."""
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, "Key backup data must be an object")
    fmi = value.get("first_message_index")
    fc = value.get("forwarded_count")
    verified = value.get("is_verified")
    data = value.get("session_data")
    for name, v in (("first_message_index", fmi), ("forwarded_count", fc)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**53:
            raise MatrixError(400, Codes.BAD_JSON, f"'{name}' must be a non-negative integer")
    if not isinstance(verified, bool):
        raise MatrixError(400, Codes.BAD_JSON, "'is_verified' must be a boolean")
    # opaque to the server (an object for the spec's algorithm): kept as given
    if "session_data" not in value:
        raise MatrixError(400, Codes.BAD_JSON, "'session_data' is required")
    assert isinstance(fmi, int) and isinstance(fc, int)
    return RoomKey(fmi, fc, verified, data)


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        raise MatrixError(400, Codes.BAD_JSON, f"Invalid {what}")
    return value


def parse_sessions(room_id: str, body: Any) -> list[KeyRow]:
    """The keys of a RoomKeyBackup object ({"sessions": {id: data}})."""
    sessions = body.get("sessions") if isinstance(body, dict) else None
    if not isinstance(sessions, dict):
        raise MatrixError(400, Codes.BAD_JSON, "'sessions' must be an object")
    return [(room_id, _check_id(sid, "session ID"), parse_key(data))
            for sid, data in sessions.items()]


def parse_rooms(body: dict[str, Any]) -> list[KeyRow]:
    """The keys of a {"rooms": {room: RoomKeyBackup}} body."""
    rooms = body.get("rooms")
    if not isinstance(rooms, dict):
        raise MatrixError(400, Codes.BAD_JSON, "'rooms' must be an object")
    keys: list[KeyRow] = []
    for room_id, room in rooms.items():
        keys.extend(parse_sessions(_check_id(room_id, "room ID"), room))
    return keys


async def put_keys(store: KeyBackupStore, user_id: str, raw_version: str,
                   keys: list[KeyRow]) -> BackupVersion:
    """Store keys in the current backup version (the spec's replace rules)."""
    version = parse_version(raw_version)
    try:
        if version is None:
            raise WrongVersion(await _current(store, user_id))
        return await store.put_keys(user_id, version, keys, should_replace)
    except WrongVersion as e:
        if e.current is None:
            raise unknown_version() from None
        raise MatrixError(403, WRONG_ROOM_KEYS_VERSION, "Wrong backup version.",
                          current_version=str(e.current)) from None


async def _current(store: KeyBackupStore, user_id: str) -> int | None:
    info = await store.get_version(user_id, None)
    return info.version if info is not None else None


async def live_version(store: KeyBackupStore, user_id: str,
                       raw_version: str) -> BackupVersion:
    """A live backup version of the user, else 404."""
    version = parse_version(raw_version)
    info = None if version is None else await store.get_version(user_id, version)
    if info is None:
        raise unknown_version()
    return info


def keys_to_client(rows: list[KeyRow]) -> dict[str, Any]:
    rooms: dict[str, Any] = {}
    for room_id, session_id, key in rows:
        rooms.setdefault(room_id, {"sessions": {}})["sessions"][session_id] = key.to_client()
    return rooms
