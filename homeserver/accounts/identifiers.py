"""The grammar of Matrix identifiers (user IDs, room IDs, server names)."""

from __future__ import annotations

import re

# Localparts of new users: the spec's historical grammar is broader, but new
# registrations are held to a-z 0-9 . _ = - / +.
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
_SERVER_NAME = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:\d{1,5})?")
# Existing IDs (from other servers) may use the historical printable-ASCII set.
_HISTORICAL_LOCALPART = re.compile(r"[\x21-\x39\x3b-\x7e]+")

MAX_USER_ID_LENGTH = 255


def is_valid_localpart(localpart: str) -> bool:
    return bool(_LOCALPART.fullmatch(localpart))


def is_valid_server_name(name: str) -> bool:
    return bool(_SERVER_NAME.fullmatch(name)) and len(name) <= 255


def parse_user_id(user_id: str) -> tuple[str, str] | None:
    """(localpart, server) of a syntactically valid user ID, else None."""
    if not isinstance(user_id, str) or len(user_id.encode("utf-8")) > MAX_USER_ID_LENGTH:
        return None
    if not user_id.startswith("@") or ":" not in user_id:
        return None
    localpart, server = user_id[1:].split(":", 1)
    if not localpart or not _HISTORICAL_LOCALPART.fullmatch(localpart):
        return None
    if not is_valid_server_name(server):
        return None
    return localpart, server


def is_valid_user_id(user_id: str) -> bool:
    return parse_user_id(user_id) is not None


def is_valid_room_id(room_id: str) -> bool:
    """Room IDs are opaque after the sigil; v12 ones have no server part."""
    return (isinstance(room_id, str) and room_id.startswith("!") and len(room_id) > 1
            and len(room_id.encode("utf-8")) <= 255 and not any(c.isspace() for c in room_id))
