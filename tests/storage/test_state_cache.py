"""The state block cache: reads come from memory, stay bounded, and agree
with the database whatever the cache's size."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_twisted

from homeserver.storage.database import Database, Txn
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore
from tests.storage.conftest import (
    Databases,
    key_nids,
    prepare,
    reference_snapshot_txn,
    release_snapshot,
)

ROOM = 1


@pytest_twisted.async_yield_fixture
async def db(databases: Databases) -> AsyncIterator[Database]:
    db = databases.open()
    await prepare(db)
    yield db


class StatementLog:
    """Every statement the database runs, through a hook on ``Txn.execute``."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def on(self, table: str) -> int:
        return sum(1 for s in self.statements if table in s)

    def clear(self) -> None:
        self.statements.clear()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatementLog]:
    log = StatementLog()
    real = Txn.execute

    def execute(self: Txn, sql: str, params: Any = ()) -> Txn:
        log.statements.append(sql)
        return real(self, sql, params)

    real_many = Txn.execute_many

    def execute_many(self: Txn, sql: str, rows: Any) -> None:
        log.statements.append(sql)
        real_many(self, sql, rows)

    monkeypatch.setattr(Txn, "execute", execute)
    monkeypatch.setattr(Txn, "execute_many", execute_many)
    yield log


async def snapshot(db: Database, base: int | None, delta: dict[int, int | None]) -> int:
    def txn_fn(txn: Txn) -> int:
        nid = StateStore.create_snapshot_txn(txn, ROOM, base, delta)
        reference_snapshot_txn(txn, ROOM, nid)
        return nid

    return int(await db.run_interaction("snapshot", txn_fn))


async def delete_all_state_rows(db: Database) -> None:
    def txn_fn(txn: Txn) -> None:
        txn.execute("DELETE FROM state_block_entries")
        txn.execute("DELETE FROM state_snapshot_blocks")

    await db.run_interaction("delete_behind_its_back", txn_fn)


async def read_keys(store: StateStore, snapshot_nid: int, keys: list[int]) -> dict[int, int]:
    states = await store.db.run_interaction(
        "read_keys", store.load_snapshots_txn, [snapshot_nid], keys)
    return dict(states.get(snapshot_nid, {}))


@pytest_twisted.ensureDeferred
async def test_a_cached_snapshot_reads_after_its_rows_are_gone(db: Database) -> None:
    keys = await key_nids(db, 300)
    state = {k: 1000 + i for i, k in enumerate(keys)}
    nid = await snapshot(db, None, state)
    cached, uncached = StateStore(db), StateStore(db, cache_size=0)
    assert await cached.get_snapshot(nid) == state
    assert await uncached.get_snapshot(nid) == state

    await delete_all_state_rows(db)

    assert await cached.get_snapshot(nid) == state
    assert await uncached.get_snapshot(nid) == {}


@pytest_twisted.ensureDeferred
async def test_reading_a_snapshot_twice_queries_its_blocks_once(
        db: Database, statements: StatementLog) -> None:
    keys = await key_nids(db, 500)
    base = await snapshot(db, None, {k: i for i, k in enumerate(keys)})
    changed = await snapshot(db, base, {keys[3]: 99_999})
    store = StateStore(db)

    statements.clear()
    await store.get_snapshot(base)
    assert statements.on("state_block_entries") == 1
    assert statements.on("state_snapshot_blocks") == 1

    statements.clear()
    assert len(await store.get_snapshot(base)) == 500
    assert statements.statements == []

    # a snapshot sharing all but one block: one query, for the missing block
    statements.clear()
    assert (await store.get_snapshot(changed))[keys[3]] == 99_999
    assert statements.on("state_block_entries") == 1
    assert statements.on("state_snapshot_blocks") == 1


@pytest_twisted.ensureDeferred
async def test_reading_some_keys_fetches_only_their_blocks(
        db: Database, statements: StatementLog) -> None:
    keys = await key_nids(db, 1000)
    nid = await snapshot(db, None, {k: i for i, k in enumerate(keys)})
    store = StateStore(db)

    assert await read_keys(store, nid, [keys[10], keys[20]]) == {keys[10]: 10, keys[20]: 20}
    assert 0 < store.cache.weight < 200  # two blocks and the block list, not 1000 entries


