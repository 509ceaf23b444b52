"""Space hierarchies: walking a space's ``m.space.child`` tree (client-server
API, "Spaces"; server-server API, "Spaces").

A space is a room whose ``m.room.create`` has ``type: m.space``; its
children are its ``m.space.child`` state events (state key: the child's
room ID; a child whose content has no non-empty ``via`` list of server
names is not a child). Children are ordered as the spec says: by their
``order`` string when valid (printable ASCII, at most 50 characters;
children without one come after), then by the event's ``origin_server_ts``,
then by room ID.

The client walk (GET /_matrix/client/v1/rooms/{roomId}/hierarchy) is depth
first from the requested room, as on Synapse: a stack of (room, via, depth),
each room visited once. A room is read from our own state when this server
is joined to it (local data wins over what other servers say, as the spec
asks); otherwise it is asked of the servers in its ``via`` list with the
federation ``/hierarchy`` endpoint, whose answer also summarises the room's
children, so a child that is not itself a space costs no second request.
Answers from other servers are cached for a few minutes (the spec asks for
it: a client pages through the same tree several times).

Who sees what. A user sees a room when they are joined or invited, or it is
``world_readable``, or its join rule lets them in or ask in (``public``,
``knock``, ``knock_restricted``), or it is ``restricted`` to a room they are
joined to; banned users never. The requested room itself must be one they
see, else 403 (as the spec lists). A server asking over federation sees a
room when one of its users is in it, or it is public, knockable or
world-readable, or restricted to a room one of its users is in; rooms it
cannot see are listed in ``inaccessible_children`` and are not asked about
again. ``allowed_room_ids`` (the rooms a restricted room admits members
of) travel between servers only.

The admin API's walk (``GET /_synapse/admin/v1/rooms/{roomId}/hierarchy``,
``as_admin``) sees every room this server holds, whatever the admin's
memberships, and asks no other server (as Synapse's): a child we do not
hold is left out.

Pagination: when a page is full (``limit`` rooms) the rest of the walk (the
stack and the rooms already visited) is kept in memory under an opaque
random token for a few minutes; ``from`` resumes it. The token is bound to
the user, the room, ``suggested_only`` and ``max_depth``: a request that
changes one of them is 400 M_INVALID_PARAM, as is an unknown or expired
token. One process keeps its own walks: behind several processes a client
must come back to the same one (sticky routing), as for other in-memory
sessions.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.events.identifiers import is_valid_server_name
from homeserver.events.model import Event
from homeserver.federation.client import FederationError, RequestFailed
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.client import FederationClient
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)

SPACE_CHILD = "m.space.child"
SPACE = "m.space"
# join rules under which anyone may join or ask to
OPEN_JOIN_RULES = frozenset({"public", "knock", "knock_restricted"})
RESTRICTED_JOIN_RULES = frozenset({"restricted", "knock_restricted"})
MAX_ORDER_LENGTH = 50
STRIPPED_FIELDS = ("type", "state_key", "content", "sender", "origin_server_ts")
# the children of one room that are walked (bounds what a page token holds)
MAX_CHILDREN = 1_000

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
DEFAULT_MAX_DEPTH = 50
MAX_MAX_DEPTH = 50
# how long a page token stays valid, and how many walks are kept at once
SESSION_LIFETIME_S = 5 * 60
MAX_SESSIONS = 10_000
# how long another server's answer is reused, and how many are kept
REMOTE_CACHE_S = 5 * 60
MAX_REMOTE_CACHE = 1_000
# the most servers of a child's "via" tried, and how long each may take
MAX_VIA_TRIED = 3
REMOTE_TIMEOUT_MS = 10_000

# the state a room summary is built from
SUMMARY_TYPES = ("m.room.create", "m.room.name", "m.room.topic", "m.room.avatar",
                 "m.room.canonical_alias", "m.room.join_rules",
                 "m.room.history_visibility", "m.room.guest_access", "m.room.encryption")


# -- pure helpers ------------------------------------------------------------------


def valid_via(content: dict[str, Any]) -> list[str] | None:
    """The ``via`` servers of an ``m.space.child`` content, or None when it is
    not a valid child (no non-empty list of server names)."""
    via = content.get("via")
    if not isinstance(via, list) or not via:
        return None
    servers = [s for s in via if isinstance(s, str) and is_valid_server_name(s)]
    return servers or None


def valid_order(content: dict[str, Any]) -> str | None:
    order = content.get("order")
    if (isinstance(order, str) and len(order) <= MAX_ORDER_LENGTH
            and all(0x20 <= ord(c) <= 0x7E for c in order)):
        return order
    return None


def child_sort_key(child: dict[str, Any]) -> tuple[bool, str, int, str]:
    """The spec's order of children (stripped ``m.space.child`` events)."""
    content = child.get("content") or {}
    order = valid_order(content) if isinstance(content, dict) else None
    ts = child.get("origin_server_ts")
    return (order is None, order or "", ts if isinstance(ts, int) else 0,
            str(child.get("state_key", "")))


