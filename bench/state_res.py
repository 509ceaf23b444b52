"""Benchmark: state resolution of a big room with two conflicting branches.

Builds a synthetic room with about 10,000 state events (the creator, an
admin, power-level changes every few hundred joins, ~9,950 members, some of
whom were invited before joining) and forks it into two branches that each
make 50 state changes - power levels, topics, kicks, bans, display names -
so 100 conflicting state events in all. Then resolves the two branch states
a few times and prints the median wall time, cold (a new auth graph each
run, as for a one-off resolution) and warm (an ``AuthGraph`` kept between
runs, as a caller resolving several states of one room would).

    python bench/state_res.py [--members 10000] [--runs 7] [--versions 10,12]

Not a test: numbers depend on the machine. Quote them with the CPython
version.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from homeserver.events.model import Event  # noqa: E402
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion  # noqa: E402
from homeserver.rooms.auth_chain import AuthGraph  # noqa: E402
from homeserver.rooms.state_res import StateKey, resolve_state  # noqa: E402

ALICE = "@alice:bench.test"  # creator
BOB = "@bob:bench.test"  # second admin

PL: StateKey = ("m.room.power_levels", "")
JR: StateKey = ("m.room.join_rules", "")
CREATE: StateKey = ("m.room.create", "")


class RoomBuilder:
    """Appends events to a room, choosing auth events from its current state."""

    def __init__(self, rv: RoomVersion) -> None:
        self.rv = rv
        self.events: dict[str, Event] = {}
        self.state: dict[StateKey, str] = {}
        self.n = 0
        self.last: str | None = None
        self.room_id = "!bench:bench.test"
        create = self.add("m.room.create", ALICE, "", {"creator": ALICE, "room_version":
                                                          rv.identifier})
        if rv.room_id_from_create_event:
            self.room_id = "!" + create[1:]

    def add(self, etype: str, sender: str, state_key: str, content: dict[str, Any],
            state: dict[StateKey, str] | None = None, prev: str | None = None) -> str:
        state = self.state if state is None else state
        self.n += 1
        event_id = f"${self.n}" if self.rv.event_ids_are_hashes else f"${self.n}:bench.test"
        auth_keys: list[StateKey] = []
        if etype != "m.room.create":
            auth_keys = [PL, ("m.room.member", sender)]
            if not self.rv.room_id_from_create_event:
                auth_keys.append(CREATE)
            if etype == "m.room.member":
                auth_keys.append(("m.room.member", state_key))
                if content.get("membership") in ("join", "invite"):
                    auth_keys.append(JR)
        js: dict[str, Any] = {
            "type": etype, "sender": sender, "state_key": state_key, "content": content,
            "origin_server_ts": 1_700_000_000_000 + self.n, "depth": self.n,
            "prev_events": [p] if (p := prev or self.last) else [],
            "auth_events": list(dict.fromkeys(state[k] for k in auth_keys if k in state)),
        }
        if not (etype == "m.room.create" and self.rv.room_id_from_create_event):
            js["room_id"] = self.room_id
        self.events[event_id] = Event(event_id, self.rv, js)
        state[(etype, state_key)] = event_id
        if state is self.state:
            self.last = event_id
        return event_id

    def power_levels(self, users: dict[str, int]) -> dict[str, Any]:
        if self.rv.privileged_creators:
            users = {u: v for u, v in users.items() if u != ALICE}
        return {"users": users, "state_default": 50, "kick": 50, "ban": 50}


def build_room(version: str, members: int) -> tuple[dict[str, Event], list[dict[StateKey, str]]]:
    rv = KNOWN_ROOM_VERSIONS[version]
    room = RoomBuilder(rv)
    room.add("m.room.member", ALICE, ALICE, {"membership": "join"})
    users = {ALICE: 100, BOB: 100}
    room.add(PL[0], ALICE, "", room.power_levels(users))
    room.add(JR[0], ALICE, "", {"join_rule": "public"})
    room.add("m.room.member", BOB, BOB, {"membership": "join"})
    for i in range(members - 5):
        user = f"@u{i}:s{i % 50}.test"
        if i % 10 == 0:  # some were invited first: a longer member history
            room.add("m.room.member", ALICE, user, {"membership": "invite"})
        room.add("m.room.member", user, user, {"membership": "join", "displayname": f"u{i}"})
        if i % 400 == 399:  # the power levels change now and then: a long mainline
            users[user] = 10
            room.add(PL[0], ALICE, "", room.power_levels(users))
    fork = room.last
    assert fork is not None
    base = dict(room.state)

    branches = []
    for b, admin in enumerate((ALICE, BOB)):
        state = dict(base)
        prev = fork
        branch_users = dict(users)
        for j in range(50):
            kind = j % 5
            target = f"@u{b * 500 + j * 7}:s{(b * 500 + j * 7) % 50}.test"
            if kind == 0:
                branch_users[target] = 20 + j
                prev = room.add(PL[0], admin, "", room.power_levels(branch_users), state, prev)
            elif kind == 1:
                prev = room.add("m.room.topic", admin, "", {"topic": f"{b}-{j}"}, state, prev)
            elif kind == 2:
                prev = room.add("m.room.member", admin, target, {"membership": "leave"},
                                state, prev)
            elif kind == 3:
                prev = room.add("m.room.member", admin, target, {"membership": "ban"},
                                state, prev)
            else:
                prev = room.add("m.room.member", target, target,
                                {"membership": "join", "displayname": f"renamed {b}-{j}"},
                                state, prev)
        branches.append(state)
    return room.events, branches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--versions", default="10,12")
    args = parser.parse_args()
    print(f"CPython {platform.python_version()} on {platform.machine()}")
    for version in args.versions.split(","):
        events, branches = build_room(version, args.members)
        conflicted = sum(1 for k in branches[0].keys() | branches[1].keys()
                         if branches[0].get(k) != branches[1].get(k))
        cold, warm = [], []
        graph = AuthGraph(events)
        result: dict[StateKey, str] = {}
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result = resolve_state(version, branches, events)
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            resolve_state(version, branches, graph)
            warm.append(time.perf_counter() - t0)
        print(f"room v{version}: {len(branches[0])} state events, {conflicted} conflicted keys,"
              f" {len(result)} in the result")
        print(f"  cold median {statistics.median(cold) * 1000:.1f} ms"
              f" (min {min(cold) * 1000:.1f}), warm median"
              f" {statistics.median(warm) * 1000:.1f} ms over {args.runs} runs")


if __name__ == "__main__":
    main()
