"""The auth-chain index agrees with a plain walk of the auth DAG.

Events are stored through ``EventStore.persist_event`` (the index is kept in
the same transaction); the reference answers walk ``event_auth_edges`` (plus
the implicit create event of v12 rooms) in Python.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.auth_chain import AuthGraph
from homeserver.storage import auth_chains
from homeserver.storage.auth_chains import AuthChainStore
from homeserver.storage.database import Database, Txn
from homeserver.storage.events import EventStore
from tests.harness import TestServer
from tests.storage.conftest import Databases, prepare


@dataclass
class Room:
    """A room built event by event; ``nids`` maps event IDs to NIDs."""

    events: EventStore
    chains: AuthChainStore
    version: str
    room_id: str
    room_nid: int | None = None
    count: int = 0

    def __post_init__(self) -> None:
        self.nids: dict[str, int] = {}

    @property
    def create_id(self) -> str:
        return "$" + self.room_id[1:]

    def event(self, event_type: str, state_key: str | None, auth: Sequence[str],
              event_id: str | None = None) -> Event:
        self.count += 1
        event_id = event_id or f"${self.room_id[1:]}-{self.count}"
        pdu: dict[str, Any] = {
            "type": event_type, "sender": "@alice:test.local", "content": {},
            "depth": self.count, "origin_server_ts": 1000 + self.count,
            "prev_events": [], "auth_events": list(auth),
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        if event_type != "m.room.create" or not KNOWN_ROOM_VERSIONS[
                self.version].room_id_from_create_event:
            pdu["room_id"] = self.room_id
        return Event(event_id, KNOWN_ROOM_VERSIONS[self.version], pdu)

    async def store(self, event: Event) -> int:
        if self.room_nid is None:
            result = await self.events.persist_event(
                event, room_nid=None, now_ms=0, new_room_id=self.room_id)
            position = await self.events.get_event_position(event.event_id)
            assert position is not None
            self.room_nid = position.room_nid
        else:
            result = await self.events.persist_event(event, room_nid=self.room_nid, now_ms=0)
        self.nids[event.event_id] = result.event_nid
        return result.event_nid

    async def send(self, event_type: str, state_key: str | None, auth: Sequence[str]) -> str:
        event = self.event(event_type, state_key, auth)
        await self.store(event)
        return event.event_id

    async def create(self) -> str:
        event = self.event("m.room.create", "", [], event_id=self.create_id)
        await self.store(event)
        return event.event_id


@pytest_twisted.async_yield_fixture
async def stores(databases: Databases) -> AsyncIterator[tuple[EventStore, AuthChainStore]]:
    db = databases.open()
    await prepare(db)
    yield EventStore(db), AuthChainStore(db)


def new_room(stores: tuple[EventStore, AuthChainStore], version: str = "10",
             name: str = "!room") -> Room:
    return Room(stores[0], stores[1], version, name)


# -- the reference: a walk over event_auth_edges --------------------------------


async def auth_graph(db: Database) -> dict[int, set[int]]:
    """event NID -> its auth event NIDs: the DAG edges, and in v12 rooms the
    room's create event."""
    def txn_fn(txn: Txn) -> dict[int, set[int]]:
        graph: dict[int, set[int]] = {int(n): set() for (n,) in txn.select_all(
            "SELECT event_nid FROM events")}
        for n, a in txn.select_all("SELECT event_nid, auth_event_nid FROM event_auth_edges"):
            graph[int(n)].add(int(a))
        for n, room_id, version, etype in txn.select_all(
                "SELECT e.event_nid, r.room_id, r.room_version, e.event_type FROM events e"
                " JOIN rooms r ON r.room_nid = e.room_nid"):
            if KNOWN_ROOM_VERSIONS[version].room_id_from_create_event and \
                    etype != "m.room.create":
                create = txn.select_value("SELECT event_nid FROM events WHERE event_id = ?",
                                          ("$" + room_id[1:],))
                if create is not None:
                    graph[int(n)].add(int(create))
        return graph

    return await db.run_interaction("auth_graph", txn_fn)


def walk(graph: dict[int, set[int]], starts: Iterable[int]) -> set[int]:
    seen: set[int] = set()
    stack = [a for s in starts for a in graph[s]]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(graph[n])
    return seen


def difference(graph: dict[int, set[int]], sets: Sequence[Iterable[int]]) -> set[int]:
    chains = [walk(graph, s) for s in sets]
    return set().union(*chains) - set.intersection(*chains)


