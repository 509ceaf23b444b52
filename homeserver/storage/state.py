"""State snapshots: the state of a room at an event, shared and garbage-collected.

The state at (after) an event is a *snapshot*, a map from state-key NID
(an interned ``(type, state_key)``) to event NID. A snapshot is stored as a
list of *blocks*, one per non-empty bucket:

- the entries are split into ``bucket_count`` buckets (a power of two) by a
  multiplicative hash of the state-key NID, so an entry always lands in the
  same bucket of a snapshot with the same bucket count;
- each bucket's entries form a block, stored once, under the SHA-256 of its
  entries (``state_blocks.block_hash``), however many snapshots list it;
- a new snapshot made from an old one plus a change of k state keys writes at
  most k new blocks and one row per bucket; every other block is reused. The
  bucket count follows the state's size (blocks of ~16-64 entries): it
  changes, and every block is rewritten, only when the state grows or
  shrinks by a factor of four, so the cost is amortised;
- snapshots are deduplicated too (``snapshot_hash``): the same state twice
  is one snapshot.

References. A snapshot is in use while an event's ``snapshot_nid`` or a
room's ``current_snapshot_nid`` points at it; snapshots carry no reference
count, so persisting an event (a message shares the room's current snapshot)
writes no state row. ``state_blocks.ref_count`` counts the snapshots that
list a block; it changes only when a snapshot is created or deleted.
``garbage_collect_txn`` finds the snapshots nothing points at by query
(``events.snapshot_nid`` is indexed), deletes them and decrements their
blocks, then deletes the blocks no snapshot lists. Whoever stops pointing
at a snapshot (purging history) only has to delete or update its rows.

The cache. Reads (``load_snapshots_txn`` and everything built on it) keep
blocks (block NID -> its entries, a flat ``array`` of state-key NID, event
NID pairs), snapshots' block lists (snapshot NID -> bucket count and
(bucket, block NID) pairs) and what the NIDs in them name (state-key NID ->
``(type, state_key)``, event NID -> event ID) in one LRU cache bounded by the
number of entries it holds (a block of n entries counts n; a block list of
n blocks n + 1; a name 1), ``state_cache_size`` x ``caches.global_factor``
(0 disables it). A read takes what it can from the cache and asks the
database for the rest, one query per kind (missing block lists, missing
blocks, missing names); a read of some state keys only fetches the blocks of
their buckets.

Nothing in the cache can go stale, in this process or because of another
one writing to the same database: a block is content-addressed and a
snapshot's block list is fixed when it is written; neither is ever updated,
only deleted by garbage collection once nothing references it, and NIDs are
never reused (``BIGSERIAL``; ``AUTOINCREMENT`` on SQLite). State keys and
event IDs are interned once and never renamed. So another process
writing new snapshots adds rows this cache has never seen, and deleting
unreferenced ones leaves at worst a dead entry no read will ask for (our own
``garbage_collect`` drops what it deletes anyway). The write path
(``create_snapshot_txn``) reads the database directly.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.storage.cache import WeightedLruCache
from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import chunks, placeholders, select_in_txn

# Blocks hold between TARGET/4 and TARGET*2 entries on average.
BLOCK_TARGET = 32
MAX_BUCKETS = 1 << 16

StateKey = tuple[str, str]

# state_cache_size's default, "500K" (Synapse's stateGroupMembersCache holds
# 500,000), before caches.global_factor.
DEFAULT_STATE_CACHE_SIZE = 500 * 1024
# Rows of NIDs asked for in one IN (...): far below both engines' limits.
MAX_IN = 10_000



def bucket_count_for(entries: int, previous: int | None = None) -> int:
    """How many buckets a snapshot of ``entries`` entries uses.

    Keeps ``previous`` while blocks stay within [TARGET/4, TARGET*2] entries
    on average, so a growing state is not re-bucketed at every change.
    """
    if previous is not None and (previous == 1 or entries * 4 >= previous * BLOCK_TARGET) \
            and entries <= previous * BLOCK_TARGET * 2:
        return previous
    count = 1
    while count * BLOCK_TARGET < entries and count < MAX_BUCKETS:
        count *= 2
    return count


def bucket_of(state_key_nid: int, bucket_count: int) -> int:
    if bucket_count == 1:
        return 0
    bits = bucket_count.bit_length() - 1
    return ((state_key_nid * 2654435761) & 0xFFFFFFFF) >> (32 - bits)


def _block_hash(entries: Mapping[int, int]) -> bytes:
    """The raw 32-byte SHA-256 a block is stored under (``$BLOB``)."""
    text = ",".join(f"{k}:{entries[k]}" for k in sorted(entries))
    return hashlib.sha256(text.encode("ascii")).digest()


@dataclass(frozen=True, slots=True)
class SnapshotBlocks:
    """A snapshot's block list: ``blocks[i]`` holds bucket ``buckets[i]``."""

    bucket_count: int
    buckets: tuple[int, ...]
    blocks: tuple[int, ...]