@pytest_twisted.ensureDeferred
async def test_the_cache_holds_at_most_its_size_in_entries(db: Database) -> None:
    keys = await key_nids(db, 200)
    snapshots = []
    for n in range(10):
        snapshots.append(await snapshot(db, None, {k: n * 1000 + i for i, k in enumerate(keys)}))
    store = StateStore(db, cache_size=500)

    for n, nid in enumerate(snapshots):
        state = await store.get_snapshot(nid)
        assert state == {k: n * 1000 + i for i, k in enumerate(keys)}
        assert store.cache.weight <= 500
    assert len(store.cache) > 0
    # the most recent read is still there; the first was evicted
    await delete_all_state_rows(db)
    assert len(await store.get_snapshot(snapshots[-1])) == 200
    assert await store.get_snapshot(snapshots[0]) == {}


@pytest_twisted.ensureDeferred
async def test_gc_drops_what_it_deletes_from_the_cache(db: Database) -> None:
    keys = await key_nids(db, 100)
    base = await snapshot(db, None, {k: i for i, k in enumerate(keys)})
    dropped = await snapshot(db, base, {keys[1]: 8888})
    store = StateStore(db)
    assert (await store.get_snapshot(dropped))[keys[1]] == 8888
    before = store.cache.weight

    await release_snapshot(store.db, dropped)
    assert await store.garbage_collect() == (1, 1)

    assert await store.get_snapshot(dropped) == {}
    assert store.cache.weight < before
    assert len(await store.get_snapshot(base)) == 100


@pytest_twisted.ensureDeferred
async def test_another_process_writing_snapshots_cannot_make_the_cache_wrong(
        databases: Databases, db: Database) -> None:
    keys = await key_nids(db, 300)
    state = {k: i for i, k in enumerate(keys)}
    base = await snapshot(db, None, state)
    ours = StateStore(db)
    assert await ours.get_snapshot(base) == state

    other = databases.open()
    changed = await snapshot(other, base, {keys[0]: 5555, keys[1]: None})

    expected = dict(state)
    expected[keys[0]] = 5555
    del expected[keys[1]]
    assert await ours.get_snapshot(changed) == expected
    assert await ours.get_snapshot(base) == state


@pytest_twisted.ensureDeferred
async def test_reads_are_the_same_with_the_cache_off_small_and_large(db: Database) -> None:
    rng = random.Random(7)
    keys = await key_nids(db, 600)
    model: dict[int, int] = {}
    current: int | None = None
    history: list[tuple[int, dict[int, int]]] = []
    # grows (re-bucketing on the way), changes and removes entries
    for step in range(150):
        delta: dict[int, int | None] = {}
        for _ in range(rng.randint(1, 8)):
            key = rng.choice(keys[:100 + step * 4])
            delta[key] = None if rng.random() < 0.15 else step * 1000 + rng.randint(0, 999)
        current = await snapshot(db, current, delta)
        for k, v in delta.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        history.append((current, dict(model)))

    stores = [StateStore(db, cache_size=0), StateStore(db, cache_size=300),
              StateStore(db, cache_size=10_000_000)]
    for _ in range(2):  # cold, then warm
        for nid, expected in history[::7]:
            wanted = rng.sample(keys, 5)
            for store in stores:
                assert await store.get_snapshot(nid) == expected
                assert await read_keys(store, nid, wanted) == {
                    k: expected[k] for k in wanted if k in expected}
    assert stores[1].cache.weight <= 300


@pytest_twisted.ensureDeferred
async def test_state_at_events_is_the_same_with_the_cache_off(make_server: Any) -> None:
    server = await make_server()
    alice = await server.register("alice")
    room_id = (await alice.post("/_matrix/client/v3/createRoom",
                                {"preset": "public_chat"})).body["room_id"]
    event_ids = []
    for n in range(5):
        user = await server.register(f"user{n}")
        await user.post(f"/_matrix/client/v3/rooms/{room_id}/join", {})
        sent = await alice.put(
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{n}",
            {"msgtype": "m.text", "body": str(n)})
        event_ids.append(sent.body["event_id"])
    keys = [("m.room.history_visibility", ""), ("m.room.member", "@user2:test.local"),
            ("m.room.member", "@nobody:test.local")]

    hs = server.hs
    cached = await hs.stores.events.get_state_at_events(event_ids, keys)
    again = await hs.stores.events.get_state_at_events(event_ids, keys)
    uncached = await EventStore(hs.db, 10, StateStore(hs.db, 0)).get_state_at_events(
        event_ids, keys)
    assert cached == again == uncached
    assert [("m.room.member", "@user2:test.local") in cached[e] for e in event_ids] == [
        False, False, True, True, True]
    assert all(("m.room.history_visibility", "") in cached[e] for e in event_ids)