def stripped_child(event: Event) -> dict[str, Any]:
    """An ``m.space.child`` event as ``children_state`` carries it."""
    return {"type": event.type, "state_key": event.state_key, "content": event.content,
            "sender": event.sender, "origin_server_ts": event.origin_server_ts}


def children_of(events: list[Any], suggested_only: bool) -> list[dict[str, Any]]:
    """The valid children among stripped ``m.space.child`` events, in order,
    with only the fields ``children_state`` has (another server may send more)."""
    out = []
    for child in events:
        if not isinstance(child, dict) or child.get("type") != SPACE_CHILD:
            continue
        content = child.get("content")
        if not isinstance(content, dict) or valid_via(content) is None:
            continue
        if not isinstance(child.get("state_key"), str) or not child["state_key"]:
            continue
        if suggested_only and content.get("suggested") is not True:
            continue
        out.append({k: child[k] for k in STRIPPED_FIELDS if k in child})
    out.sort(key=child_sort_key)
    return out[:MAX_CHILDREN]


def _str_field(event: Event | None, key: str) -> str | None:
    if event is None:
        return None
    value = event.content.get(key)
    return value if isinstance(value, str) else None


def allowed_room_ids(join_rules: Event | None) -> list[str]:
    """The rooms whose members a restricted room admits."""
    if join_rules is None:
        return []
    allow = join_rules.content.get("allow")
    if not isinstance(allow, list):
        return []
    return [a["room_id"] for a in allow if isinstance(a, dict)
            and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)]


