"""End-to-end encryption keys of devices, and device lists over federation.

Tables (migration 0021):

- ``e2e_device_keys``: the signed device keys each local device uploaded.
  Read joined with ``devices``, so a deleted device's keys are never served
  (and ``delete_keys_of_gone_devices_txn`` drops them at the next announce).
- ``e2e_one_time_keys``: one-time keys; a claim deletes the key it hands out.
- ``e2e_fallback_keys``: one per (device, algorithm); a claim with no
  one-time key left hands it out and marks it ``used`` (it stays, as the
  spec says, until the device uploads a new one).
- ``e2e_device_list_outbound`` / ``e2e_device_list_announced``: what we last
  told other servers about each local user's devices (``announce_txn``):
  a digest per device, and the last ``stream_id`` of the user's
  ``m.device_list_update`` chain.
- ``e2e_remote_device_lists`` / ``e2e_remote_devices``: remote users' device
  lists, cached from their servers' updates and resyncs, with the stream_id
  they are current as of.

Device key changes of local users are recorded in ``device_list_changes``
(``DeviceStore.mark_device_list_changed_txn``), inside the upload's
transaction, which wakes /sync of everyone sharing a room.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.storage.cross_signing import CrossSigningStore
from homeserver.storage.database import Database, Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.rooms import shares_joined_room_sql
from homeserver.storage.sql import select_in, select_in_txn


def _keys_with_name(text: str, name: str | None) -> dict[str, Any]:
    """Stored device keys as /keys/query serves them: always with an
    ``unsigned`` object, holding the device's display name when it has one
    (what the device itself put in ``unsigned`` is not served, as Synapse
    does not)."""
    keys: dict[str, Any] = json.loads(text)
    keys["unsigned"] = {"device_display_name": name} if name is not None else {}
    return keys


def _dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class OneTimeKeyConflict(Exception):
    """An uploaded one-time key reuses a stored key ID with other content."""

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id


@dataclass(frozen=True)
class KeyCounts:
    """What /sync tells a device about its own keys."""

    one_time: dict[str, int]
    unused_fallback: list[str]


@dataclass(frozen=True)
class RemoteDevice:
    device_id: str
    display_name: str | None
    keys: dict[str, Any] | None


class E2eKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- upload ----------------------------------------------------------------

    async def upload_keys(self, user_id: str, device_id: str,
                          device_keys: dict[str, Any] | None,
                          one_time: list[tuple[str, str, Any]],
                          fallback: list[tuple[str, str, Any]]) -> KeyCounts:
        """Store what one /keys/upload carries (``one_time`` and ``fallback``:
        (algorithm, key ID, key object)); the device's key counts after it.
        Raises OneTimeKeyConflict (and stores nothing) on a reused key ID."""
        def txn_fn(txn: Txn) -> KeyCounts:
            if device_keys is not None:
                text = _dump(device_keys)
                row = txn.select_one("SELECT key_json FROM e2e_device_keys"
                                     " WHERE user_id = ? AND device_id = ?",
                                     (user_id, device_id))
                if row is None or row[0] != text:
                    txn.execute("INSERT INTO e2e_device_keys (user_id, device_id, key_json)"
                                " VALUES (?, ?, ?) ON CONFLICT (user_id, device_id)"
                                " DO UPDATE SET key_json = excluded.key_json",
                                (user_id, device_id, text))
                    DeviceStore.mark_device_list_changed_txn(txn, user_id)
            if one_time:
                existing = {
                    (alg, kid): text for alg, kid, text in txn.select_all(
                        "SELECT algorithm, key_id, key_json FROM e2e_one_time_keys"
                        " WHERE user_id = ? AND device_id = ?", (user_id, device_id))}
                new: dict[tuple[str, str], str] = {}
                for alg, kid, obj in one_time:
                    text = _dump(obj)
                    old = existing.get((alg, kid))
                    if old is not None:
                        # a retried upload is fine; a reused ID is a client bug
                        if old != text:
                            raise OneTimeKeyConflict(f"{alg}:{kid}")
                        continue
                    new[(alg, kid)] = text
                txn.execute_many(
                    "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id,"
                    " key_json) VALUES (?, ?, ?, ?, ?)",
                    [(user_id, device_id, alg, kid, text) for (alg, kid), text in new.items()])
            for alg, kid, obj in fallback:
                text = _dump(obj)
                row = txn.select_one("SELECT key_id, key_json FROM e2e_fallback_keys WHERE"
                                     " user_id = ? AND device_id = ? AND algorithm = ?",
                                     (user_id, device_id, alg))
                if row is not None and row[0] == kid and row[1] == text:
                    continue  # the same key again keeps its "used" mark
                txn.execute("INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm,"
                            " key_id, key_json, used) VALUES (?, ?, ?, ?, ?, 0)"
                            " ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET"
                            " key_id = excluded.key_id, key_json = excluded.key_json,"
                            " used = 0", (user_id, device_id, alg, kid, text))
            return self.key_counts_txn(txn, user_id, device_id)

        return await self.db.run_interaction("upload_e2e_keys", txn_fn)

    @staticmethod
    def key_counts_txn(txn: Txn, user_id: str, device_id: str) -> KeyCounts:
        counts = {alg: int(n) for alg, n in txn.select_all(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ?"
            " AND device_id = ? GROUP BY algorithm", (user_id, device_id))}
        unused = sorted(r[0] for r in txn.select_all(
            "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?"
            " AND used = 0", (user_id, device_id)))
        return KeyCounts(counts, unused)

    async def get_key_counts(self, user_id: str, device_id: str) -> KeyCounts:
        return await self.db.run_interaction("get_e2e_key_counts", self.key_counts_txn,
                                             user_id, device_id)

    # -- query and claim -------------------------------------------------------

    async def get_device_keys(self, query: Mapping[str, list[str]],
                              ) -> dict[str, dict[str, dict[str, Any]]]:
        """Local users' device keys: user -> device -> key object (with
        ``unsigned.device_display_name``); an empty device list asks for
        every device. Users and devices without keys are left out."""
        def txn_fn(txn: Txn) -> dict[str, dict[str, dict[str, Any]]]:
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for user_id, device_id, text, name in select_in_txn(
                    txn, "SELECT k.user_id, k.device_id, k.key_json, d.display_name"
                    " FROM e2e_device_keys k JOIN devices d ON d.user_id = k.user_id"
                    " AND d.device_id = k.device_id WHERE k.user_id IN ({})", list(query)):
                wanted = query[user_id]
                if wanted and device_id not in wanted:
                    continue
                out.setdefault(user_id, {})[device_id] = _keys_with_name(text, name)
            return out

        return await self.db.run_interaction("get_e2e_device_keys", txn_fn)

    async def claim_keys(self, query: Mapping[str, Mapping[str, str]],
                         ) -> dict[str, dict[str, dict[str, Any]]]:
        """For each (user, device, algorithm): one one-time key, deleted as it
        is handed out, else the device's fallback key, marked used. Returns
        user -> device -> {"algorithm:key_id": key object}; devices with
        neither are left out."""
        def txn_fn(txn: Txn) -> dict[str, dict[str, dict[str, Any]]]:
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for user_id, devices in query.items():
                for device_id, alg in devices.items():
                    found = self._claim_one_txn(txn, user_id, device_id, alg)
                    if found is not None:
                        out.setdefault(user_id, {})[device_id] = {
                            f"{alg}:{found[0]}": json.loads(found[1])}
            return out

        return await self.db.run_interaction("claim_e2e_keys", txn_fn)

    @staticmethod
    def _claim_one_txn(txn: Txn, user_id: str, device_id: str,
                       alg: str) -> tuple[str, str] | None:
        # Two claims racing on PostgreSQL may pick the same row: the loser's
        # DELETE touches nothing and it takes the next key.
        for _ in range(5):
            row = txn.select_one(
                "SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = ?"
                " AND device_id = ? AND algorithm = ? ORDER BY key_id LIMIT 1",
                (user_id, device_id, alg))
            if row is None:
                break
            txn.execute("DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                        " AND algorithm = ? AND key_id = ?", (user_id, device_id, alg, row[0]))
            if txn.rowcount > 0:
                return str(row[0]), str(row[1])
        row = txn.select_one(
            "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ?"
            " AND device_id = ? AND algorithm = ?", (user_id, device_id, alg))
        if row is None:
            return None
        txn.execute("UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ?"
                    " AND algorithm = ?", (user_id, device_id, alg))
        return str(row[0]), str(row[1])

    # -- /keys/changes ---------------------------------------------------------

    async def get_key_changes(self, user_id: str, since: int,
                              until: int) -> tuple[set[str], set[str]]:
        """(changed, left) for /keys/changes between two stream positions:
        users sharing a room with ``user_id`` whose devices changed or who
        newly share a room; users who shared one and share none any more."""
        def txn_fn(txn: Txn) -> tuple[set[str], set[str]]:
            changed = {r[0] for r in txn.select_all(
                "SELECT d.user_id FROM device_list_changes d WHERE d.stream_id > ?"
                " AND d.stream_id <= ? AND (d.user_id = ? OR"
                f" {shares_joined_room_sql('d.user_id')})",
                (since, until, user_id, user_id))}
            changed |= DeviceStore.private_device_list_changes_txn(txn, user_id, since, until)
            mates = ("SELECT theirs.user_id, theirs.membership, mine.membership"
                     " FROM room_memberships mine JOIN room_memberships theirs"
                     " ON theirs.room_nid = mine.room_nid"
                     " WHERE mine.user_id = ? AND theirs.user_id <> ? AND"
                     " ((theirs.stream_ordering > ? AND theirs.stream_ordering <= ?) OR"
                     " (mine.stream_ordering > ? AND mine.stream_ordering <= ?))")
            candidates: set[str] = set()
            for other, theirs, mine in txn.select_all(
                    mates, (user_id, user_id, since, until, since, until)):
                if theirs == "join" and mine == "join":
                    changed.add(other)
                elif theirs in ("join", "leave", "ban") and mine in ("join", "leave", "ban"):
                    candidates.add(other)
            candidates -= changed
            left: set[str] = set()
            for other in candidates:
                row = txn.select_one(
                    f"SELECT 1 WHERE {shares_joined_room_sql('?')}", (other, user_id))
                if row is None:
                    left.add(other)
            return changed, left

        return await self.db.run_interaction("get_e2e_key_changes", txn_fn)

    # -- outbound device lists -------------------------------------------------

    def _local_devices_txn(self, txn: Txn, user_id: str,
                           ) -> list[tuple[str, str | None, dict[str, Any] | None]]:
        """(device ID, display name, keys) of a local user's devices, the keys
        with the user's own cross-signing signatures of them merged in: a
        new signature (its self-signing key's) is news for other servers."""
        devices = [(d, name, json.loads(k) if k is not None else None)
                   for d, name, k in txn.select_all(
                       "SELECT d.device_id, d.display_name, k.key_json FROM devices d"
                       " LEFT JOIN e2e_device_keys k ON k.user_id = d.user_id"
                       " AND k.device_id = d.device_id WHERE d.user_id = ?"
                       " ORDER BY d.device_id", (user_id,))]
        by_device = {d: keys for d, _, keys in devices if isinstance(keys, dict)}
        for signer, key_id, _, device_id, signature in \
                CrossSigningStore.get_signatures_txn(txn, [user_id]):
            keys = by_device.get(device_id)
            if keys is None or signer != user_id:
                continue
            sigs = keys.setdefault("signatures", {})
            if isinstance(sigs, dict):
                mine = sigs.setdefault(signer, {})
                if isinstance(mine, dict):
                    mine[key_id] = signature
        return devices

    def announce_txn(self, txn: Txn, user_id: str) -> list[dict[str, Any]]:
        """The ``m.device_list_update`` contents that bring other servers up to
        date with ``user_id``'s devices (one per device added, changed or
        deleted since the last announce), chained by stream_id / prev_id;
        records them as announced. Also drops the keys of deleted devices."""
        devices = self._local_devices_txn(txn, user_id)
        announced = dict(txn.select_all(
            "SELECT device_id, digest FROM e2e_device_list_announced WHERE user_id = ?",
            (user_id,)))
        row = txn.select_one("SELECT stream_id FROM e2e_device_list_outbound WHERE user_id = ?",
                             (user_id,))
        stream_id = int(row[0]) if row is not None else 0
        updates: list[dict[str, Any]] = []

        def next_update(device_id: str) -> dict[str, Any]:
            nonlocal stream_id
            prev = [stream_id] if stream_id else []
            stream_id += 1
            return {"user_id": user_id, "device_id": device_id, "stream_id": stream_id,
                    "prev_id": prev}

        present = set()
        for device_id, name, keys in devices:
            present.add(device_id)
            digest = hashlib.sha256(_dump([name, keys]).encode()).hexdigest()
            if announced.get(device_id) == digest:
                continue
            update = next_update(device_id)
            update["deleted"] = False
            if name is not None:
                update["device_display_name"] = name
            if keys is not None:
                update["keys"] = keys
            updates.append(update)
            txn.execute("INSERT INTO e2e_device_list_announced (user_id, device_id, digest)"
                        " VALUES (?, ?, ?) ON CONFLICT (user_id, device_id)"
                        " DO UPDATE SET digest = excluded.digest", (user_id, device_id, digest))
        for device_id in sorted(set(announced) - present):
            update = next_update(device_id)
            update["deleted"] = True
            updates.append(update)
            txn.execute("DELETE FROM e2e_device_list_announced WHERE user_id = ?"
                        " AND device_id = ?", (user_id, device_id))
        gone = txn.select_all(
            "SELECT k.device_id FROM e2e_device_keys k WHERE k.user_id = ? AND NOT EXISTS"
            " (SELECT 1 FROM devices d WHERE d.user_id = k.user_id"
            " AND d.device_id = k.device_id)", (user_id,))
        for (device_id,) in gone:
            for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"):
                txn.execute(f"DELETE FROM {table} WHERE user_id = ? AND device_id = ?",
                            (user_id, device_id))
        if updates:
            txn.execute("INSERT INTO e2e_device_list_outbound (user_id, stream_id)"
                        " VALUES (?, ?) ON CONFLICT (user_id)"
                        " DO UPDATE SET stream_id = excluded.stream_id", (user_id, stream_id))
        return updates

    async def announce(self, user_id: str) -> list[dict[str, Any]]:
        return await self.db.run_interaction("announce_device_list", self.announce_txn,
                                             user_id)

    async def get_local_device_list(
            self, user_id: str) -> tuple[int, list[tuple[str, str | None,
                                                         dict[str, Any] | None]]]:
        """(stream_id, [(device ID, display name, keys)]) for GET /user/devices."""
        def txn_fn(txn: Txn) -> tuple[int, list[tuple[str, str | None,
                                                      dict[str, Any] | None]]]:
            row = txn.select_one(
                "SELECT stream_id FROM e2e_device_list_outbound WHERE user_id = ?", (user_id,))
            return (int(row[0]) if row is not None else 0,
                    self._local_devices_txn(txn, user_id))

        return await self.db.run_interaction("get_local_device_list", txn_fn)

    # -- remote device lists ---------------------------------------------------

    async def get_remote_stream_id(self, user_id: str) -> int | None:
        """The stream_id our cache of ``user_id``'s devices is current as
        of; None when we have none."""
        rows = await self.db.execute(
            "get_remote_stream_id",
            "SELECT stream_id FROM e2e_remote_device_lists WHERE user_id = ?", (user_id,))
        return int(rows[0][0]) if rows else None

    async def apply_remote_update(self, user_id: str, prev_stream_id: int, stream_id: int,
                                  device: RemoteDevice, deleted: bool) -> bool:
        """One incremental update of a cached list; False (nothing done)
        when the cache is no longer at ``prev_stream_id``."""
        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE e2e_remote_device_lists SET stream_id = ? WHERE user_id = ?"
                        " AND stream_id = ?", (stream_id, user_id, prev_stream_id))
            if txn.rowcount == 0:
                return False
            txn.execute("DELETE FROM e2e_remote_devices WHERE user_id = ? AND device_id = ?",
                        (user_id, device.device_id))
            if not deleted:
                self._insert_remote_txn(txn, user_id, [device])
            return True

        return await self.db.run_interaction("apply_remote_device_update", txn_fn)

    @staticmethod
    def _insert_remote_txn(txn: Txn, user_id: str, devices: list[RemoteDevice]) -> None:
        txn.execute_many(
            "INSERT INTO e2e_remote_devices (user_id, device_id, display_name, keys_json)"
            " VALUES (?, ?, ?, ?)",
            [(user_id, d.device_id, d.display_name,
              _dump(d.keys) if d.keys is not None else None) for d in devices])

    async def replace_remote_devices(self, user_id: str, stream_id: int,
                                     devices: list[RemoteDevice]) -> None:
        """A full resync of ``user_id``'s device list; their device list
        counts as changed (local users sharing a room re-query it)."""
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM e2e_remote_devices WHERE user_id = ?", (user_id,))
            self._insert_remote_txn(txn, user_id, devices)
            txn.execute("INSERT INTO e2e_remote_device_lists (user_id, stream_id)"
                        " VALUES (?, ?) ON CONFLICT (user_id)"
                        " DO UPDATE SET stream_id = excluded.stream_id", (user_id, stream_id))
            DeviceStore.mark_device_list_changed_txn(txn, user_id)

        await self.db.run_interaction("replace_remote_devices", txn_fn)

    async def get_cached_remote_users(self, user_ids: list[str]) -> set[str]:
        """Those of ``user_ids`` whose device lists we hold a copy of."""
        rows = await select_in(self.db, "get_cached_remote_users",
                               "SELECT user_id FROM e2e_remote_device_lists"
                               " WHERE user_id IN ({})", user_ids)
        return {r[0] for r in rows}

    async def forget_remote_devices(self, user_id: str) -> None:
        """Drop a cached list (it will be fetched again when needed)."""
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM e2e_remote_devices WHERE user_id = ?", (user_id,))
            txn.execute("DELETE FROM e2e_remote_device_lists WHERE user_id = ?", (user_id,))

        await self.db.run_interaction("forget_remote_devices", txn_fn)

    async def get_cached_remote_keys(
            self, query: Mapping[str, list[str]],
    ) -> tuple[dict[str, dict[str, dict[str, Any]]], set[str]]:
        """Remote users' device keys from the cache: (user -> device -> keys,
        the users of ``query`` whose lists are not cached)."""
        def txn_fn(txn: Txn) -> tuple[dict[str, dict[str, dict[str, Any]]], set[str]]:
            users = list(query)
            cached = {r[0] for r in select_in_txn(
                txn, "SELECT user_id FROM e2e_remote_device_lists WHERE user_id IN ({})", users)}
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for user_id, device_id, name, text in select_in_txn(
                    txn, "SELECT user_id, device_id, display_name, keys_json"
                    " FROM e2e_remote_devices WHERE keys_json IS NOT NULL"
                    " AND user_id IN ({})", users):
                wanted = query[user_id]
                if wanted and device_id not in wanted:
                    continue
                out.setdefault(user_id, {})[device_id] = _keys_with_name(text, name)
            for user_id in cached:
                out.setdefault(user_id, {})
            return out, set(users) - cached

        return await self.db.run_interaction("get_cached_remote_keys", txn_fn)
