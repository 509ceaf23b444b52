"""Moderation policy lists (the spec's "Moderation policy lists"): rooms whose
``m.policy.rule.user``, ``m.policy.rule.room`` and ``m.policy.rule.server``
state events name entities (globs) to ban, followed by the server.

``policy_rooms`` in the config lists the rooms (IDs, or local aliases
resolved when the rules are read, so the room may be made after the
config); the rules are their current
state (recommendation ``m.ban``; the older ``m.room.rule.*`` and
``org.matrix.mjolnir.rule.*`` types too). Rules are read once and kept in
memory; a commit that writes an event into a policy room (sent here or
received over federation) marks them stale, so a new or removed rule counts
from the next check: rules apply when they arrive, not at start.

What a rule does (asked by ``gate.py``):
- a user matching a user rule, or of a server matching a server rule, may not
  register, join, invite, be invited, or send;
- a room matching a room rule may not be joined;
- a server matching a server rule is refused at federation: every request
  it signs (transactions, joins, invites, queries, backfill) is 403
  M_FORBIDDEN, as a server outside ``federation_domain_whitelist`` is.

Globs (``*``, ``?``) are matched by ``glob.py``'s linear-time matcher: the
rules are other people's text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.glob import Glob

if TYPE_CHECKING:
    from homeserver.storage import Stores
    from homeserver.storage.hub import Committed

logger = logging.getLogger(__name__)

KINDS = ("user", "room", "server")
_TYPE_PREFIXES = ("m.policy.rule.", "m.room.rule.", "org.matrix.mjolnir.rule.")
BAN = ("m.ban", "org.matrix.mjolnir.ban")


def rule_kind(event_type: str) -> str | None:
    for prefix in _TYPE_PREFIXES:
        if event_type.startswith(prefix) and event_type[len(prefix):] in KINDS:
            return event_type[len(prefix):]
    return None


@dataclass(frozen=True)
class Rule:
    glob: Glob
    reason: str


def parse_rule(content: Any) -> Rule | None:
    """A ban rule from a policy event's content; None for anything else
    (a removed rule is an empty content)."""
    if not isinstance(content, dict):
        return None
    entity, recommendation = content.get("entity"), content.get("recommendation")
    if not isinstance(entity, str) or not entity or len(entity) > 255 or recommendation not in BAN:
        return None
    reason = content.get("reason")
    return Rule(Glob(entity), reason if isinstance(reason, str) else "")


class PolicyLists:
    def __init__(self, stores: "Stores", policy_rooms: list[str]) -> None:
        self.stores = stores
        self.configured = tuple(policy_rooms)
        # the room IDs, aliases resolved as far as they resolve
        self.rooms = frozenset(r for r in policy_rooms if not r.startswith("#"))
        self._rules: dict[str, list[Rule]] | None = None
        # bumped by each commit into a policy room: a load that raced with
        # one does not keep what it read
        self._generation = 0

    @property
    def active(self) -> bool:
        return bool(self.configured)

    def on_commit(self, committed: "Committed") -> None:
        """Database thread: a policy room's new event makes the rules stale."""
        if not self.configured:
            return
        for event, _ in committed.events:
            if event.room_id in self.rooms:
                self._generation += 1
                self._rules = None
                return

    async def _load(self) -> dict[str, list[Rule]]:
        rules = self._rules
        if rules is not None:
            return rules
        generation = self._generation
        fresh: dict[str, list[Rule]] = {k: [] for k in KINDS}
        resolved = set(self.rooms)
        complete = True
        for name in self.configured:
            if name.startswith("#"):
                mapping = await self.stores.directory.get_alias(name)
                if mapping is None:
                    complete = False  # not made yet: read again next time
                else:
                    resolved.add(mapping.room_id)
        self.rooms = frozenset(resolved)
        for room_id in self.rooms:
            room = await self.stores.rooms.get_room(room_id)
            if room is None:
                continue
            ids = await self.stores.rooms.get_current_state_ids(room.room_nid)
            wanted = [(rule_kind(t), eid) for (t, _), eid in ids.items()]
            events = await self.stores.events.get_events([e for k, e in wanted if k])
            for kind, event_id in wanted:
                event = events.get(event_id) if kind else None
                rule = parse_rule(event.content) if event is not None else None
                if kind is not None and rule is not None:
                    fresh[kind].append(rule)
        if generation == self._generation and complete:
            self._rules = fresh
        return fresh

    async def banned_user(self, user_id: str) -> str | None:
        """The reason a rule bans ``user_id`` (or its server), or None."""
        if not self.configured:
            return None
        rules = await self._load()
        server = user_id.split(":", 1)[1] if ":" in user_id else ""
        for rule in rules["user"]:
            if rule.glob.matches(user_id):
                return rule.reason or "banned by a policy list"
        for rule in rules["server"]:
            if rule.glob.matches(server):
                return rule.reason or "server banned by a policy list"
        return None

    async def banned_server(self, server_name: str) -> str | None:
        """The reason a server rule bans ``server_name``, or None (asked for
        every inbound federation request: ``federation/request_auth.py``)."""
        if not self.configured:
            return None
        for rule in (await self._load())["server"]:
            if rule.glob.matches(server_name):
                return rule.reason or "server banned by a policy list"
        return None

    async def banned_room(self, room_id: str) -> str | None:
        if not self.configured:
            return None
        for rule in (await self._load())["room"]:
            if rule.glob.matches(room_id):
                return rule.reason or "room banned by a policy list"
        return None
