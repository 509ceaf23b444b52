"""Room aliases and the published room directory.

Aliases (client-server API, "Room aliases"):

- ``#localpart:server``; at most 255 bytes; the localpart any code point but
  ``:`` and NUL (and, when we create one, no whitespace, as on Synapse).
  Only aliases of this server can be created here (400 M_INVALID_PARAM).
- Creating one needs membership of the room (Synapse's default
  ``require_membership_for_aliases``); server admins may alias any room.
  An unknown room is 400, as on Synapse; a taken alias 409 M_UNKNOWN.
- Resolving needs no login. An alias of another server is asked of that
  server (``GET /_matrix/federation/v1/query/directory``, ``lookup_alias``):
  its 404 is passed on, an unreachable server is 502, as on Synapse. The
  servers to join through are those it names, then the alias's own server.
- Deleting is for the alias's creator, a server admin, or a member with the
  power to send ``m.room.canonical_alias`` (Synapse's rule). The alias is
  then taken out of the room's ``m.room.canonical_alias`` event, sent as the
  deleting user; when they lack the power for that, the alias is deleted all
  the same (as the spec recommends).
- The local aliases of a room are listed to its joined members, to anyone
  when its history is ``world_readable``, and to server admins.

``m.room.canonical_alias`` (``validate_canonical_alias``): the aliases must
have the alias grammar (else 400 M_INVALID_PARAM, as the spec's
PUT /state lists) and each one *added* by the event (those already in the
current event are not checked again, as on Synapse, so a room whose alias
was deleted can still change its other aliases) must point to this room
(else 400 M_BAD_ALIAS). Aliases of other servers cannot be checked without
federation and are refused with M_BAD_ALIAS for now (Synapse asks the other
server, and refuses when it cannot).

The published room directory (client-server API, "Published room
directory"): a room is public (listed) or private. Changing that needs the
power to send ``m.room.canonical_alias`` (a "moderator", as Synapse puts it)
or a server admin. ``/publicRooms`` lists, as Synapse does, the published
rooms that have joined members and are joinable (``public``, ``knock``,
``knock_restricted`` join rule) or ``world_readable``, largest first (then
by room ID), optionally filtered by a search term (a case-insensitive
substring of the name, topic, canonical alias or room ID) and by room type.
Pagination tokens are opaque: the direction and the (members, room ID) key
of the room next to the page, so a page stays stable while rooms come and go.

The list is built from each room's current state on every request: fine
for the room counts one server publishes; a per-room summary table, kept
up to date as state changes, is the way to go past that.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.events.identifiers import byte_length, is_valid_server_name
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.federation.edus import query_remote
from homeserver.rooms.power_levels import (
    CREATE,
    POWER_LEVELS,
    get_send_level,
    get_user_power_level,
)
from homeserver.storage.rooms import RoomInfo

if TYPE_CHECKING:
    from homeserver.appservice.handler import AppServiceHandler
    from homeserver.context import ServerContext
    from homeserver.federation.client import FederationClient
    from homeserver.moderation.gate import ModerationGate
    from homeserver.rooms.creator import EventCreator
    from homeserver.storage import Stores

logger = logging.getLogger(__name__)

CANONICAL_ALIAS = "m.room.canonical_alias"
MAX_ALIAS_BYTES = 255

# join rules under which a published room is listed (unless world_readable)
LISTED_JOIN_RULES = frozenset({"public", "knock", "knock_restricted"})

# the state a /publicRooms entry shows
_LISTING_TYPES = ("m.room.create", "m.room.name", "m.room.topic", CANONICAL_ALIAS,
                  "m.room.avatar", "m.room.join_rules", "m.room.history_visibility",
                  "m.room.guest_access")


# -- the alias grammar ------------------------------------------------------------


def parse_room_alias(alias: Any) -> tuple[str, str] | None:
    """(localpart, server) of ``#localpart:server``, else None (appendices,
    "Room aliases")."""
    if not isinstance(alias, str) or not alias.startswith("#"):
        return None
    try:
        if byte_length(alias) > MAX_ALIAS_BYTES:
            return None
    except UnicodeEncodeError:  # a lone surrogate
        return None
    local, sep, server = alias[1:].partition(":")
    if not sep or not local or "\x00" in local or not is_valid_server_name(server):
        return None
    return local, server


def _check_new_localpart(localpart: str) -> None:
    """What Synapse refuses in the localpart of an alias it creates."""
    if any(c.isspace() for c in localpart):
        raise invalid_param("Invalid characters in room alias")


def _parse_or_400(alias: str) -> tuple[str, str]:
    parsed = parse_room_alias(alias)
    if parsed is None:
        raise invalid_param("Room alias invalid")
    return parsed


# -- aliases ----------------------------------------------------------------------


@dataclass(frozen=True)
class AliasTarget:
    room_id: str
    servers: tuple[str, ...]


# -- m.room.canonical_alias ---------------------------------------------------------


def _aliases_of(content: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(alias, alt_aliases) of canonical-alias content; M_INVALID_PARAM if malformed."""
    alias = content.get("alias")
    if alias == "":
        alias = None  # "not present, null, or empty": no canonical alias
    if alias is not None and parse_room_alias(alias) is None:
        raise invalid_param("'alias' must be a valid room alias")
    alt = content.get("alt_aliases")
    if alt is None:
        alt = []
    if not isinstance(alt, list):
        raise invalid_param("'alt_aliases' must be a list")
    for item in alt:
        if parse_room_alias(item) is None:
            raise invalid_param("'alt_aliases' must hold valid room aliases")
    return alias, alt


