"""State snapshots: shared blocks, deduplication and garbage collection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_twisted

from homeserver.storage.database import Txn
from homeserver.storage.state import BLOCK_TARGET, StateStore, bucket_count_for
from tests.storage.conftest import (
    Databases,
    key_nids,
    prepare,
    reference_snapshot_txn,
    release_snapshot,
)

ROOM = 1


@pytest_twisted.async_yield_fixture
async def store(databases: Databases) -> AsyncIterator[StateStore]:
    db = databases.open()
    await prepare(db)
    yield StateStore(db)


async def snapshot(store: StateStore, base: int | None, delta: dict[int, int | None]) -> int:
    def txn_fn(txn: Txn) -> int:
        nid = StateStore.create_snapshot_txn(txn, ROOM, base, delta)
        reference_snapshot_txn(txn, ROOM, nid)
        return nid

    return int(await store.db.run_interaction("snapshot", txn_fn))


@pytest_twisted.ensureDeferred
async def test_state_key_nids_are_stable(store: StateStore) -> None:
    first = await key_nids(store.db, 5)
    again = await key_nids(store.db, 5)
    assert first == again
    assert len(set(first)) == 5


@pytest_twisted.ensureDeferred
async def test_a_snapshot_reads_back_as_written(store: StateStore) -> None:
    keys = await key_nids(store.db, 300)
    state = {k: 1000 + i for i, k in enumerate(keys)}
    nid = await snapshot(store, None, dict(state))
    assert await store.get_snapshot(nid) == state

    changed = await snapshot(store, nid, {keys[7]: 5000, keys[8]: None})
    expected = dict(state)
    expected[keys[7]] = 5000
    del expected[keys[8]]
    assert await store.get_snapshot(changed) == expected
    assert await store.get_snapshot(nid) == state  # the old one is untouched


@pytest_twisted.ensureDeferred
async def test_snapshots_after_single_changes_share_unchanged_blocks(store: StateStore) -> None:
    size, changes = 1000, 200
    keys = await key_nids(store.db, size)
    current = await snapshot(store, None, {k: i + 1 for i, k in enumerate(keys)})
    initial = await store.counts()
    assert initial.block_entries == size

    for n in range(changes):
        current = await snapshot(store, current, {keys[n % size]: 100_000 + n})

    counts = await store.counts()
    assert counts.snapshots == changes + 1
    # every change writes one new block of about BLOCK_TARGET entries, not a
    # whole copy of the state
    new_entries = counts.block_entries - initial.block_entries
    assert new_entries <= changes * BLOCK_TARGET * 2
    assert new_entries < changes * size / 10
    assert counts.blocks - initial.blocks == changes
    final = await store.get_snapshot(current)
    assert len(final) == size
    assert final[keys[changes - 1]] == 100_000 + changes - 1


@pytest_twisted.ensureDeferred
async def test_the_same_state_is_one_snapshot(store: StateStore) -> None:
    keys = await key_nids(store.db, 10)
    a = await snapshot(store, None, {k: 1 for k in keys})
    b = await snapshot(store, None, {k: 1 for k in keys})
    c = await snapshot(store, a, {keys[0]: 1})
    assert a == b == c
    assert (await store.counts()).snapshots == 1


@pytest_twisted.ensureDeferred
async def test_growing_state_is_rebucketed_and_stays_correct(store: StateStore) -> None:
    keys = await key_nids(store.db, 400)
    current = await snapshot(store, None, {keys[0]: 1})
    for i, k in enumerate(keys[1:], start=2):
        current = await snapshot(store, current, {k: i})
    state = await store.get_snapshot(current)
    assert state == {k: i for i, k in enumerate(keys, start=1)}
    assert bucket_count_for(400, None) > 1


@pytest_twisted.ensureDeferred
async def test_gc_removes_unreferenced_snapshots_and_their_blocks(store: StateStore) -> None:
    keys = await key_nids(store.db, 100)
    base = await snapshot(store, None, {k: i for i, k in enumerate(keys)})
    kept = await snapshot(store, base, {keys[0]: 9999})
    dropped = await snapshot(store, base, {keys[1]: 8888})
    before = await store.counts()

    assert await store.garbage_collect() == (0, 0)  # everything is referenced

    await release_snapshot(store.db, dropped)
    snapshots, blocks = await store.garbage_collect()

    assert snapshots == 1
    assert blocks == 1  # only the block holding keys[1] -> 8888 was its own
    after = await store.counts()
    assert after.snapshots == before.snapshots - 1
    assert after.blocks == before.blocks - 1
    assert await store.get_snapshot(dropped) == {}
    assert (await store.get_snapshot(kept))[keys[0]] == 9999
    assert len(await store.get_snapshot(base)) == 100

    await release_snapshot(store.db, base)
    await release_snapshot(store.db, kept)
    await store.garbage_collect()
    assert await store.counts() == type(after)(0, 0, 0, 0)
