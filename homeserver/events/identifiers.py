"""The grammar of the identifiers inside events, as federation must accept them.

appendices.md "Identifier Grammar". These checks are deliberately the
*receiving* side's: historical user IDs (any code point but ``:`` and NUL in
the localpart, even empty) must still be accepted over federation, so the
stricter rules for registering new users live in ``accounts/identifiers.py``.

Every identifier lands in a text column, and some text no column holds:
NUL (PostgreSQL's ``text`` refuses it; SQLite would keep it, and the two
engines would then disagree about the same event) and a lone UTF-16
surrogate (no UTF-8 form). ``is_storable_text`` says which; the PDU format
check (``validation.py``) and the EDU handlers refuse such values rather
than let an insert fail.

Event and room IDs per room version:
- v1, v2: ``$opaque:server``, assigned by the sending server.
- v3: ``$`` + unpadded standard base64 of the reference hash.
- v4+: ``$`` + unpadded URL-safe base64 of the reference hash.
- room IDs before v12: ``!opaque:server``; v12: ``!`` + the create event's
  reference hash in URL-safe unpadded base64 (its event ID with ``!`` for ``$``).
"""

from __future__ import annotations

import re
import secrets
import string

from homeserver.events.room_versions import EventIdFormat, RoomVersion

# Every identifier that travels in an event is at most 255 bytes of UTF-8.
MAX_ID_BYTES = 255

# server_name = hostname [ ":" port ]; hostname = IPv4 / "[" IPv6 "]" / dns-name
_SERVER_NAME = re.compile(
    r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.\-]{1,255})(?::[0-9]{1,5})?")
# A sha256 (32 bytes) is 43 characters of unpadded base64.
_HASH_ID_STANDARD = re.compile(r"[A-Za-z0-9+/]{43}")
_HASH_ID_URLSAFE = re.compile(r"[A-Za-z0-9_\-]{43}")
_OPAQUE_CHARS = string.ascii_letters + string.digits


def byte_length(s: str) -> int:
    return len(s.encode("utf-8"))


def is_storable_text(value: str) -> bool:
    """False for a string a text column cannot hold as it is: one with NUL
    or a lone surrogate (see the module docstring)."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_valid_server_name(name: str) -> bool:
    return isinstance(name, str) and bool(_SERVER_NAME.fullmatch(name))


def _split_domain(identifier: str, sigil: str) -> tuple[str, str] | None:
    """(localpart, server) of ``sigil + localpart + ':' + server``, else None.

    The localpart may hold any code point but ':' and NUL (historical grammar),
    so the first ':' ends it; the server name may carry a ':port'.
    """
    if not isinstance(identifier, str) or not identifier.startswith(sigil):
        return None
    if byte_length(identifier) > MAX_ID_BYTES:
        return None
    local, sep, server = identifier[1:].partition(":")
    if not sep or "\x00" in local or not is_valid_server_name(server):
        return None
    return local, server


def parse_user_id(user_id: str) -> tuple[str, str] | None:
    """(localpart, server) of a user ID federation must accept, else None."""
    return _split_domain(user_id, "@")


def is_valid_user_id(user_id: str) -> bool:
    return parse_user_id(user_id) is not None


def server_name_of(identifier: str) -> str:
    """The server part of ``@user:server``, ``$id:server``, ``!room:server``.

    Raises ``ValueError`` for identifiers without one (v3+ event IDs, v12 room IDs).
    """
    parsed = _split_domain(identifier, identifier[:1]) if identifier else None
    if parsed is None:
        raise ValueError(f"identifier has no server name: {identifier!r}")
    return parsed[1]


def is_valid_event_id(event_id: str, room_version: RoomVersion) -> bool:
    """Whether ``event_id`` has the shape event IDs have in ``room_version``."""
    if not isinstance(event_id, str) or not event_id.startswith("$"):
        return False
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.ASSIGNED:
        return _split_domain(event_id, "$") is not None
    pattern = _HASH_ID_STANDARD if fmt is EventIdFormat.REFERENCE_HASH_BASE64 else _HASH_ID_URLSAFE
    return bool(pattern.fullmatch(event_id[1:]))


def is_valid_room_id(room_id: str, room_version: RoomVersion) -> bool:
    """Whether ``room_id`` has the shape room IDs have in ``room_version``."""
    if not isinstance(room_id, str) or not room_id.startswith("!"):
        return False
    if room_version.room_id_from_create_event:
        return bool(_HASH_ID_URLSAFE.fullmatch(room_id[1:]))
    return _split_domain(room_id, "!") is not None


def generate_opaque_id(length: int = 18) -> str:
    """A random alphanumeric localpart (for v1/v2 event IDs and pre-v12 room IDs)."""
    return "".join(secrets.choice(_OPAQUE_CHARS) for _ in range(length))


def generate_assigned_event_id(server_name: str) -> str:
    """A fresh ``$opaque:server`` event ID for an event we create in a v1/v2 room."""
    return f"${generate_opaque_id()}:{server_name}"


def generate_room_id(server_name: str) -> str:
    """A fresh ``!opaque:server`` room ID for a room of version 1-11."""
    return f"!{generate_opaque_id()}:{server_name}"


def room_id_from_create_event_id(create_event_id: str) -> str:
    """The v12 room ID of the room whose create event has ``create_event_id``."""
    if not create_event_id.startswith("$"):
        raise ValueError(f"not an event ID: {create_event_id!r}")
    return "!" + create_event_id[1:]


def create_event_id_from_room_id(room_id: str) -> str:
    """The event ID of a v12 room's create event (the room ID with ``$`` for ``!``)."""
    if not room_id.startswith("!"):
        raise ValueError(f"not a room ID: {room_id!r}")
    return "$" + room_id[1:]