# -- the published room directory -----------------------------------------------


@dataclass(frozen=True)
class PublicRoomsQuery:
    """A validated /publicRooms request."""

    limit: int | None = None
    since: str | None = None
    search_term: str | None = None
    # None: any type; else the room types wanted (None: rooms without a type)
    room_types: frozenset[str | None] | None = None
    # an application service's list ("{serviceId}|{networkId}") instead of ours
    third_party_instance_id: str | None = None
    # ours and every application service's lists together
    include_all_networks: bool = False


def _encode_token(forwards: bool, key: tuple[int, str]) -> str:
    raw = json.dumps([key[0], key[1]], separators=(",", ":")).encode("utf-8")
    return ("n" if forwards else "p") + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_since_token(token: str) -> tuple[bool, tuple[int, str]]:
    """(forwards, (-members, room ID) bound) of a /publicRooms token; 400 if invalid."""
    try:
        direction, body = token[0], token[1:]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        members, room_id = json.loads(raw)
        if direction not in "np" or not isinstance(members, int) or \
                not isinstance(room_id, str):
            raise ValueError(token)
    except (IndexError, ValueError, TypeError):
        raise invalid_param("Invalid 'since' token") from None
    return direction == "n", (members, room_id)


def _str_field(event: Event | None, key: str) -> str | None:
    if event is None:
        return None
    value = event.content.get(key)
    return value if isinstance(value, str) else None


def _plain_topic(event: Event | None) -> str | None:
    topic = _str_field(event, "topic")
    if topic is not None or event is None:
        return topic
    blocks = event.content.get("m.topic")
    if isinstance(blocks, list):
        for block in blocks:
            if isinstance(block, dict) and block.get("mimetype", "text/plain") == "text/plain" \
                    and isinstance(block.get("body"), str):
                return str(block["body"])
    return None


