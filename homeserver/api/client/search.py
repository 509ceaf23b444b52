"""Search: POST /search (messages) and POST /user_directory/search (people).

Thin: the bodies are parsed and checked here into ``RoomEventsSearch``;
the search itself is ``rooms/search.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import bad_json, invalid_param
from homeserver.http.parse import get_bool, get_int, get_object, get_str, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.rooms.access import RoomEventFilter
from homeserver.rooms.search import (
    DEFAULT_CONTEXT,
    DEFAULT_LIMIT,
    GROUP_KEYS,
    MAX_CONTEXT,
    MAX_LIMIT,
    BatchToken,
    EventContext,
    RoomEventsSearch,
    Searcher,
    search_user_directory,
)
from homeserver.storage.search import SEARCH_KEYS
from homeserver.sync.filter_schema import filter_problem

if TYPE_CHECKING:
    from homeserver.moderation.gate import ModerationGate
    from homeserver.server import HomeServer
    from homeserver.storage.user_directory import UserDirectoryStore

CLIENT_V3 = "/_matrix/client/v3"

# Synapse's cap on /user_directory/search
MAX_DIRECTORY_LIMIT = 50
MAX_TERM_CHARS = 1000


def _room_ids(body: dict[str, Any], key: str) -> tuple[str, ...] | None:
    value = body.get(key)
    if value is None:
        return None
    return tuple(v for v in value if isinstance(v, str))


def _bounded(body: dict[str, Any], key: str, default: int, maximum: int) -> int:
    value: int = get_int(body, key, default)
    if value < 0:
        raise invalid_param(f"'{key}' must not be negative")
    return min(value, maximum)


def parse_room_events(body: dict[str, Any]) -> RoomEventsSearch:
    """``search_categories.room_events`` of a /search body."""
    term: str = get_str(body, "search_term")
    if len(term) > MAX_TERM_CHARS:
        raise invalid_param("'search_term' is too long")
    keys = body.get("keys", list(SEARCH_KEYS))
    if not isinstance(keys, list) or not all(k in SEARCH_KEYS for k in keys):
        raise invalid_param(f"'keys' must be a list of {', '.join(SEARCH_KEYS)}")
    filter_json = get_object(body, "filter", {})
    problem = filter_problem({"room": {"timeline": filter_json}})
    if problem is not None:
        raise bad_json(f"Invalid filter: {problem.removeprefix('room.timeline.')}")
    event_filter = RoomEventFilter.from_json(filter_json)
    limit = event_filter.limit if event_filter.limit is not None else DEFAULT_LIMIT
    order_by = get_str(body, "order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise invalid_param("'order_by' must be 'rank' or 'recent'")
    context: EventContext | None = None
    context_json = get_object(body, "event_context", None)
    if context_json is not None:
        context = EventContext(
            before_limit=_bounded(context_json, "before_limit", DEFAULT_CONTEXT, MAX_CONTEXT),
            after_limit=_bounded(context_json, "after_limit", DEFAULT_CONTEXT, MAX_CONTEXT),
            include_profile=get_bool(context_json, "include_profile", False))
    group_by: list[str] = []
    groupings = get_object(body, "groupings", {})
    groups = groupings.get("group_by", [])
    if not isinstance(groups, list):
        raise bad_json("'group_by' must be a list")
    for group in groups:
        if not isinstance(group, dict) or group.get("key") not in GROUP_KEYS:
            raise invalid_param("'group_by' keys must be 'room_id' or 'sender'")
        group_by.append(group["key"])
    return RoomEventsSearch(
        term=term, keys=tuple(dict.fromkeys(keys)), event_filter=event_filter,
        rooms=_room_ids(filter_json, "rooms"),
        not_rooms=_room_ids(filter_json, "not_rooms") or (),
        limit=max(0, min(limit, MAX_LIMIT)), order_by=order_by, context=context,
        include_state=get_bool(body, "include_state", False),
        group_by=tuple(dict.fromkeys(group_by)))


@dataclass(frozen=True)
class Search:
    """What the search endpoints use: the message searcher, and the user
    directory's settings and store."""

    searcher: Searcher
    settings: dict[str, Any]
    user_directory: "UserDirectoryStore"
    # spam checker modules' check_username_for_spam (moderation/gate.py)
    gate: "ModerationGate | None" = None


async def post_search(search: Search, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/search"""
    assert req.requester is not None
    body = req.json()
    categories = get_object(body, "search_categories")
    room_events = get_object(categories, "room_events", None)
    if room_events is None:
        return 200, {"search_categories": {}}
    request = parse_room_events(room_events)
    text = query_str(req.args, "next_batch", None)
    token = BatchToken.decode(text, request.order_by) if text is not None else None
    result = await search.searcher.search_room_events(req.requester, request, token)
    return 200, {"search_categories": {"room_events": result}}


async def post_user_directory_search(search: Search, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/client/v3/user_directory/search"""
    body = req.json()
    term: str = get_str(body, "search_term")
    if len(term) > MAX_TERM_CHARS:
        raise invalid_param("'search_term' is too long")
    limit = get_int(body, "limit", DEFAULT_LIMIT)
    if limit < 0:
        raise invalid_param("'limit' must not be negative")
    return 200, await search_user_directory(search.settings, search.user_directory, req.user_id,
                                            term, min(limit, MAX_DIRECTORY_LIMIT), search.gate)


ENDPOINTS = (
    Endpoint("POST", f"{CLIENT_V3}/search", post_search),
    Endpoint("POST", f"{CLIENT_V3}/user_directory/search", post_user_directory_search),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(Search(hs.searcher, hs.config.user_directory, hs.stores.user_directory,
                                hs.moderation_gate), ENDPOINTS)
