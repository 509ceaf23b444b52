"""ReceiptStore: what /sync reads, on a bare database (both engines).

Events are stand-in rows of ``events`` (only their IDs and stream positions
matter to receipts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted

from homeserver.storage.database import Database, Txn
from homeserver.storage.receipts import ReceiptStore
from homeserver.storage.streams import current_stream_id
from tests.storage.conftest import Databases, prepare

ROOM = "!room:test.local"
OTHER = "!other:test.local"
ALICE = "@alice:test.local"
BOB = "@bob:test.local"


@pytest_twisted.async_yield_fixture
async def store(databases: Databases) -> AsyncIterator[ReceiptStore]:
    db = databases.open()
    await prepare(db)
    yield ReceiptStore(db)


async def add_events(db: Database, *events: tuple[str, int]) -> None:
    """Stand-in events: (event ID, stream position)."""
    def txn_fn(txn: Txn) -> None:
        for event_id, pos in events:
            txn.execute(
                "INSERT INTO events (event_id, room_nid, stream_ordering, depth, event_type,"
                " sender, origin_server_ts, json) VALUES (?, 1, ?, 1, 'm.room.message', ?, 0,"
                " '{}')", (event_id, pos, ALICE))
    await db.run_interaction("add_events", txn_fn)


async def write(store: ReceiptStore, room_id: str, user_id: str, event_id: str,
                receipt_type: str = "m.read", thread_id: str | None = None,
                ts: int = 1) -> int | None:
    return await store.upsert_receipt(room_id, user_id, receipt_type, thread_id, event_id,
                                      {"ts": ts})


async def now(store: ReceiptStore) -> int:
    return await current_stream_id(store.db)


@pytest_twisted.ensureDeferred
async def test_rooms_with_receipts_are_those_written_in_the_range(store: ReceiptStore) -> None:
    await add_events(store.db, ("$a", 100), ("$b", 101))
    first = await write(store, ROOM, ALICE, "$a")
    second = await write(store, OTHER, ALICE, "$b")
    assert first is not None and second is not None

    assert await store.get_rooms_with_receipts(0, second) == {ROOM, OTHER}
    assert await store.get_rooms_with_receipts(first, second) == {OTHER}
    assert await store.get_rooms_with_receipts(0, first) == {ROOM}
    assert await store.get_rooms_with_receipts(second, second) == set()


@pytest_twisted.ensureDeferred
async def test_receipt_events_have_the_m_receipt_shape(store: ReceiptStore) -> None:
    await add_events(store.db, ("$a", 100))
    await write(store, ROOM, ALICE, "$a", ts=1234)
    await write(store, ROOM, BOB, "$a", thread_id="main", ts=5678)

    events = await store.get_receipt_events([ROOM], None, await now(store), ALICE)

    assert events == {ROOM: {"$a": {"m.read": {
        ALICE: {"ts": 1234},
        BOB: {"ts": 5678, "thread_id": "main"}}}}}


@pytest_twisted.ensureDeferred
async def test_receipt_events_since_a_position_hold_only_newer_writes(
        store: ReceiptStore) -> None:
    await add_events(store.db, ("$a", 100), ("$b", 101))
    mark = await write(store, ROOM, ALICE, "$a")
    await write(store, ROOM, BOB, "$b")
    assert mark is not None

    since = await store.get_receipt_events([ROOM, OTHER], mark, await now(store), ALICE)
    until_mark = await store.get_receipt_events([ROOM], None, mark, ALICE)

    assert since == {ROOM: {"$b": {"m.read": {BOB: {"ts": 1}}}}}
    assert until_mark == {ROOM: {"$a": {"m.read": {ALICE: {"ts": 1}}}}}


@pytest_twisted.ensureDeferred
async def test_private_receipts_are_only_the_owners(store: ReceiptStore) -> None:
    await add_events(store.db, ("$a", 100))
    await write(store, ROOM, BOB, "$a", "m.read.private")
    until = await now(store)

    assert await store.get_receipt_events([ROOM], None, until, ALICE) == {}
    assert await store.get_receipt_events([ROOM], None, until, BOB) == {
        ROOM: {"$a": {"m.read.private": {BOB: {"ts": 1}}}}}


@pytest_twisted.ensureDeferred
async def test_one_receipt_per_type_and_thread(store: ReceiptStore) -> None:
    await add_events(store.db, ("$a", 100), ("$b", 101), ("$c", 102))
    await write(store, ROOM, ALICE, "$a")
    await write(store, ROOM, ALICE, "$a", thread_id="main")
    await write(store, ROOM, ALICE, "$a", thread_id="$root")
    await write(store, ROOM, ALICE, "$b")
    await write(store, ROOM, ALICE, "$c", thread_id="$root")

    events = await store.get_receipt_events([ROOM], None, await now(store), ALICE)

    receipts: list[tuple[str, Any]] = [
        (event_id, data.get("thread_id")) for event_id, by_type in events[ROOM].items()
        for data in by_type["m.read"].values()]
    assert sorted(receipts, key=str) == sorted(
        [("$b", None), ("$a", "main"), ("$c", "$root")], key=str)


@pytest_twisted.ensureDeferred
async def test_older_or_same_event_does_not_move_the_receipt(store: ReceiptStore) -> None:
    await add_events(store.db, ("$a", 100), ("$b", 101))
    assert await write(store, ROOM, ALICE, "$b") is not None
    before = await now(store)

    older = await write(store, ROOM, ALICE, "$a")
    same = await write(store, ROOM, ALICE, "$b")

    assert (older, same) == (None, None)
    assert await now(store) == before
    assert await store.get_receipt(ROOM, ALICE, "m.read") == ("$b", {"ts": 1})
    # another thread is its own receipt
    assert await write(store, ROOM, ALICE, "$a", thread_id="main") is not None


@pytest_twisted.ensureDeferred
async def test_own_receipt_position_is_the_newest_read_or_private(
        store: ReceiptStore) -> None:
    await add_events(store.db, ("$a", 100), ("$b", 101), ("$c", 102), ("$d", 103))
    await write(store, ROOM, ALICE, "$a")
    await write(store, ROOM, ALICE, "$b", "m.read.private")
    await write(store, ROOM, ALICE, "$d", thread_id="$root")  # a thread: not counted
    await write(store, OTHER, ALICE, "$a", thread_id="main")
    await write(store, OTHER, BOB, "$d")  # somebody else's

    positions = await store.get_own_receipt_positions(ALICE, [ROOM, OTHER, "!none:x"])

    assert positions == {ROOM: 101, OTHER: 100}


@pytest_twisted.ensureDeferred
async def test_no_rooms_no_queries(store: ReceiptStore) -> None:
    assert await store.get_receipt_events([], None, 10, ALICE) == {}
    assert await store.get_own_receipt_positions(ALICE, []) == {}


@pytest_twisted.ensureDeferred
async def test_many_rooms_are_read_in_chunks(store: ReceiptStore) -> None:
    await add_events(store.db, ("$a", 100))
    rooms = [f"!r{i}:test.local" for i in range(1200)]

    def txn_fn(txn: Txn) -> None:
        for room_id in rooms:
            ReceiptStore.upsert_receipt_txn(txn, room_id, ALICE, "m.read", None, "$a",
                                            {"ts": 1})
    await store.db.run_interaction("many", txn_fn)

    events = await store.get_receipt_events(rooms, None, await now(store), BOB)
    positions = await store.get_own_receipt_positions(ALICE, rooms)

    assert set(events) == set(rooms)
    assert set(positions.values()) == {100} and len(positions) == len(rooms)