async def assert_index_matches_walk(room: Room, rng: random.Random, rounds: int = 60) -> None:
    graph = await auth_graph(room.chains.db)
    nids = sorted(room.nids.values())
    for nid in nids:
        assert await room.chains.get_auth_chain_nids([nid]) == walk(graph, [nid]), nid
    assert room.room_nid is not None
    for _ in range(rounds):
        some = rng.sample(nids, rng.randint(1, min(6, len(nids))))
        assert await room.chains.get_auth_chain_nids(some) == walk(graph, some)
        sets = [set(rng.sample(nids, rng.randint(0, min(8, len(nids)))))
                for _ in range(rng.randint(2, 4))]
        assert await room.chains.get_auth_chain_difference_nids(room.room_nid, sets) \
            == difference(graph, sets)


async def index_rows(db: Database) -> int:
    return int((await db.execute("count", "SELECT COUNT(*) FROM event_auth_chains"))[0][0])


# -- random DAGs ---------------------------------------------------------------------


async def build_random_room(room: Room, rng: random.Random, size: int) -> None:
    """State events over a few state keys, each authorised by a random handful
    of earlier events (often the latest of its own key, as real rooms are),
    and some messages."""
    create = await room.create()
    latest: dict[str, str] = {}
    state: list[str] = [create]
    keys = ["pl", "jr", *(f"@u{i}:test.local" for i in range(6))]
    for _ in range(size):
        key = rng.choice(keys)
        auth = set(rng.sample(state, min(len(state), rng.randint(0, 4))))
        if key in latest and rng.random() < 0.8:
            auth.add(latest[key])
        if KNOWN_ROOM_VERSIONS[room.version].room_id_from_create_event:
            auth.discard(create)
        elif rng.random() < 0.9:
            auth.add(create)
        if rng.random() < 0.15:
            await room.send("m.room.message", None, sorted(auth))
            continue
        event_type = "m.room.member" if key.startswith("@") else f"m.room.{key}"
        eid = await room.send(event_type, key, sorted(auth))
        latest[key] = eid
        state.append(eid)


@pytest.mark.parametrize("version", ["10", "12"])
@pytest_twisted.ensureDeferred
async def test_random_dags_match_a_graph_walk(stores: tuple[EventStore, AuthChainStore],
                                              version: str) -> None:
    rng = random.Random(f"auth-chains-{version}")
    for k in range(3):
        room = new_room(stores, version, f"!random{k}")
        await build_random_room(room, rng, 60 + 30 * k)
        await assert_index_matches_walk(room, rng)


@pytest_twisted.ensureDeferred
async def test_a_linear_chain_is_one_chain(stores: tuple[EventStore, AuthChainStore]) -> None:
    room = new_room(stores)
    ids = [await room.create()]
    for _ in range(10):
        ids.append(await room.send("m.room.power_levels", "", [ids[-1]]))
    nids = [room.nids[e] for e in ids]
    assert await room.chains.get_auth_chain_nids([nids[-1]]) == set(nids[:-1])
    assert await room.chains.get_auth_chain_nids([nids[4]]) == set(nids[:4])
    assert room.room_nid is not None
    assert await room.chains.get_auth_chain_difference_nids(
        room.room_nid, [{nids[3]}, {nids[7]}]) == set(nids[3:7])
    chains = await room.chains.db.execute(
        "chains", "SELECT COUNT(DISTINCT chain_id) FROM event_auth_chains")
    assert chains[0][0] == 2  # the create event, then the power levels
    await assert_index_matches_walk(room, random.Random(1))


@pytest_twisted.ensureDeferred
async def test_a_diamond(stores: tuple[EventStore, AuthChainStore]) -> None:
    room = new_room(stores)
    top = await room.create()
    left = await room.send("m.room.power_levels", "", [top])
    right = await room.send("m.room.join_rules", "", [top])
    bottom = await room.send("m.room.member", "@a:test.local", [left, right])
    n = room.nids
    assert await room.chains.get_auth_chain_nids([n[bottom]]) == {n[top], n[left], n[right]}
    assert room.room_nid is not None
    assert await room.chains.get_auth_chain_difference_nids(
        room.room_nid, [{n[left]}, {n[right]}]) == set()
    assert await room.chains.get_auth_chain_difference_nids(
        room.room_nid, [{n[left], n[right]}, {n[bottom]}]) == {n[left], n[right]}
    await assert_index_matches_walk(room, random.Random(2))