def room_entry(room_id: str, num_joined: int,
               state: dict[str, Event]) -> dict[str, Any] | None:
    """The /publicRooms entry of a room, or None when the room is not listed."""
    join_rule = _str_field(state.get("m.room.join_rules"), "join_rule") or "public"
    world_readable = _str_field(state.get("m.room.history_visibility"),
                                "history_visibility") == "world_readable"
    if num_joined <= 0 or (join_rule not in LISTED_JOIN_RULES and not world_readable):
        return None
    entry: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": num_joined,
        "world_readable": world_readable,
        "guest_can_join": _str_field(state.get("m.room.guest_access"),
                                     "guest_access") == "can_join",
        "join_rule": join_rule,
    }
    optional = {
        "name": _str_field(state.get("m.room.name"), "name"),
        "topic": _plain_topic(state.get("m.room.topic")),
        "canonical_alias": _str_field(state.get(CANONICAL_ALIAS), "alias"),
        "avatar_url": _str_field(state.get("m.room.avatar"), "url"),
        "room_type": _str_field(state.get("m.room.create"), "type"),
    }
    entry.update({k: v for k, v in optional.items() if v})
    return entry


def _matches(entry: dict[str, Any], query: PublicRoomsQuery) -> bool:
    if query.room_types is not None and entry.get("room_type") not in query.room_types:
        return False
    if query.search_term:
        term = query.search_term.casefold()
        return any(term in str(entry.get(k, "")).casefold()
                   for k in ("name", "topic", "canonical_alias", "room_id"))
    return True


def paginate(entries: list[dict[str, Any]], query: PublicRoomsQuery) -> dict[str, Any]:
    """A page of ``entries`` (already in order) with its tokens."""
    keys = [(-e["num_joined_members"], e["room_id"]) for e in entries]
    start, end = 0, len(entries)
    forwards = True
    if query.since is not None:
        forwards, bound = decode_since_token(query.since)
        if forwards:
            start = sum(1 for k in keys if k <= bound)
        else:
            end = sum(1 for k in keys if k < bound)
    limit = query.limit or None  # 0, as on Synapse: no limit
    if limit is not None:
        if forwards:
            end = min(end, start + limit)
        else:
            start = max(start, end - limit)
    body: dict[str, Any] = {"chunk": entries[start:end],
                            "total_room_count_estimate": len(entries)}
    if start < end:
        if start > 0:
            body["prev_batch"] = _encode_token(False, keys[start])
        if end < len(entries):
            body["next_batch"] = _encode_token(True, keys[end - 1])
    return body