# A block: its entries as a flat array [state_key_nid, event_nid, ...].
Block = array

# Cache keys: NID << 2 | kind (an int: compact, and hashed fast).
_BLOCK = 0
_SNAPSHOT = 1
_STATE_KEY = 2  # the interned (type, state_key)
_EVENT_ID = 3


def _weigh(value: object) -> int:
    if isinstance(value, SnapshotBlocks):
        return len(value.blocks) + 1
    if isinstance(value, array):
        return max(1, len(value) // 2)
    return 1


@dataclass(frozen=True)
class StateStorageCounts:
    snapshots: int
    blocks: int
    block_entries: int
    snapshot_blocks: int


class StateStore:
    def __init__(self, db: Database, cache_size: int = DEFAULT_STATE_CACHE_SIZE) -> None:
        self.db = db
        # blocks, snapshot block lists and the names of the NIDs in them
        # (state keys, event IDs), bounded by the entries they hold
        self.cache: WeightedLruCache[int, Any] = WeightedLruCache(
            cache_size, _weigh)

    # -- state keys --------------------------------------------------------

    @staticmethod
    def get_state_key_nids_txn(txn: Txn, pairs: Iterable[StateKey]) -> dict[StateKey, int]:
        """The NIDs of those of ``pairs`` that have one."""
        wanted = list(dict.fromkeys(pairs))
        out: dict[StateKey, int] = {}
        for chunk in chunks(wanted, 200):
            where = " OR ".join(["(event_type = ? AND state_key = ?)"] * len(chunk))
            params = [v for pair in chunk for v in pair]
            for nid, etype, skey in txn.select_all(
                    f"SELECT state_key_nid, event_type, state_key FROM state_keys WHERE {where}",
                    params):
                out[(etype, skey)] = int(nid)
        return out

    @classmethod
    def get_or_create_state_key_nids_txn(cls, txn: Txn,
                                         pairs: Iterable[StateKey]) -> dict[StateKey, int]:
        wanted = list(dict.fromkeys(pairs))
        out = cls.get_state_key_nids_txn(txn, wanted)
        new = [pair for pair in wanted if pair not in out]
        # a join over federation brings hundreds of new keys: multi-row inserts
        for chunk in chunks(new, 200):
            for nid, etype, skey in txn.select_all(
                    "INSERT INTO state_keys (event_type, state_key) VALUES "
                    + ",".join(["(?, ?)"] * len(chunk))
                    + " ON CONFLICT (event_type, state_key) DO NOTHING"
                    " RETURNING state_key_nid, event_type, state_key",
                    [v for pair in chunk for v in pair]):
                out[(etype, skey)] = int(nid)
        missing = [pair for pair in new if pair not in out]
        if missing:  # inserted meanwhile by a concurrent writer
            out.update(cls.get_state_key_nids_txn(txn, missing))
        return out

    # -- building snapshots ------------------------------------------------

    @staticmethod
    def _block_txn(txn: Txn, entries: Mapping[int, int]) -> int:
        """The block holding exactly ``entries``, stored if new (ref_count untouched)."""
        digest = _block_hash(entries)
        nid = txn.select_value("SELECT block_nid FROM state_blocks WHERE block_hash = ?",
                               (digest,))
        if nid is not None:
            return int(nid)
        nid = txn.select_value(
            "INSERT INTO state_blocks (block_hash, ref_count) VALUES (?, 0)"
            " ON CONFLICT (block_hash) DO NOTHING RETURNING block_nid", (digest,))
        if nid is None:  # pragma: no cover - only a concurrent writer gets here
            return int(txn.select_value(
                "SELECT block_nid FROM state_blocks WHERE block_hash = ?", (digest,)))
        txn.execute_many(
            "INSERT INTO state_block_entries (block_nid, state_key_nid, event_nid)"
            " VALUES (?, ?, ?)", [(nid, k, v) for k, v in entries.items()])
        return int(nid)

    @staticmethod
    def _store_snapshot_txn(txn: Txn, room_nid: int, bucket_count: int, entry_count: int,
                            blocks: Mapping[int, int]) -> int:
        """The snapshot made of ``blocks`` (bucket -> block NID), stored if new."""
        text = f"{room_nid}|{bucket_count}|" + ",".join(
            f"{b}:{blocks[b]}" for b in sorted(blocks))
        digest = hashlib.sha256(text.encode("ascii")).digest()
        nid = txn.select_value(
            "SELECT snapshot_nid FROM state_snapshots WHERE snapshot_hash = ?", (digest,))
        if nid is not None:
            # An existing snapshot, which may be unreferenced and so a
            # candidate for a concurrent garbage collection. Write to its row
            # (a no-op update, but a new row version): on PostgreSQL under
            # REPEATABLE READ a GC that has seen it unreferenced then fails
            # to delete it with a serialization failure (and retries, seeing
            # our reference), and if the GC deleted it first this update
            # fails the same way and we retry, making it anew. Only a state
            # change that returns to a state seen before gets here; a message
            # reuses the room's current snapshot and writes nothing.
            txn.execute("UPDATE state_snapshots SET entry_count = entry_count"
                        " WHERE snapshot_nid = ?", (nid,))
            if txn.rowcount != 1:  # pragma: no cover - deleted under us (SQLite)
                raise ValueError(f"state snapshot {nid} vanished")
            return int(nid)
        nid = int(txn.select_value(
            "INSERT INTO state_snapshots"
            " (room_nid, snapshot_hash, bucket_count, entry_count)"
            " VALUES (?, ?, ?, ?) RETURNING snapshot_nid",
            (room_nid, digest, bucket_count, entry_count)))
        txn.execute_many(
            "INSERT INTO state_snapshot_blocks (snapshot_nid, bucket, block_nid)"
            " VALUES (?, ?, ?)", [(nid, b, blk) for b, blk in blocks.items()])
        txn.execute_many("UPDATE state_blocks SET ref_count = ref_count + 1"
                         " WHERE block_nid = ?", [(blk,) for blk in blocks.values()])
        return nid

    @classmethod
    def snapshot_from_map_txn(cls, txn: Txn, room_nid: int, state: Mapping[int, int],
                              bucket_count: int | None = None) -> int:
        """The snapshot of the whole state ``state`` (state-key NID -> event NID)."""
        count = bucket_count or bucket_count_for(len(state))
        buckets: dict[int, dict[int, int]] = {}
        for key, event in state.items():
            buckets.setdefault(bucket_of(key, count), {})[key] = event
        blocks = {b: cls._block_txn(txn, entries) for b, entries in buckets.items()}
        return cls._store_snapshot_txn(txn, room_nid, count, len(state), blocks)

    @classmethod
    def create_snapshot_txn(cls, txn: Txn, room_nid: int, base_snapshot_nid: int | None,
                            delta: Mapping[int, int | None]) -> int:
        """The snapshot of ``base`` changed by ``delta`` (event NID None: removed).

        Reads and writes only the blocks of the buckets ``delta`` touches,
        unless the state's size calls for another bucket count.
        """
        if base_snapshot_nid is None:
            return cls.snapshot_from_map_txn(
                txn, room_nid, {k: v for k, v in delta.items() if v is not None})
        row = txn.select_one("SELECT bucket_count, entry_count FROM state_snapshots"
                             " WHERE snapshot_nid = ?", (base_snapshot_nid,))
        if row is None:
            raise ValueError(f"no state snapshot {base_snapshot_nid}")
        count, entry_count = int(row[0]), int(row[1])
        blocks = {int(b): int(blk) for b, blk in txn.select_all(
            "SELECT bucket, block_nid FROM state_snapshot_blocks WHERE snapshot_nid = ?",
            (base_snapshot_nid,))}
        touched = {bucket_of(k, count) for k in delta}
        old_blocks = [blocks[b] for b in touched if b in blocks]
        entries: dict[int, dict[int, int]] = {b: {} for b in touched}
        if old_blocks:
            for key, event in txn.select_all(
                    "SELECT state_key_nid, event_nid FROM state_block_entries"
                    f" WHERE block_nid IN ({placeholders(len(old_blocks))})", old_blocks):
                entries[bucket_of(int(key), count)][int(key)] = int(event)
        for key, event in delta.items():
            bucket = entries[bucket_of(key, count)]
            if event is None:
                if key in bucket:
                    del bucket[key]
                    entry_count -= 1
            else:
                if key not in bucket:
                    entry_count += 1
                bucket[key] = event
        new_count = bucket_count_for(entry_count, count)
        if new_count != count:
            full = cls.load_snapshot_txn(txn, base_snapshot_nid)
            for key, event in delta.items():
                if event is None:
                    full.pop(key, None)
                else:
                    full[key] = event
            return cls.snapshot_from_map_txn(txn, room_nid, full, new_count)
        for b, bucket_entries in entries.items():
            if bucket_entries:
                blocks[b] = cls._block_txn(txn, bucket_entries)
            else:
                blocks.pop(b, None)
        return cls._store_snapshot_txn(txn, room_nid, count, entry_count, blocks)

    # -- reading snapshots -------------------------------------------------

    @staticmethod
    def load_snapshot_txn(txn: Txn, snapshot_nid: int) -> dict[int, int]:
        """The whole state of a snapshot: state-key NID -> event NID."""
        return {int(k): int(v) for k, v in txn.select_all(
            "SELECT be.state_key_nid, be.event_nid FROM state_snapshot_blocks sb"
            " JOIN state_block_entries be ON be.block_nid = sb.block_nid"
            " WHERE sb.snapshot_nid = ?", (snapshot_nid,))}

    def _snapshot_blocks_txn(self, txn: Txn,
                             snapshot_nids: Iterable[int]) -> dict[int, SnapshotBlocks]:
        """The block lists of those of ``snapshot_nids`` that exist."""
        wanted = list(snapshot_nids)
        out: dict[int, SnapshotBlocks] = {
            key >> 2: value for key, value in self.cache.get_many(
                nid << 2 | _SNAPSHOT for nid in wanted).items()}
        missing = [nid for nid in dict.fromkeys(wanted) if nid not in out]
        found: dict[int, tuple[int, list[tuple[int, int]]]] = {}
        for snapshot, count, bucket, block in select_in_txn(
                txn, "SELECT s.snapshot_nid, s.bucket_count, sb.bucket, sb.block_nid"
                " FROM state_snapshots s LEFT JOIN state_snapshot_blocks sb"
                " ON sb.snapshot_nid = s.snapshot_nid WHERE s.snapshot_nid IN ({})",
                missing, chunk=MAX_IN):
            pairs = found.setdefault(int(snapshot), (int(count), []))[1]
            if block is not None:
                pairs.append((int(bucket), int(block)))
        for nid, (count, pairs) in found.items():
            pairs.sort()
            blocks = SnapshotBlocks(count, tuple(b for b, _ in pairs),
                                    tuple(blk for _, blk in pairs))
            self.cache.put(nid << 2 | _SNAPSHOT, blocks)
            out[nid] = blocks
        return out

    def _blocks_txn(self, txn: Txn, block_nids: Iterable[int]) -> dict[int, Block]:
        """The entries of ``block_nids``: from the cache, the rest in one query."""
        wanted = list(block_nids)
        out: dict[int, Block] = {key >> 2: value for key, value in self.cache.get_many(
            nid << 2 | _BLOCK for nid in wanted).items()}
        missing = [nid for nid in dict.fromkeys(wanted) if nid not in out]
        for start in range(0, len(missing), MAX_IN):
            chunk = missing[start:start + MAX_IN]
            read: dict[int, Block] = {}
            for block, key, event in txn.select_all(
                    "SELECT block_nid, state_key_nid, event_nid FROM state_block_entries"
                    f" WHERE block_nid IN ({placeholders(len(chunk))})", chunk):
                entries = read.get(int(block))
                if entries is None:
                    entries = read[int(block)] = array("q")
                entries.append(int(key))
                entries.append(int(event))
            for nid, entries in read.items():
                self.cache.put(nid << 2 | _BLOCK, entries)
            out.update(read)
        return out

    def load_snapshots_txn(self, txn: Txn, snapshot_nids: Iterable[int],
                           keys: Collection[int] | None = None) -> dict[int, dict[int, int]]:
        """For each of ``snapshot_nids`` that exists, its state (state-key NID
        -> event NID): all of it, or only the state-key NIDs ``keys``.
        Goes through the cache."""
        lists = self._snapshot_blocks_txn(txn, snapshot_nids)
        wanted: dict[int, tuple[int, ...]] = {}
        for nid, snap in lists.items():
            if keys is None:
                wanted[nid] = snap.blocks
            else:
                by_bucket = dict(zip(snap.buckets, snap.blocks, strict=True))
                buckets = {bucket_of(k, snap.bucket_count) for k in keys}
                wanted[nid] = tuple(by_bucket[b] for b in buckets if b in by_bucket)
        blocks = self._blocks_txn(txn, (b for bs in wanted.values() for b in bs))
        out: dict[int, dict[int, int]] = {}
        for nid, block_nids in wanted.items():
            state: dict[int, int] = {}
            for block_nid in block_nids:
                entries = blocks.get(block_nid)
                if entries is not None:
                    state.update(zip(entries[0::2], entries[1::2], strict=True))
            if keys is not None:
                state = {k: state[k] for k in keys if k in state}
            out[nid] = state
        return out

    def _names_txn(self, txn: Txn, kind: int, nids: Iterable[int], sql: str,
                   ) -> dict[int, Any]:
        """NID -> what it interns (``kind``): from the cache, the rest with
        ``sql`` (``SELECT nid, value... WHERE nid IN ({})``) in one query."""
        wanted = list(nids)
        out: dict[int, Any] = {key >> 2: value for key, value in self.cache.get_many(
            nid << 2 | kind for nid in wanted).items()}
        missing = [nid for nid in dict.fromkeys(wanted) if nid not in out]
        for nid, *value in select_in_txn(txn, sql, missing, chunk=MAX_IN):
            name = value[0] if len(value) == 1 else tuple(value)
            self.cache.put(int(nid) << 2 | kind, name)
            out[int(nid)] = name
        return out

    def state_keys_for_nids_txn(self, txn: Txn, nids: Iterable[int]) -> dict[int, StateKey]:
        """State-key NID -> ``(type, state_key)``, for those of ``nids`` that exist."""
        return self._names_txn(
            txn, _STATE_KEY, nids, "SELECT state_key_nid, event_type, state_key"
            " FROM state_keys WHERE state_key_nid IN ({})")

    def event_ids_for_nids_txn(self, txn: Txn, nids: Iterable[int]) -> dict[int, str]:
        """Event NID -> event ID, for those of ``nids`` that exist."""
        return self._names_txn(
            txn, _EVENT_ID, nids, "SELECT event_nid, event_id FROM events"
            " WHERE event_nid IN ({})")

    def load_snapshot_ids_txn(self, txn: Txn, snapshot_nid: int,
                              event_type: str | None = None) -> dict[StateKey, str]:
        """The state of a snapshot as ``(type, state_key) -> event ID``."""
        state = self.load_snapshots_txn(txn, [snapshot_nid]).get(snapshot_nid, {})
        names = self.state_keys_for_nids_txn(txn, state)
        if event_type is not None:
            names = {n: k for n, k in names.items() if k[0] == event_type}
        ids = self.event_ids_for_nids_txn(txn, [state[n] for n in names])
        return {k: ids[state[n]] for n, k in names.items() if state[n] in ids}

    async def get_snapshot(self, snapshot_nid: int) -> dict[int, int]:
        """The whole state of a snapshot: state-key NID -> event NID."""
        states = await self.db.run_interaction("get_snapshot", self.load_snapshots_txn,
                                               [snapshot_nid])
        return states.get(snapshot_nid, {})

    async def get_snapshot_ids(self, snapshot_nid: int,
                               event_type: str | None = None) -> dict[StateKey, str]:
        return await self.db.run_interaction("get_snapshot_ids", self.load_snapshot_ids_txn,
                                             snapshot_nid, event_type)

    async def get_snapshot_ids_many(self, snapshot_nids: Collection[int],
                                    ) -> dict[int, dict[StateKey, str]]:
        """``get_snapshot_ids`` of many snapshots in one transaction (an
        initial sync's rooms): snapshot NID -> its state."""
        return await self.db.run_interaction("get_snapshot_ids_many",
                                             self._snapshot_ids_many_txn, list(snapshot_nids))

    def _snapshot_ids_many_txn(self, txn: Txn, snapshot_nids: list[int],
                               ) -> dict[int, dict[StateKey, str]]:
        states = self.load_snapshots_txn(txn, snapshot_nids)
        names = self.state_keys_for_nids_txn(
            txn, {k for state in states.values() for k in state})
        ids = self.event_ids_for_nids_txn(
            txn, {e for state in states.values() for e in state.values()})
        return {nid: {names[k]: ids[e] for k, e in state.items() if k in names and e in ids}
                for nid, state in states.items()}

    # -- garbage collection ------------------------------------------------

    @staticmethod
    def garbage_collect_txn(txn: Txn, limit: int = 1000,
                            deleted: tuple[list[int], list[int]] | None = None,
                            ) -> tuple[int, int]:
        """Delete up to ``limit`` unreferenced snapshots, then unreferenced blocks.

        A snapshot is unreferenced when no event (``events.snapshot_nid``,
        indexed) and no room (``rooms.current_snapshot_nid``) points at it:
        found by query, as snapshots carry no reference count. A concurrent
        transaction cannot make us delete one it is about to use: a snapshot
        it creates is invisible to us until it commits, with the event that
        references it; one it reuses by its hash it writes to first
        (``_store_snapshot_txn``), so on PostgreSQL (REPEATABLE READ) one of
        the two fails with a serialization failure and is retried, and SQLite
        runs one writing transaction at a time. Blocks keep reference counts,
        which writers increment, with the same effect.

        Returns (snapshots deleted, blocks deleted); their NIDs are put in
        ``deleted`` (snapshots, blocks) when given (replacing what a retried
        attempt put there).
        """
        snapshots = [int(r[0]) for r in txn.select_all(
            "SELECT s.snapshot_nid FROM state_snapshots s"
            " WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.snapshot_nid = s.snapshot_nid)"
            " AND s.snapshot_nid NOT IN (SELECT current_snapshot_nid FROM rooms"
            " WHERE current_snapshot_nid IS NOT NULL)"
            " LIMIT ?", (limit,))]
        for snapshot_nid in snapshots:
            blocks = [int(r[0]) for r in txn.select_all(
                "SELECT block_nid FROM state_snapshot_blocks WHERE snapshot_nid = ?",
                (snapshot_nid,))]
            txn.execute_many("UPDATE state_blocks SET ref_count = ref_count - 1"
                             " WHERE block_nid = ?", [(b,) for b in blocks])
            txn.execute("DELETE FROM state_snapshot_blocks WHERE snapshot_nid = ?",
                        (snapshot_nid,))
            txn.execute("DELETE FROM state_snapshots WHERE snapshot_nid = ?", (snapshot_nid,))
        blocks = [int(r[0]) for r in txn.select_all(
            "SELECT block_nid FROM state_blocks WHERE ref_count <= 0 LIMIT ?", (limit * 8,))]
        for block_nid in blocks:
            txn.execute("DELETE FROM state_block_entries WHERE block_nid = ?", (block_nid,))
            txn.execute("DELETE FROM state_blocks WHERE block_nid = ?", (block_nid,))
        if deleted is not None:
            deleted[0][:] = snapshots
            deleted[1][:] = blocks
        return len(snapshots), len(blocks)

    async def garbage_collect(self) -> tuple[int, int]:
        """Delete every unreferenced snapshot and block, in batches, and drop
        them from the cache."""
        total_snapshots = total_blocks = 0
        while True:
            deleted: tuple[list[int], list[int]] = ([], [])
            snapshots, blocks = await self.db.run_interaction(
                "state_gc", self.garbage_collect_txn, deleted=deleted)
            self.cache.invalidate_many([nid << 2 | _SNAPSHOT for nid in deleted[0]]
                                       + [nid << 2 | _BLOCK for nid in deleted[1]])
            total_snapshots += snapshots
            total_blocks += blocks
            if not snapshots and not blocks:
                return total_snapshots, total_blocks

    async def counts(self) -> StateStorageCounts:
        def txn_fn(txn: Txn) -> StateStorageCounts:
            return StateStorageCounts(
                int(txn.select_value("SELECT COUNT(*) FROM state_snapshots")),
                int(txn.select_value("SELECT COUNT(*) FROM state_blocks")),
                int(txn.select_value("SELECT COUNT(*) FROM state_block_entries")),
                int(txn.select_value("SELECT COUNT(*) FROM state_snapshot_blocks")))

        return await self.db.run_interaction("state_counts", txn_fn)