@pytest_twisted.ensureDeferred
async def test_two_branches_differ_by_their_own_events(
        stores: tuple[EventStore, AuthChainStore]) -> None:
    room = new_room(stores)
    create = await room.create()
    base = await room.send("m.room.power_levels", "", [create])
    branches: list[list[str]] = [[base], [base]]
    for _ in range(5):
        for branch in branches:
            branch.append(await room.send("m.room.power_levels", "", [create, branch[-1]]))
    n = room.nids
    assert room.room_nid is not None
    tips = [{n[branches[0][-1]]}, {n[branches[1][-1]]}]
    expected = {n[e] for e in branches[0][1:-1] + branches[1][1:-1]}
    assert await room.chains.get_auth_chain_difference_nids(room.room_nid, tips) == expected
    await assert_index_matches_walk(room, random.Random(3))


@pytest_twisted.ensureDeferred
async def test_an_event_with_many_auth_events(
        stores: tuple[EventStore, AuthChainStore]) -> None:
    room = new_room(stores)
    create = await room.create()
    members = [await room.send("m.room.member", f"@u{i}:test.local", [create])
               for i in range(40)]
    wide = await room.send("m.room.power_levels", "", [create, *members])
    n = room.nids
    assert await room.chains.get_auth_chain_nids([n[wide]]) == {n[e] for e in [create, *members]}
    await assert_index_matches_walk(room, random.Random(4))


@pytest_twisted.ensureDeferred
async def test_a_message_has_the_auth_chain_of_its_auth_events(
        stores: tuple[EventStore, AuthChainStore]) -> None:
    room = new_room(stores, "12", "!v12room")
    create = await room.create()
    member = await room.send("m.room.member", "@a:test.local", [])
    power = await room.send("m.room.power_levels", "", [member])
    message = await room.send("m.room.message", None, [power, member])
    n = room.nids
    assert await room.chains.get_auth_chain_nids([n[message]]) == {n[create], n[member], n[power]}
    # v12: the create event authorises every event without being listed
    assert await room.chains.get_auth_chain_nids([n[member]]) == {n[create]}


@pytest_twisted.ensureDeferred
async def test_events_stored_before_their_auth_events_are_indexed_when_they_arrive(
        stores: tuple[EventStore, AuthChainStore]) -> None:
    room = new_room(stores)
    create = await room.create()
    power = room.event("m.room.power_levels", "", [create])
    member = room.event("m.room.member", "@a:test.local", [create, power.event_id])
    later = room.event("m.room.join_rules", "", [create, member.event_id])
    message = room.event("m.room.message", None, [create, later.event_id])
    await room.store(member)  # its power levels event is not here yet
    await room.store(later)  # its member event waits
    await room.store(message)
    n: dict[Any, int] = {e: room.nids[e.event_id] for e in (member, later, message)}
    n[create] = room.nids[create]
    assert await index_rows(room.chains.db) == 1  # only the create event
    # while it waits, an event answers with the indexed part of its auth chain
    assert await room.chains.get_auth_chain_nids([n[later]]) == {n[create]}

    n[power] = await room.store(power)
    assert await index_rows(room.chains.db) == 4
    pending = await room.chains.db.execute(
        "pending", "SELECT COUNT(*) FROM event_auth_chain_pending")
    assert pending[0][0] == 0
    everything = {n[create], n[power], n[member]}
    assert await room.chains.get_auth_chain_nids([n[later]]) == everything
    assert await room.chains.get_auth_chain_nids([n[message]]) == everything | {n[later]}
    # the DAG edge the member event could not get when it was stored
    graph = await auth_graph(room.chains.db)
    assert n[power] in graph[n[member]]
    await assert_index_matches_walk(room, random.Random(5))


@pytest_twisted.ensureDeferred
async def test_a_missing_message_named_as_an_auth_event_is_indexed_on_arrival(
        stores: tuple[EventStore, AuthChainStore]) -> None:
    room = new_room(stores)
    create = await room.create()
    odd = room.event("m.room.message", None, [create])
    member = room.event("m.room.member", "@a:test.local", [create, odd.event_id])
    member_nid = await room.store(member)
    odd_nid = await room.store(odd)
    assert await room.chains.get_auth_chain_nids([member_nid]) == {room.nids[create], odd_nid}
    await assert_index_matches_walk(room, random.Random(6))


