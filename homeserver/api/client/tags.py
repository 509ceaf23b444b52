"""Room tags: a user's labels on a room (client-server API, "Room Tagging").

Tags live in the user's room account data as one ``m.tag`` item,
``{"tags": {name: {"order": 0.25, ...}}}``, the way Synapse keeps them: every
write goes through the account data store, so it takes a position on the
global stream and the user's /sync shows the new ``m.tag`` in the room's
``account_data`` (and wakes their waiting syncs) with no extra plumbing.

Adding or removing one tag rewrites the whole ``m.tag`` item, a
read-modify-write: writes for the same (user, room) are serialised here so
that two tags added at once are both kept (one process owns a user's
writes; across processes the last write of the item wins, as on Synapse).

Checks: only the user may read or change their tags (403); a tag name is at
most 255 bytes (the spec's limit); the tag body is a JSON object whose
``order``, when present, is a number in [0, 1] (400 M_INVALID_PARAM).
Removing a tag the room does not have is not an error (Synapse: 200).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from homeserver.accounts.identifiers import is_valid_room_id
from homeserver.errors import forbidden, invalid_param
from homeserver.http.parse import require_object
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router

if TYPE_CHECKING:
    from homeserver.server import HomeServer
    from homeserver.storage.account_data import AccountDataStore

CLIENT_V3 = "/_matrix/client/v3"
TAG_TYPE = "m.tag"
MAX_TAG_BYTES = 255


def check_tag_body(body: dict[str, Any]) -> None:
    """``order`` is a number from 0 to 1 when given (tag.yaml)."""
    if "order" not in body:
        return
    order = body["order"]
    if isinstance(order, bool) or not isinstance(order, (int, float)) or not 0 <= order <= 1:
        raise invalid_param("'order' must be a number between 0 and 1")


def tags_of(content: dict[str, Any] | None) -> dict[str, Any]:
    """The tags of a stored ``m.tag`` content (anything malformed reads as none)."""
    tags = content.get("tags") if content is not None else None
    return dict(tags) if isinstance(tags, dict) else {}


class Tags:
    """What the tag endpoints use: the account data store, and the locks that
    serialise each (user, room)'s ``m.tag`` read-modify-writes."""

    def __init__(self, store: "AccountDataStore") -> None:
        self.store = store
        self._locks: dict[tuple[str, str], defer.DeferredLock] = {}

    async def change(self, user_id: str, room_id: str, tag: str,
                     content: dict[str, Any] | None) -> None:
        """Set ``tag`` to ``content``, or remove it (None)."""
        key = (user_id, room_id)
        lock = self._locks.setdefault(key, defer.DeferredLock())
        await lock.acquire()
        try:
            tags = tags_of(await self.store.get_room_account_data(user_id, room_id, TAG_TYPE))
            if content is None:
                if tag not in tags:
                    return  # nothing to change, nothing to tell the user's devices
                del tags[tag]
            else:
                tags[tag] = content
            await self.store.put_room_account_data(user_id, room_id, TAG_TYPE,
                                                   {"tags": tags})
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(key, None)


def check_own(req: HttpRequest, verb: str) -> str:
    if req.params["userId"] != req.user_id:
        raise forbidden(f"Cannot {verb} tags for other users.")
    room_id: str = req.params["roomId"]
    if not is_valid_room_id(room_id):
        raise invalid_param(f"{room_id} is not a valid room ID")
    return room_id


def tag_of(req: HttpRequest) -> str:
    tag: str = req.params["tag"]
    if len(tag.encode("utf-8")) > MAX_TAG_BYTES:
        raise invalid_param(f"Tag names may not be longer than {MAX_TAG_BYTES} bytes")
    return tag


async def get_tags(tags: Tags, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags"""
    room_id = check_own(req, "get")
    content = await tags.store.get_room_account_data(req.user_id, room_id, TAG_TYPE)
    return 200, {"tags": tags_of(content)}


async def put_tag(tags: Tags, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
    room_id = check_own(req, "add")
    tag = tag_of(req)
    body = require_object(req.json())
    check_tag_body(body)
    await tags.change(req.user_id, room_id, tag, body)
    return 200, {}


async def delete_tag(tags: Tags, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
    room_id = check_own(req, "remove")
    await tags.change(req.user_id, room_id, tag_of(req), None)
    return 200, {}


_BASE = f"{CLIENT_V3}/user/{{userId}}/rooms/{{roomId}}/tags"
ENDPOINTS = (
    Endpoint("GET", _BASE, get_tags),
    Endpoint("PUT", f"{_BASE}/{{tag}}", put_tag),
    Endpoint("DELETE", f"{_BASE}/{{tag}}", delete_tag),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(Tags(hs.stores.account_data), ENDPOINTS)
