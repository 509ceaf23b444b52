"""Event writers: which process writes a room's events (docs/scale-out.md).

With ``stream_writers: {events: [writer1, writer2]}`` the rooms are sharded
over those processes by a stable hash of the room ID (SHA-256, read as a
little-endian integer, modulo the number of writers: Synapse's
``ShardedWorkerHandlingConfig``), so every process agrees on a room's writer
without asking anyone, and "one writer per room" (``rooms/creator.py``'s
per-room lock) holds across processes.

A client's request that writes an event into a room (a send, a state event,
a membership change, a redaction) and arrives on a process that is not the
room's writer is forwarded over HTTP to the writer (``forward.py``), before
any handler runs: the writer's ``EventCreator`` makes the event, its checks,
rate limits, errors and transaction IDs are the ones the client sees (a
retry with the same transaction ID, through any process, reaches the same
writer and the same event).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from urllib.parse import unquote

# POST /_matrix/client/{version}/rooms/{roomId}/{action}: membership
_MEMBERSHIP = frozenset({"join", "invite", "leave", "kick", "ban", "unban"})


def room_writer(room_id: str, writers: Sequence[str]) -> str:
    """The process that writes ``room_id``'s events."""
    digest = hashlib.sha256(room_id.encode("utf-8")).digest()
    return writers[int.from_bytes(digest, byteorder="little") % len(writers)]


def shard_owner(key: str, instances: Sequence[str]) -> str:
    """The process of ``instances`` that handles ``key`` (a destination
    server for the federation senders, a user ID for the pushers): the same
    stable hash as the rooms' writers."""
    return room_writer(key, instances)


def alias_write(method: bytes, path: bytes) -> str | None:
    """The alias of a ``POST /join/{alias}`` or ``/knock/{alias}``: the
    process that serves it resolves the alias, then hands the request to the
    room's writer (``forward.py``)."""
    if method != b"POST":
        return None
    parts = path.split(b"/")
    if len(parts) != 6 or parts[1] != b"_matrix" or parts[2] != b"client" \
            or parts[4] not in (b"join", b"knock"):
        return None
    alias = unquote(parts[5].decode("ascii", "replace"))
    return alias if alias.startswith("#") else None


def event_write_room(method: bytes, path: bytes) -> str | None:
    """The room whose events the request ``method path`` writes, if it is a
    client request that writes one there (None otherwise, or when the room
    is named by an alias: those are resolved where they land)."""
    if method not in (b"PUT", b"POST"):
        return None
    parts = path.split(b"/")
    # ['', '_matrix', 'client', version, first, room, action, ...]
    if len(parts) < 6 or parts[1] != b"_matrix" or parts[2] != b"client":
        return None
    first = parts[4]
    room = unquote(parts[5].decode("ascii", "replace"))
    if first in (b"join", b"knock") and method == b"POST" and len(parts) == 6:
        return room if room.startswith("!") else None
    if first != b"rooms" or len(parts) < 7 or not room.startswith("!"):
        return None
    action = parts[6].decode("ascii", "replace")
    if action in ("send", "state", "redact"):
        return room
    if action in _MEMBERSHIP and method == b"POST" and len(parts) == 7:
        return room
    return None