def client_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A summary as a client sees it: ``allowed_room_ids`` is for servers."""
    return {k: v for k, v in entry.items() if k != "allowed_room_ids"}


def remote_is_accessible(entry: dict[str, Any], joined_rooms: set[str],
                         membership: str | None) -> bool:
    """Whether a user may see a room another server summarised (``membership``:
    theirs by our records, if any)."""
    if membership in ("join", "invite"):
        return True
    if membership == "ban":
        return False
    if entry.get("join_rule") in OPEN_JOIN_RULES or entry.get("world_readable") is True:
        return True
    allowed = entry.get("allowed_room_ids")
    return (entry.get("join_rule") in RESTRICTED_JOIN_RULES and isinstance(allowed, list)
            and any(r in joined_rooms for r in allowed if isinstance(r, str)))


# -- the walk ----------------------------------------------------------------------


@dataclass
class _LocalRoom:
    info: RoomInfo
    state: dict[str, Event]  # type -> event (the state keys are all "")
    children: list[Event]

    @property
    def join_rule(self) -> str:
        return _str_field(self.state.get("m.room.join_rules"), "join_rule") or "invite"

    @property
    def world_readable(self) -> bool:
        return _str_field(self.state.get("m.room.history_visibility"),
                          "history_visibility") == "world_readable"

    @property
    def room_type(self) -> str | None:
        return _str_field(self.state.get("m.room.create"), "type")


@dataclass
class _Walk:
    """A client walk in progress (what a page token resumes)."""

    user_id: str
    root: str
    suggested_only: bool
    max_depth: int
    # (room ID, via servers, depth); the next room is the last
    stack: list[tuple[str, list[str], int]]
    visited: set[str] = field(default_factory=set)
    # summaries of rooms that other servers gave with their parent's answer
    remote_entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # rooms other servers said nobody here may see
    inaccessible: set[str] = field(default_factory=set)
    expires: float = 0.0
    # a server admin's walk (Synapse's admin hierarchy): every room we hold,
    # whoever may see it, and no other server asked
    as_admin: bool = False


class HierarchyHandler:
    """The space hierarchy, for our clients and for other servers. Built once
    by ``server.py`` (``hs.hierarchy``): both sides share its caches."""

    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 federation_client: "FederationClient") -> None:
        self.ctx = ctx
        self.stores = stores
        self.federation_client = federation_client
        self._walks: dict[str, _Walk] = {}
        # (room ID, suggested_only) -> (expiry, another server's answer)
        self._remote: dict[tuple[str, bool], tuple[float, dict[str, Any]]] = {}

    # -- reading our rooms ----------------------------------------------------

    async def _local_room(self, room_id: str) -> _LocalRoom | None:
        """The room's current state, if we hold the room; None otherwise."""
        info = await self.stores.rooms.get_room(room_id)
        if info is None:
            return None
        ids = await self.stores.rooms.get_current_state_ids(
            info.room_nid, [(t, "") for t in SUMMARY_TYPES])
        if ("m.room.create", "") not in ids:
            return None  # known only as an outlier (an invite from afar)
        child_ids = await self.stores.rooms.get_current_state_ids(info.room_nid,
                                                                  event_type=SPACE_CHILD)
        events = await self.stores.events.get_events([*ids.values(), *child_ids.values()])
        state = {k[0]: events[v] for k, v in ids.items() if v in events}
        children = [events[v] for v in child_ids.values() if v in events]
        return _LocalRoom(info, state, children)

    async def _host_joined(self, room_id: str) -> bool:
        return bool(await self.stores.rooms.get_local_members(room_id, self.ctx.hostname))

    async def _summary(self, room: _LocalRoom) -> dict[str, Any]:
        """The room's summary (room_summary.yaml), ``allowed_room_ids`` included."""
        counts = await self.stores.sync.get_member_counts(room.info.room_nid)
        entry: dict[str, Any] = {
            "room_id": room.info.room_id,
            "num_joined_members": counts.get("join", 0),
            "world_readable": room.world_readable,
            "guest_can_join": _str_field(room.state.get("m.room.guest_access"),
                                         "guest_access") == "can_join",
            "join_rule": room.join_rule,
            "room_version": room.info.room_version,
        }
        optional = {
            "name": _str_field(room.state.get("m.room.name"), "name"),
            "topic": _str_field(room.state.get("m.room.topic"), "topic"),
            "canonical_alias": _str_field(room.state.get("m.room.canonical_alias"), "alias"),
            "avatar_url": _str_field(room.state.get("m.room.avatar"), "url"),
            "room_type": room.room_type,
            "encryption": _str_field(room.state.get("m.room.encryption"), "algorithm"),
        }
        entry.update({k: v for k, v in optional.items() if v})
        if room.join_rule in RESTRICTED_JOIN_RULES:
            entry["allowed_room_ids"] = allowed_room_ids(room.state.get("m.room.join_rules"))
        return entry

    def _children_state(self, room: _LocalRoom, suggested_only: bool) -> list[dict[str, Any]]:
        if room.room_type != SPACE:
            return []
        return children_of([stripped_child(e) for e in room.children], suggested_only)

    async def _user_may_see(self, room: _LocalRoom, user_id: str) -> bool:
        membership = await self.stores.rooms.get_membership(user_id, room.info.room_nid)
        if membership is not None:
            if membership.membership in ("join", "invite"):
                return True
            if membership.membership == "ban":
                return False
        if room.join_rule in OPEN_JOIN_RULES or room.world_readable:
            return True
        if room.join_rule in RESTRICTED_JOIN_RULES:
            allowed = allowed_room_ids(room.state.get("m.room.join_rules"))
            if allowed:
                joined = set(await self.stores.rooms.get_rooms_for_user(user_id))
                return any(r in joined for r in allowed)
        return False

    async def _server_may_see(self, room: _LocalRoom, origin: str) -> bool:
        if room.join_rule in OPEN_JOIN_RULES or room.world_readable:
            return True
        if await self._server_in_room(room.info.room_nid, origin):
            return True
        if room.join_rule in RESTRICTED_JOIN_RULES:
            for allowed in allowed_room_ids(room.state.get("m.room.join_rules")):
                info = await self.stores.rooms.get_room(allowed)
                if info is not None and await self._server_in_room(info.room_nid, origin):
                    return True
        return False

    async def _server_in_room(self, room_nid: int, server: str) -> bool:
        suffix = ":" + server
        for membership in ("join", "invite"):
            members = await self.stores.rooms.get_members(room_nid, membership)
            if any(m.endswith(suffix) for m in members):
                return True
        return False

    # -- the federation side --------------------------------------------------

    async def federation_hierarchy(self, origin: str, room_id: str,
                                   suggested_only: bool) -> dict[str, Any]:
        """GET /_matrix/federation/v1/hierarchy/{roomId} for ``origin``."""
        room = await self._local_room(room_id)
        if room is None or not await self._host_joined(room_id) \
                or not await self._server_may_see(room, origin):
            raise not_found("Unknown room")
        entry = await self._summary(room)
        entry["children_state"] = self._children_state(room, suggested_only)
        children: list[dict[str, Any]] = []
        inaccessible: list[str] = []
        for child in entry["children_state"]:
            child_id = child["state_key"]
            child_room = await self._local_room(child_id)
            if child_room is None or not await self._host_joined(child_id):
                continue  # we cannot speak for it: left out, as the spec says
            if await self._server_may_see(child_room, origin):
                children.append(await self._summary(child_room))
            else:
                inaccessible.append(child_id)
        return {"room": entry, "children": children, "inaccessible_children": inaccessible}

    async def _ask_remote(self, room_id: str, via: list[str],
                          suggested_only: bool) -> dict[str, Any] | None:
        """Another server's /hierarchy answer for the room (cached), or None."""
        now = self.ctx.clock.seconds()
        cached = self._remote.get((room_id, suggested_only))
        if cached is not None and cached[0] > now:
            return cached[1]
        path = f"/_matrix/federation/v1/hierarchy/{quote(room_id, safe='')}"
        tried = 0
        for server in dict.fromkeys(via):
            if server == self.ctx.hostname:
                continue
            if tried >= MAX_VIA_TRIED:
                break
            tried += 1
            try:
                answer = await self.federation_client.get_json(
                    server, path, {"suggested_only": "true" if suggested_only else "false"},
                    timeout_ms=REMOTE_TIMEOUT_MS)
            except (RequestFailed, FederationError) as e:
                logger.info("hierarchy of %s from %s failed: %s", room_id, server, e)
                continue
            checked = _check_remote_answer(room_id, answer)
            if checked is None:
                logger.info("hierarchy of %s from %s: malformed answer", room_id, server)
                continue
            if len(self._remote) >= MAX_REMOTE_CACHE:
                self._remote.clear()
            self._remote[(room_id, suggested_only)] = (now + REMOTE_CACHE_S, checked)
            return checked
        return None

    # -- the room summary (MSC3266, Matrix 1.15) ------------------------------

    async def room_summary(self, user_id: str | None, room_id: str,
                           via: list[str]) -> dict[str, Any]:
        """GET /_matrix/client/v1/room_summary/{roomIdOrAlias}: what a client
        shows of a room before joining it. A room we are in is summarised from
        our state; another is asked of the ``via`` servers (their /hierarchy
        answer's ``room``). Who may see it is the hierarchy's rule; without a
        token (``user_id`` None) only rooms anyone could join or read. A room
        nobody may show the requester is 404, as an unknown one."""
        membership: str | None = None
        info = await self.stores.rooms.get_room(room_id)
        if user_id is not None and info is not None:
            found = await self.stores.rooms.get_membership(user_id, info.room_nid)
            membership = found.membership if found is not None else None
        room = await self._local_room(room_id)
        if room is not None and await self._host_joined(room_id):
            if user_id is not None:
                visible = await self._user_may_see(room, user_id)
            else:
                visible = room.join_rule in OPEN_JOIN_RULES or room.world_readable
            if not visible:
                raise not_found("Room not found or is not accessible")
            entry = await self._summary(room)
        else:
            answer = await self._ask_remote(room_id, via, False)
            if answer is None:
                raise not_found("Room not found or is not accessible")
            entry = dict(answer["room"])
            entry.pop("children_state", None)
            joined = set(await self.stores.rooms.get_rooms_for_user(user_id)) \
                if user_id is not None else set()
            if not remote_is_accessible(entry, joined, membership):
                raise not_found("Room not found or is not accessible")
        body = client_entry(entry)
        if user_id is not None:
            body["membership"] = membership or "leave"
        return body

    # -- the client side ------------------------------------------------------

    async def get_hierarchy(self, user_id: str, room_id: str, *, suggested_only: bool,
                            max_depth: int | None, limit: int | None,
                            from_token: str | None, as_admin: bool = False) -> dict[str, Any]:
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy for ``user_id``
        (``as_admin``: the admin API's, over the rooms this server holds)."""
        depth_limit = min(max_depth if max_depth is not None else DEFAULT_MAX_DEPTH,
                          MAX_MAX_DEPTH)
        page_size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        now = self.ctx.clock.seconds()
        if from_token is not None:
            walk = self._walks.pop(from_token, None)
            if walk is None or walk.expires < now or walk.user_id != user_id \
                    or walk.root != room_id or walk.as_admin != as_admin:
                raise invalid_param("Unknown pagination token")
            if walk.suggested_only != suggested_only or walk.max_depth != depth_limit:
                raise invalid_param(
                    "suggested_only and max_depth cannot change on paginated requests")
        else:
            root = await self._local_room(room_id)
            if as_admin and root is None:
                raise not_found("Room not found")
            if root is None or not (as_admin or await self._user_may_see(root, user_id)):
                raise forbidden("You are not allowed to view this room.")
            walk = _Walk(user_id, room_id, suggested_only, depth_limit, [(room_id, [], 0)],
                         as_admin=as_admin)

        joined: set[str] | None = None
        rooms: list[dict[str, Any]] = []
        while walk.stack and len(rooms) < page_size:
            current, via, depth = walk.stack.pop()
            if current in walk.visited or current in walk.inaccessible:
                continue
            walk.visited.add(current)
            found = await self._visit(walk, current, via, depth)
            if found is None:
                continue
            entry, children, membership = found
            if entry.pop("_remote", False):
                if joined is None:
                    joined = set(await self.stores.rooms.get_rooms_for_user(user_id))
                if not remote_is_accessible(entry, joined, membership):
                    continue
            walk_children = depth < walk.max_depth
            entry = client_entry(entry)
            entry["children_state"] = children if walk_children else []
            rooms.append(entry)
            if walk_children:
                for child in reversed(children):
                    content = child["content"]
                    walk.stack.append((child["state_key"], valid_via(content) or [],
                                       depth + 1))

        body: dict[str, Any] = {"rooms": rooms}
        if walk.stack:
            token = secrets.token_urlsafe(16)
            walk.expires = now + SESSION_LIFETIME_S
            self._expire(now)
            self._walks[token] = walk
            body["next_batch"] = token
        return body

    async def _visit(self, walk: _Walk, room_id: str, via: list[str], depth: int,
                     ) -> tuple[dict[str, Any], list[dict[str, Any]], str | None] | None:
        """(summary, children, the user's membership) of one room of the walk;
        a summary from another server is marked ``_remote`` (its access is
        judged by the caller); None when the room is unknown or hidden."""
        local = await self._local_room(room_id)
        if walk.as_admin:
            if local is None:
                return None
            return (await self._summary(local),
                    self._children_state(local, walk.suggested_only), None)
        if local is not None and (depth == 0 or await self._host_joined(room_id)):
            if depth > 0 and not await self._user_may_see(local, walk.user_id):
                return None
            entry = await self._summary(local)
            return entry, self._children_state(local, walk.suggested_only), None
        membership = None
        if local is not None:
            m = await self.stores.rooms.get_membership(walk.user_id, local.info.room_nid)
            membership = m.membership if m is not None else None
        given = walk.remote_entries.get(room_id)
        if given is not None and (given.get("room_type") != SPACE
                                  or depth >= walk.max_depth):
            return {**given, "_remote": True}, [], membership
        answer = await self._ask_remote(room_id, via, walk.suggested_only)
        if answer is None:
            if given is not None:
                return {**given, "_remote": True}, [], membership
            if local is not None and await self._user_may_see(local, walk.user_id):
                # nobody answered: what we last knew of a room we have left
                return (await self._summary(local),
                        self._children_state(local, walk.suggested_only), None)
            return None
        for child in answer["children"]:
            walk.remote_entries.setdefault(child["room_id"], child)
        walk.inaccessible.update(answer["inaccessible_children"])
        room = dict(answer["room"])
        children = children_of(room.pop("children_state", []), walk.suggested_only)
        if room.get("room_type") != SPACE:
            children = []
        room["_remote"] = True
        return room, children, membership

    def _expire(self, now: float) -> None:
        if len(self._walks) < MAX_SESSIONS:
            for token in [t for t, w in self._walks.items() if w.expires < now]:
                del self._walks[token]
            return
        self._walks.clear()


def _check_remote_answer(room_id: str, answer: Any) -> dict[str, Any] | None:
    """Another server's /hierarchy answer, reduced to what we can trust the
    shape of; None when it is not an answer about ``room_id``."""
    if not isinstance(answer, dict):
        return None
    room = answer.get("room")
    if not isinstance(room, dict) or room.get("room_id") != room_id:
        return None
    children_state = room.get("children_state")
    room = dict(room)
    room["children_state"] = [c for c in children_state if isinstance(c, dict)] \
        if isinstance(children_state, list) else []
    children = answer.get("children")
    inaccessible = answer.get("inaccessible_children")
    return {
        "room": _summary_fields(room),
        "children": [_summary_fields(c) for c in children[:MAX_CHILDREN]
                     if isinstance(c, dict) and isinstance(c.get("room_id"), str)]
        if isinstance(children, list) else [],
        "inaccessible_children": [r for r in inaccessible[:MAX_CHILDREN]
                                  if isinstance(r, str)]
        if isinstance(inaccessible, list) else [],
    }


_SUMMARY_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "room_id": str, "num_joined_members": int, "world_readable": bool,
    "guest_can_join": bool, "join_rule": str, "room_type": str, "name": str, "topic": str,
    "canonical_alias": str, "avatar_url": str, "encryption": str, "room_version": str,
    "allowed_room_ids": list, "children_state": list,
}


def _summary_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """The known fields of a summary from another server, those of the right type."""
    out = {k: v for k, v in entry.items()
           if k in _SUMMARY_FIELD_TYPES and isinstance(v, _SUMMARY_FIELD_TYPES[k])
           and not (isinstance(v, bool) and _SUMMARY_FIELD_TYPES[k] is int)}
    out.setdefault("num_joined_members", 0)
    out.setdefault("world_readable", False)
    out.setdefault("guest_can_join", False)
    return out

