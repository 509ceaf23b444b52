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

Reference counts: ``state_snapshots.ref_count`` counts the events whose state
it is and the rooms whose current state it is; ``state_blocks.ref_count``
counts the snapshots that list the block. ``garbage_collect_txn`` deletes
snapshots nothing references, then the blocks no snapshot lists. Whoever
stops pointing at a snapshot (purging history, replacing a room's current
state) calls ``decref_snapshot_txn``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from homeserver.storage.database import Database, Txn

# Blocks hold between TARGET/4 and TARGET*2 entries on average.
BLOCK_TARGET = 32
MAX_BUCKETS = 1 << 16

StateKey = tuple[str, str]


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


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


def _block_hash(entries: Mapping[int, int]) -> str:
    text = ",".join(f"{k}:{entries[k]}" for k in sorted(entries))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class StateStorageCounts:
    snapshots: int
    blocks: int
    block_entries: int
    snapshot_blocks: int


class StateStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- state keys --------------------------------------------------------

    @staticmethod
    def get_state_key_nids_txn(txn: Txn, pairs: Iterable[StateKey]) -> dict[StateKey, int]:
        """The NIDs of those of ``pairs`` that have one."""
        wanted = list(dict.fromkeys(pairs))
        out: dict[StateKey, int] = {}
        for start in range(0, len(wanted), 200):
            chunk = wanted[start:start + 200]
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
        for pair in wanted:
            if pair in out:
                continue
            nid = txn.select_value(
                "INSERT INTO state_keys (event_type, state_key) VALUES (?, ?)"
                " ON CONFLICT (event_type, state_key) DO NOTHING RETURNING state_key_nid", pair)
            if nid is None:
                nid = txn.select_value("SELECT state_key_nid FROM state_keys"
                                       " WHERE event_type = ? AND state_key = ?", pair)
            out[pair] = int(nid)
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
        digest = hashlib.sha256(text.encode("ascii")).hexdigest()
        nid = txn.select_value(
            "SELECT snapshot_nid FROM state_snapshots WHERE snapshot_hash = ?", (digest,))
        if nid is not None:
            return int(nid)
        nid = int(txn.select_value(
            "INSERT INTO state_snapshots"
            " (room_nid, snapshot_hash, bucket_count, entry_count, ref_count)"
            " VALUES (?, ?, ?, ?, 0) RETURNING snapshot_nid",
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
                    f" WHERE block_nid IN ({_placeholders(len(old_blocks))})", old_blocks):
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

    @staticmethod
    def load_snapshot_ids_txn(txn: Txn, snapshot_nid: int,
                              event_type: str | None = None) -> dict[StateKey, str]:
        """The state of a snapshot as ``(type, state_key) -> event ID``."""
        sql = ("SELECT sk.event_type, sk.state_key, ev.event_id FROM state_snapshot_blocks sb"
               " JOIN state_block_entries be ON be.block_nid = sb.block_nid"
               " JOIN state_keys sk ON sk.state_key_nid = be.state_key_nid"
               " JOIN events ev ON ev.event_nid = be.event_nid"
               " WHERE sb.snapshot_nid = ?")
        params: list[object] = [snapshot_nid]
        if event_type is not None:
            sql += " AND sk.event_type = ?"
            params.append(event_type)
        return {(t, s): e for t, s, e in txn.select_all(sql, params)}

    async def get_snapshot(self, snapshot_nid: int) -> dict[int, int]:
        return await self.db.run_interaction("get_snapshot", self.load_snapshot_txn,
                                             snapshot_nid)

    async def get_snapshot_ids(self, snapshot_nid: int,
                               event_type: str | None = None) -> dict[StateKey, str]:
        return await self.db.run_interaction("get_snapshot_ids", self.load_snapshot_ids_txn,
                                             snapshot_nid, event_type)

    # -- reference counts and garbage collection ---------------------------

    @staticmethod
    def incref_snapshot_txn(txn: Txn, snapshot_nid: int, n: int = 1) -> None:
        txn.execute("UPDATE state_snapshots SET ref_count = ref_count + ?"
                    " WHERE snapshot_nid = ?", (n, snapshot_nid))

    @staticmethod
    def decref_snapshot_txn(txn: Txn, snapshot_nid: int, n: int = 1) -> None:
        txn.execute("UPDATE state_snapshots SET ref_count = ref_count - ?"
                    " WHERE snapshot_nid = ?", (n, snapshot_nid))

    @staticmethod
    def garbage_collect_txn(txn: Txn, limit: int = 1000) -> tuple[int, int]:
        """Delete up to ``limit`` unreferenced snapshots, then unreferenced blocks.

        Returns (snapshots deleted, blocks deleted).
        """
        snapshots = [int(r[0]) for r in txn.select_all(
            "SELECT snapshot_nid FROM state_snapshots WHERE ref_count <= 0 LIMIT ?",
            (limit,))]
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
        return len(snapshots), len(blocks)

    async def garbage_collect(self) -> tuple[int, int]:
        """Delete every unreferenced snapshot and block, in batches."""
        total_snapshots = total_blocks = 0
        while True:
            snapshots, blocks = await self.db.run_interaction(
                "state_gc", self.garbage_collect_txn)
            total_snapshots += snapshots
            total_blocks += blocks
            if not snapshots and not blocks:
                return total_snapshots, total_blocks

    async def release_snapshot(self, snapshot_nid: int) -> None:
        """Drop one reference (for callers outside a transaction: tests, purges)."""
        await self.db.run_interaction("release_snapshot", self.decref_snapshot_txn,
                                      snapshot_nid)

    async def counts(self) -> StateStorageCounts:
        def txn_fn(txn: Txn) -> StateStorageCounts:
            return StateStorageCounts(
                int(txn.select_value("SELECT COUNT(*) FROM state_snapshots")),
                int(txn.select_value("SELECT COUNT(*) FROM state_blocks")),
                int(txn.select_value("SELECT COUNT(*) FROM state_block_entries")),
                int(txn.select_value("SELECT COUNT(*) FROM state_snapshot_blocks")))

        return await self.db.run_interaction("state_counts", txn_fn)