class RoomDirectory:
    """Aliases, the canonical-alias checks and the published room list of
    this server: the rules in the module docstring. Built once by
    ``server.py`` (``hs.room_directory``)."""

    def __init__(self, ctx: "ServerContext", stores: "Stores",
                 event_creator: "EventCreator",
                 federation_client: "FederationClient") -> None:
        self.ctx = ctx
        self.stores = stores
        # to update m.room.canonical_alias when an alias is added or deleted
        self.event_creator = event_creator
        # another server's aliases are asked of it
        self.federation_client = federation_client
        # application services: aliases in their namespaces, their room
        # lists (set by HomeServer._wire_late)
        self.app_services: "AppServiceHandler | None" = None
        # spam checker modules' user_may_create_room_alias and
        # user_may_publish_room (moderation/gate.py; set by _wire_late)
        self.gate: "ModerationGate | None" = None

    # -- who may do what --

    async def is_server_admin(self, user_id: str) -> bool:
        user = await self.stores.users.get_user(user_id)
        return user is not None and user.admin

    async def _state_events(self, room: RoomInfo,
                            keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Event]:
        ids = await self.stores.rooms.get_current_state_ids(room.room_nid, list(keys))
        events = await self.stores.events.get_events(list(ids.values()))
        return {k: events[v] for k, v in ids.items() if v in events}

    async def _is_joined(self, user_id: str, room: RoomInfo) -> bool:
        membership = await self.stores.rooms.get_membership(user_id, room.room_nid)
        return membership is not None and membership.membership == "join"

    async def may_edit_room_listing(self, user_id: str, room: RoomInfo) -> bool:
        """A server admin, or a joined member who could send ``m.room.canonical_alias``."""
        if await self.is_server_admin(user_id):
            return True
        if not await self._is_joined(user_id, room):
            return False
        state = await self._state_events(room, [CREATE, POWER_LEVELS])
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        return get_user_power_level(user_id, state, rv) >= get_send_level(CANONICAL_ALIAS, "",
                                                                          state, rv)

    # -- aliases --

    def _check_alias_namespace(self, alias: str, app_service: Any) -> None:
        """An application service may only touch aliases of its namespace;
        nobody else those of an exclusive one (400 M_EXCLUSIVE)."""
        if app_service is not None:
            if not app_service.is_interested_in_alias(alias):
                raise MatrixError(400, Codes.EXCLUSIVE,
                                  "This application service has not reserved this kind of "
                                  "alias.")
            return
        services = self.ctx.config.app_services
        if services and services.exclusive_alias_owner(alias) is not None:
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "This alias is reserved by an application service.")

    async def create_alias(self, user_id: str, alias: str, room_id: str,
                           app_service: Any = None) -> None:
        """PUT /directory/room/{roomAlias}: point ``alias`` at ``room_id``.

        An application service (its as_token) may point aliases of its
        namespace at any room, as on Synapse."""
        localpart, server = _parse_or_400(alias)
        _check_new_localpart(localpart)
        if server != self.ctx.hostname:
            raise invalid_param("Room alias must be local")
        self._check_alias_namespace(alias, app_service)
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise MatrixError(400, Codes.UNKNOWN, "Room does not exist")
        if app_service is None and not await self._is_joined(user_id, room) and \
                not await self.is_server_admin(user_id):
            raise forbidden("You must be in the room to create an alias for it")
        if app_service is None and self.gate is not None:
            await self.gate.check_create_alias(user_id, alias)
        if not await self.stores.directory.create_alias(alias, room.room_nid, user_id,
                                                        self.ctx.now_ms()):
            raise MatrixError(409, Codes.UNKNOWN, f"Room alias {alias} already exists")
        if self.app_services is not None:
            self.app_services.aliases_changed()

    async def resolve_alias(self, alias: str) -> AliasTarget:
        """The room ``alias`` points to and servers to join it through; 404 if none.

        Our server comes first, then the servers of the room's other members.
        """
        _, server = _parse_or_400(alias)
        mapping = await self.stores.directory.get_alias(alias) \
            if server == self.ctx.hostname else None
        if mapping is None and server == self.ctx.hostname and \
                self.app_services is not None and await self.app_services.ask_for_alias(alias):
            # a service whose namespace holds it made it on being asked
            mapping = await self.stores.directory.get_alias(alias)
        if mapping is None:
            raise not_found(f"Room alias {alias} not found")
        servers = [self.ctx.hostname]
        room = await self.stores.rooms.get_room(mapping.room_id)
        if room is not None:
            for member in await self.stores.rooms.get_members(room.room_nid):
                member_server = member.partition(":")[2]
                if member_server and member_server not in servers:
                    servers.append(member_server)
        return AliasTarget(mapping.room_id, tuple(servers))

    async def lookup_alias(self, alias: str) -> AliasTarget:
        """The room any server's ``alias`` points to, and servers to join it
        through (a client resolving or joining by alias): ours from our
        directory, another server's asked of it."""
        _, server = _parse_or_400(alias)
        if server == self.ctx.hostname:
            return await self.resolve_alias(alias)
        answer = await query_remote(self.federation_client, server,
                                    "/_matrix/federation/v1/query/directory",
                                    {"room_alias": alias})
        room_id, servers = answer.get("room_id"), answer.get("servers")
        if not isinstance(room_id, str) or not room_id.startswith("!") or \
                not isinstance(servers, list):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} sent a malformed answer")
        named = [s for s in servers if isinstance(s, str) and is_valid_server_name(s)]
        return AliasTarget(room_id, tuple(dict.fromkeys(named + [server])))

    async def delete_alias(self, user_id: str, alias: str, app_service: Any = None) -> None:
        """DELETE /directory/room/{roomAlias}"""
        _, server = _parse_or_400(alias)
        mapping = await self.stores.directory.get_alias(alias) \
            if server == self.ctx.hostname else None
        if mapping is None:
            raise not_found(f"Room alias {alias} not found")
        if app_service is not None and app_service.is_interested_in_alias(alias):
            pass  # a service may delete the aliases of its namespace
        elif mapping.creator != user_id:
            room = await self.stores.rooms.get_room(mapping.room_id)
            allowed = await self.may_edit_room_listing(user_id, room) if room is not None \
                else await self.is_server_admin(user_id)
            if not allowed:
                raise forbidden("You don't have permission to delete the alias.")
        room_id = await self.stores.directory.delete_alias(alias)
        if room_id is None:  # deleted by someone else meanwhile
            raise not_found(f"Room alias {alias} not found")
        if self.app_services is not None:
            self.app_services.aliases_changed()
        await self._remove_from_canonical_alias(user_id, room_id, alias)

    async def _remove_from_canonical_alias(self, user_id: str, room_id: str,
                                           alias: str) -> None:
        """Take a deleted alias out of the room's ``m.room.canonical_alias``."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            return
        current = (await self._state_events(room, [(CANONICAL_ALIAS, "")])).get(
            (CANONICAL_ALIAS, ""))
        if current is None:
            return
        content = dict(current.content)
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt = content.get("alt_aliases")
        if isinstance(alt, list) and alias in alt:
            remaining = [a for a in alt if a != alias]
            if remaining:
                content["alt_aliases"] = remaining
            else:
                del content["alt_aliases"]
            changed = True
        if not changed:
            return
        try:
            await self.event_creator.send(user_id, room_id, CANONICAL_ALIAS, content, state_key="")
        except MatrixError as e:
            # the alias is gone all the same; the event just still names it
            logger.info("could not update %s of %s after deleting %s: %s", CANONICAL_ALIAS,
                        room_id, alias, e.msg)

    async def get_local_aliases(self, user_id: str, room_id: str) -> list[str]:
        """GET /rooms/{roomId}/aliases: for members, world_readable rooms and admins."""
        room = await self.stores.rooms.get_room(room_id)
        if room is not None and (
                await self._is_joined(user_id, room)
                or await self._is_world_readable(room)
                or await self.is_server_admin(user_id)):
            return await self.stores.directory.get_aliases_for_room(room.room_nid)
        raise forbidden("You are not a member of the room.")

    async def _is_world_readable(self, room: RoomInfo) -> bool:
        key = ("m.room.history_visibility", "")
        event = (await self._state_events(room, [key])).get(key)
        return event is not None and event.content.get("history_visibility") == "world_readable"

    # -- hooks of room creation and of sending m.room.canonical_alias --

    async def check_new_room_alias(self, localpart: str | None,
                                   creator: str | None = None) -> str | None:
        """POST /createRoom's ``room_alias_name``, checked before the room exists.

        Returns the full alias (None without one). 400 M_INVALID_PARAM for a
        localpart that cannot be an alias, 400 M_ROOM_IN_USE when it is taken.
        """
        if localpart is None:
            return None
        if ":" in localpart:
            raise invalid_param("Invalid character in room alias localpart: ':'")
        _check_new_localpart(localpart)
        alias = f"#{localpart}:{self.ctx.hostname}"
        if parse_room_alias(alias) is None:
            raise invalid_param("Invalid room alias")
        services = self.ctx.config.app_services
        owner = services.exclusive_alias_owner(alias) if services else None
        if owner is not None and (creator is None or not owner.is_interested_in_user(creator)):
            # an application service's exclusive alias: only its users make it
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "This alias is reserved by an application service.")
        if await self.stores.directory.get_alias(alias) is not None:
            raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")
        if creator is not None and self.gate is not None:
            await self.gate.check_create_alias(creator, alias)
        return alias

    async def create_alias_for_new_room(self, creator: str, room_id: str,
                                        alias: str) -> None:
        """Point ``alias`` (from ``check_new_room_alias``) at the new room and send
        its ``m.room.canonical_alias``: the spec's place for that event is right
        after ``m.room.power_levels``, before the preset's events."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if not await self.stores.directory.create_alias(alias, room.room_nid, creator,
                                                        self.ctx.now_ms()):
            # taken since check_new_room_alias looked
            raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")
        if self.app_services is not None:
            self.app_services.aliases_changed()
        await self.event_creator.send(creator, room_id, CANONICAL_ALIAS, {"alias": alias},
                                    state_key="")

    async def publish_new_room(self, room_id: str) -> None:
        """POST /createRoom with ``visibility: public``: list the room in the directory."""
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        await self.stores.directory.set_room_public(room.room_nid, True, self.ctx.now_ms())

    async def validate_canonical_alias(self, room_id: str,
                                       content: dict[str, Any]) -> None:
        """Check the content of an ``m.room.canonical_alias`` a client sends.

        400 M_INVALID_PARAM for malformed aliases; 400 M_BAD_ALIAS for an alias
        (new to the room's current event) that does not point to ``room_id``.
        """
        alias, alt = _aliases_of(content)
        old_alias: Any = None
        old_alt: list[Any] = []
        room = await self.stores.rooms.get_room(room_id)
        if room is not None:
            current = (await self._state_events(room, [(CANONICAL_ALIAS, "")])).get(
                (CANONICAL_ALIAS, ""))
            if current is not None:
                old_alias = current.content.get("alias")
                previous_alt = current.content.get("alt_aliases")
                old_alt = previous_alt if isinstance(previous_alt, list) else []
        added = [a for a in alt if a not in old_alt]
        if alias is not None and alias != old_alias:
            added.insert(0, alias)
        for item in dict.fromkeys(added):
            if parse_room_alias(item) is None or item.partition(":")[2] != self.ctx.hostname:
                raise MatrixError(400, Codes.BAD_ALIAS,
                                  f"Room alias {item} cannot be checked: it is not on this server")
            mapping = await self.stores.directory.get_alias(item)
            if mapping is None or mapping.room_id != room_id:
                raise MatrixError(400, Codes.BAD_ALIAS,
                                  f"Room alias {item} does not point to the room")

    # -- the published room directory --

    async def get_visibility(self, room_id: str) -> str:
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        return "public" if await self.stores.directory.is_room_public(room.room_nid) else "private"

    async def set_visibility(self, user_id: str, room_id: str, visibility: str) -> None:
        room = await self.stores.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        if not await self.may_edit_room_listing(user_id, room):
            raise forbidden("This server requires you to be a moderator in the room to"
                            " edit its room list entry")
        if visibility == "public" and self.gate is not None:
            await self.gate.check_publish_room(user_id, room_id)
        await self.stores.directory.set_room_public(room.room_nid, visibility == "public",
                                                  self.ctx.now_ms())

    async def list_public_rooms(self, query: PublicRoomsQuery) -> dict[str, Any]:
        """GET/POST /publicRooms of this server (or of an application
        service's network, or all of them together)."""
        if query.third_party_instance_id is not None and self.app_services is not None:
            rooms = await self.app_services.listed_rooms(query.third_party_instance_id)
        elif query.third_party_instance_id is not None:
            raise invalid_param("Unknown third_party_instance_id")
        else:
            rooms = await self.stores.directory.get_published_rooms()
            if query.include_all_networks and self.app_services is not None:
                seen = {r.room_nid for r in rooms}
                rooms += [r for r in await self.app_services.listed_rooms(None)
                          if r.room_nid not in seen]
        rooms = [r for r in rooms if r.num_joined_members > 0]
        state_ids = await self.stores.directory.get_current_state_ids_for_rooms(
            [r.room_nid for r in rooms], _LISTING_TYPES)
        events = await self.stores.events.get_events(
            [eid for ids in state_ids.values() for eid in ids.values()])
        entries: list[dict[str, Any]] = []
        for room in rooms:
            ids = state_ids.get(room.room_nid, {})
            state = {t: events[e] for t, e in ids.items() if e in events}
            entry = room_entry(room.room_id, room.num_joined_members, state)
            if entry is not None and _matches(entry, query):
                entries.append(entry)
        entries.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
        return paginate(entries, query)
