"""Hand-built rooms for pure tests: events with fake IDs, state kept in a dict.

``Room`` starts a room the way a server would (create, creator's join, power
levels, join rules) and then lets a test set any member's state directly, so
each test describes only the situation it is about. Events get fake IDs (no
hashes or signatures): the auth rules only compare IDs.
"""

from __future__ import annotations

import itertools
from typing import Any

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.rooms.auth import AuthError, check_auth_rules

ALICE = "@alice:a.test"  # the creator
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:b.test"

ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS)

_ids = itertools.count(1)


def versions(first: str = "1", last: str = "12") -> list[str]:
    """Room version identifiers from ``first`` to ``last`` inclusive."""
    return [v for v in ALL_VERSIONS if int(first) <= int(v) <= int(last)]


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def make_event(rv: RoomVersion, etype: str, sender: str, content: dict[str, Any],
               *, room_id: str | None, state_key: str | None = None,
               prev_events: list[str] | None = None, **extra: Any) -> Event:
    n = next(_ids)
    # v1/v2 IDs carry the sending server's name (the v1 redaction rule reads it)
    event_id = f"${n}:{_domain(sender)}" if not rv.event_ids_are_hashes else f"$fake{n}"
    js: dict[str, Any] = {
        "type": etype, "sender": sender, "content": content,
        "prev_events": prev_events if prev_events is not None else [],
        "auth_events": [], "depth": n, "origin_server_ts": 1_700_000_000_000 + n,
    }
    if room_id is not None:
        js["room_id"] = room_id
    if state_key is not None:
        js["state_key"] = state_key
    js.update(extra)
    return Event(event_id, rv, js)


class Room:
    def __init__(self, version: str, *, creator: str = ALICE, join_rule: str | None = "invite",
                 power_levels: dict[str, Any] | None = None,
                 create_content: dict[str, Any] | None = None) -> None:
        self.rv = KNOWN_ROOM_VERSIONS[version]
        self.creator = creator
        self.state: dict[tuple[str, str], Event] = {}
        content: dict[str, Any] = {"room_version": version}
        if not self.rv.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        if self.rv.room_id_from_create_event:
            self.create = make_event(self.rv, "m.room.create", creator, content,
                                     room_id=None, state_key="")
            self.room_id = "!" + self.create.event_id[1:]
        else:
            self.room_id = f"!room{next(_ids)}:{_domain(creator)}"
            self.create = make_event(self.rv, "m.room.create", creator, content,
                                     room_id=self.room_id, state_key="")
        self.state[("m.room.create", "")] = self.create
        self.last = self.create.event_id
        self.set_member(creator, "join")
        if power_levels is None:
            users = {} if self.rv.privileged_creators else {creator: 100}
            power_levels = {"users": users}
        self.send_state("m.room.power_levels", creator, power_levels)
        if join_rule is not None:
            self.send_state("m.room.join_rules", creator, {"join_rule": join_rule})

    # -- building events

    def event(self, etype: str, sender: str, content: dict[str, Any],
              state_key: str | None = None, **extra: Any) -> Event:
        extra.setdefault("prev_events", [self.last])
        return make_event(self.rv, etype, sender, content, room_id=self.room_id,
                          state_key=state_key, **extra)

    def member(self, sender: str, target: str, membership: str, **content: Any) -> Event:
        return self.event("m.room.member", sender, {"membership": membership, **content},
                          state_key=target)

    def power_levels(self, sender: str, content: dict[str, Any]) -> Event:
        return self.event("m.room.power_levels", sender, content, state_key="")

    # -- changing state without auth checks (setting the scene)

    def set_state(self, event: Event) -> Event:
        assert event.state_key is not None
        self.state[event.state_pair()] = event
        self.last = event.event_id
        return event

    def send_state(self, etype: str, sender: str, content: dict[str, Any],
                   state_key: str = "") -> Event:
        return self.set_state(self.event(etype, sender, content, state_key=state_key))

    def set_member(self, user: str, membership: str, sender: str | None = None) -> Event:
        return self.set_state(self.member(sender or user, user, membership))

    # -- checking

    def check(self, event: Event) -> None:
        check_auth_rules(event, self.state)

    def allowed(self, event: Event) -> bool:
        try:
            check_auth_rules(event, self.state)
        except AuthError:
            return False
        return True