@pytest_twisted.ensureDeferred
async def test_state_cache_size_is_scaled_by_the_cache_factor(make_server: Any) -> None:
    default = await make_server()
    assert default.hs.stores.state.cache.max_weight == 256_000  # 500K (500 x 1024) x 0.5
    assert default.hs.stores.events.state is default.hs.stores.state
    off = await make_server(state_cache_size=0)
    assert off.hs.stores.state.cache.max_weight == 0


STATE_TABLES = ("state_keys", "state_snapshots", "state_snapshot_blocks", "state_blocks",
                "state_block_entries", "current_state", "room_memberships")


def state_writes(log: StatementLog) -> list[str]:
    """The statements that wrote to a state table."""
    out = []
    for sql in log.statements:
        words = sql.split()
        verb = words[0].upper() if words else ""
        if verb in ("INSERT", "UPDATE", "DELETE") and any(
                t in w for t in STATE_TABLES for w in words[1:4]):
            out.append(sql)
    return out


@pytest_twisted.ensureDeferred
async def test_sending_messages_writes_no_state_row(
        make_server: Any, statements: StatementLog) -> None:
    server = await make_server()
    alice = await server.register("alice")
    room_id = (await alice.post("/_matrix/client/v3/createRoom",
                                {"preset": "public_chat"})).body["room_id"]
    await alice.put(f"/_matrix/client/v3/rooms/{room_id}/state/m.room.topic/",
                    {"topic": "t"})
    assert state_writes(statements)  # the hook sees the writes of state events

    statements.clear()
    for n in range(5):
        sent = await alice.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/m{n}",
                               {"msgtype": "m.text", "body": str(n)})
        assert sent.code == 200
    assert any("INSERT INTO events" in s for s in statements.statements)
    assert state_writes(statements) == []

    # a state change after them writes its snapshot; the messages keep theirs
    statements.clear()
    await alice.put(f"/_matrix/client/v3/rooms/{room_id}/state/m.room.topic/",
                    {"topic": "u"})
    assert any("state_snapshots" in s for s in state_writes(statements))
    assert await server.hs.stores.state.garbage_collect() == (0, 0)


@pytest_twisted.ensureDeferred
async def test_gc_removes_unreferenced_snapshots_and_keeps_the_rooms(make_server: Any) -> None:
    server = await make_server()
    alice = await server.register("alice")
    room_id = (await alice.post("/_matrix/client/v3/createRoom",
                                {"preset": "public_chat"})).body["room_id"]
    for n in range(3):
        await alice.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/m{n}",
                        {"msgtype": "m.text", "body": str(n)})
    hs = server.hs
    store = hs.stores.state
    room = await hs.stores.rooms.get_room(room_id)
    assert room is not None

    def orphan_txn(txn: Txn) -> int:
        # a snapshot no event or room points at (a purge's leftover)
        current = txn.select_value("SELECT current_snapshot_nid FROM rooms"
                                   " WHERE room_nid = ?", (room.room_nid,))
        key = StateStore.get_or_create_state_key_nids_txn(
            txn, [("m.room.topic", "")])[("m.room.topic", "")]
        return StateStore.create_snapshot_txn(txn, room.room_nid, int(current),
                                              {key: 999_999})

    before = await store.counts()
    orphan = await hs.db.run_interaction("orphan", orphan_txn)
    assert len(await store.get_snapshot(orphan)) > 0
    snapshots, blocks = await store.garbage_collect()
    assert (snapshots, blocks) == (1, 1)  # the orphan and the one block it alone listed
    assert await store.counts() == before
    assert await store.get_snapshot(orphan) == {}
    # every snapshot an event points at is still there and readable
    state = (await alice.get(f"/_matrix/client/v3/rooms/{room_id}/state")).body
    assert any(e["type"] == "m.room.create" for e in state)
    assert await store.garbage_collect() == (0, 0)


@pytest_twisted.ensureDeferred
async def test_reusing_a_snapshot_by_its_hash_writes_its_row(
        db: Database, statements: StatementLog) -> None:
    """What stops a concurrent GC deleting a snapshot we are about to point
    at: reusing one writes its row (see StateStore._store_snapshot_txn)."""
    keys = await key_nids(db, 10)
    first = await snapshot(db, None, {k: 1 for k in keys})
    statements.clear()
    again = await snapshot(db, None, {k: 1 for k in keys})
    assert again == first
    assert any(s.startswith("UPDATE state_snapshots") for s in statements.statements)