@pytest_twisted.ensureDeferred
async def test_ensure_indexed_indexes_events_stored_before_the_index(
        stores: tuple[EventStore, AuthChainStore], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth_chains, "BACKFILL_BATCH", 7)
    rng = random.Random("backfill")
    rooms = [new_room(stores, v, f"!old{v}") for v in ("10", "12")]
    for room in rooms:
        await build_random_room(room, rng, 80)
    db = rooms[0].chains.db

    def forget_txn(txn: Txn) -> None:
        for table in ("event_auth_chains", "event_auth_chain_links", "event_auth_chain_ids",
                      "event_auth_chain_pending"):
            txn.execute(f"DELETE FROM {table}")
        txn.execute("INSERT INTO event_auth_chain_backfill (room_nid) SELECT room_nid FROM rooms")

    await db.run_interaction("forget", forget_txn)
    chains = AuthChainStore(db)
    indexed = await chains.ensure_indexed()
    assert indexed > 0
    assert await chains.ensure_indexed() == 0
    for room in rooms:
        await assert_index_matches_walk(room, rng, rounds=30)


# -- a real room, through the client API -----------------------------------------------


async def _room_through_the_api(server: TestServer, room_version: str) -> str:
    v3 = "/_matrix/client/v3"
    alice = await server.register(f"alice{room_version}")
    others = [await server.register(f"user{i}v{room_version}") for i in range(3)]
    resp = await alice.post(f"{v3}/createRoom",
                            {"preset": "public_chat", "room_version": room_version})
    assert resp.code == 200, resp.body
    room_id: str = resp.body["room_id"]
    # v12: the creator's power is infinite and may not be listed
    levels: dict[str, int] = {} if room_version == "12" else {alice.user_id: 100}
    for i, other in enumerate(others):
        assert (await other.post(f"{v3}/rooms/{room_id}/join", {})).code == 200
        levels[other.user_id] = 50 + i
        resp = await alice.put(f"{v3}/rooms/{room_id}/state/m.room.power_levels/",
                               {"users": dict(levels), "state_default": 50})
        assert resp.code == 200, resp.body
        resp = await other.put(f"{v3}/rooms/{room_id}/state/m.room.topic/",
                               {"topic": f"topic {i}"})
        assert resp.code == 200, resp.body
        resp = await other.put(f"{v3}/rooms/{room_id}/send/m.room.message/t{i}",
                               {"msgtype": "m.text", "body": "hi"})
        assert resp.code == 200, resp.body
    assert (await others[0].post(f"{v3}/rooms/{room_id}/leave", {})).code == 200
    assert (await others[0].post(f"{v3}/rooms/{room_id}/join", {})).code == 200
    return room_id


@pytest.mark.parametrize("room_version", ["10", "12"])
@pytest_twisted.ensureDeferred
async def test_a_room_built_through_the_api_matches_state_resolutions_auth_graph(
        server: TestServer, room_version: str) -> None:
    room_id = await _room_through_the_api(server, room_version)
    stores = server.hs.stores
    rows = await stores.db.execute(
        "room", "SELECT e.room_nid, e.event_nid, e.state_key FROM events e"
        " JOIN rooms r ON r.room_nid = e.room_nid WHERE r.room_id = ?", (room_id,))
    room_nid = int(rows[0][0])
    nids = sorted(int(r[1]) for r in rows)
    state_nids = sorted(int(r[1]) for r in rows if r[2] is not None)
    events = await stores.events.get_events_by_nid(nids)
    nid_of = {e.event_id: n for n, e in events.items()}
    graph = AuthGraph({e.event_id: e for e in events.values()})
    chains = stores.auth_chains
    for n, event in events.items():
        expected = {nid_of[graph.event_ids[a]]
                    for a in graph.ancestors([graph.nid(event.event_id)])}
        assert await chains.get_auth_chain_nids([n]) == expected, event

    walk_graph = await auth_graph(stores.db)
    rng = random.Random(room_version)
    for _ in range(40):
        sets = [set(rng.sample(state_nids, rng.randint(1, 6))) for _ in range(rng.randint(2, 3))]
        assert await chains.get_auth_chain_difference_nids(room_nid, sets) \
            == difference(walk_graph, sets)
