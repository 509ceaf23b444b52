"""The reads /sync makes to learn what changed for a user, and nothing else.

Every query here is bounded by a range of the global stream, (since, until],
and uses an index on a stream column: an incremental sync costs what changed
in the range, not what the user has (their rooms, their history). The
per-room reads (timelines, state) go through the event and state stores.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Database, Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.receipts import ReceiptStore
from homeserver.storage.rooms import shares_joined_room_sql
from homeserver.storage.sql import placeholders, select_in, select_in_txn
from homeserver.storage.to_device import ToDeviceStore

# A position no stream will reach.
END = 2**62


@dataclass(frozen=True)
class RoomMembership:
    room_id: str
    room_nid: int
    room_version: str
    membership: str
    event_id: str
    stream_ordering: int


@dataclass(frozen=True)
class SyncChanges:
    """What changed for one user (and device) in (since, until]."""

    # ``until`` lowered when the device has more to-device messages than one
    # response carries: the whole response stops there
    until: int
    to_device: list[dict[str, object]]
    global_account_data: dict[str, dict[str, object]]
    room_account_data: dict[str, dict[str, dict[str, object]]]
    # the user's memberships of the rooms that changed (of every room when
    # the sync is initial)
    memberships: list[RoomMembership]
    device_lists_changed: set[str]
    # rooms with receipts written in the range (None: not asked, initial sync)
    receipt_rooms: set[str] | None = None



class SyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_changes(self, user_id: str, device_id: str | None, since: int | None,
                          until: int, extra_rooms: Iterable[str] = (),
                          all_rooms: bool = False) -> SyncChanges:
        """Everything /sync reads before it reads rooms, in one transaction.

        ``since`` None: an initial sync (everything up to ``until``). The
        device's to-device messages up to ``since`` are deleted: the client
        has them. ``extra_rooms``: rooms that changed in ways the database
        does not know (typing). ``all_rooms``: memberships of every room.
        """
        extra = list(extra_rooms)

        def txn_fn(txn: Txn) -> SyncChanges:
            start = since if since is not None else 0
            end = until
            to_device: list[dict[str, object]] = []
            if device_id is not None:
                if since is not None:
                    ToDeviceStore.delete_messages_upto_txn(txn, user_id, device_id, since)
                to_device, end = ToDeviceStore.get_messages_txn(txn, user_id, device_id,
                                                                start, end)
            global_data, room_data = AccountDataStore.get_account_data_since_txn(
                txn, user_id, start, end)
            receipt_rooms: set[str] | None = None
            if since is None or all_rooms:
                memberships = self._memberships_txn(txn, user_id, None, None, end)
                changed_devices: set[str] = set()
            else:
                nids = self.get_changed_rooms_txn(txn, since, end)
                memberships = (self._memberships_txn(txn, user_id, list(nids), None, end)
                               if nids else [])
                seen = {m.room_id for m in memberships}
                receipt_rooms = ReceiptStore.get_rooms_with_receipts_txn(txn, since, end)
                others = set(receipt_rooms)
                others.update(room_data)
                others.update(extra)
                others -= seen
                if others:
                    memberships += self._memberships_txn(txn, user_id, None, list(others),
                                                         end)
                changed_devices = self.get_device_list_changes_txn(txn, user_id, since, end)
            return SyncChanges(end, to_device, global_data, room_data, memberships,
                               changed_devices, receipt_rooms)

        return await self.db.run_interaction("get_sync_changes", txn_fn)

    @staticmethod
    def get_changed_rooms_txn(txn: Txn, since: int, until: int) -> set[int]:
        # outliers too: an invite to (or a leave of) a room on another server
        # is an outlier with a stream position (storage/federation_events.py)
        rows = txn.select_all(
            "SELECT DISTINCT room_nid FROM events WHERE stream_ordering > ?"
            " AND stream_ordering <= ?", (since, until))
        return {int(r[0]) for r in rows}

    @staticmethod
    def _memberships_txn(txn: Txn, user_id: str, room_nids: list[int] | None,
                         room_ids: list[str] | None, until: int) -> list[RoomMembership]:
        """``user_id``'s membership of rooms as of ``until`` (the latest
        membership event at or before it)."""
        sql = ("SELECT r.room_id, r.room_nid, r.room_version, rm.membership, ev.event_id,"
               " rm.stream_ordering FROM room_memberships rm"
               " JOIN rooms r ON r.room_nid = rm.room_nid"
               " JOIN events ev ON ev.event_nid = rm.event_nid WHERE rm.user_id = ?")
        params: list[object] = [user_id]
        if room_nids is not None:
            sql += f" AND rm.room_nid IN ({placeholders(len(room_nids))})"
            params.extend(room_nids)
        if room_ids is not None:
            sql += f" AND r.room_id IN ({placeholders(len(room_ids))})"
            params.extend(room_ids)
        out: list[RoomMembership] = []
        later: list[RoomMembership] = []
        for room_id, nid, version, membership, event_id, stream in txn.select_all(sql, params):
            m = RoomMembership(room_id, int(nid), version, membership, event_id, int(stream))
            (later if m.stream_ordering > until else out).append(m)
        # A membership newer than ``until`` (written while this sync ran):
        # the one before it is what the sync up to ``until`` must show.
        for m in later:
            row = txn.select_one(
                "SELECT ev.event_id, ev.stream_ordering, ev.json FROM events ev"
                " WHERE ev.room_nid = ? AND ev.event_type = 'm.room.member'"
                " AND ev.state_key = ? AND ev.outlier = 0 AND ev.rejected_reason IS NULL"
                " AND ev.stream_ordering <= ? ORDER BY ev.stream_ordering DESC LIMIT 1",
                (m.room_nid, user_id, until))
            if row is None:
                continue
            membership = json.loads(row[2]).get("content", {}).get("membership")
            if isinstance(membership, str):
                out.append(RoomMembership(m.room_id, m.room_nid, m.room_version, membership,
                                          row[0], int(row[1])))
        return out

    async def left_between(self, user_id: str, room_nid: int, since: int,
                           until: int) -> bool:
        """Whether ``user_id`` had a membership other than join in the room
        at some position in (since, until]: they left (or were kicked) and
        joined again in between."""
        rows = await self.db.execute(
            "left_between",
            "SELECT json FROM events WHERE room_nid = ? AND event_type = 'm.room.member'"
            " AND state_key = ? AND outlier = 0 AND rejected_reason IS NULL"
            " AND stream_ordering > ? AND stream_ordering <= ?",
            (room_nid, user_id, since, until))
        return any(json.loads(r[0]).get("content", {}).get("membership") != "join"
                   for r in rows)

    async def get_memberships(self, user_id: str, until: int, *,
                              room_nids: Iterable[int] | None = None,
                              room_ids: Iterable[str] | None = None) -> list[RoomMembership]:
        """``user_id``'s memberships as of ``until``: of every room, or of
        ``room_nids`` / ``room_ids`` only."""
        nids = list(room_nids) if room_nids is not None else None
        ids = list(room_ids) if room_ids is not None else None
        if (nids is not None and not nids) or (ids is not None and not ids):
            return []
        return await self.db.run_interaction("get_sync_memberships", self._memberships_txn,
                                             user_id, nids, ids, until)

    @staticmethod
    def get_device_list_changes_txn(txn: Txn, user_id: str, since: int,
                                    until: int) -> set[str]:
        """Users whose device list changed in (since, until] and who share a
        joined room with ``user_id`` (``user_id`` included when theirs did),
        and those changed for ``user_id`` alone (cross-signing signatures)."""
        rows = txn.select_all(
            "SELECT d.user_id FROM device_list_changes d WHERE d.stream_id > ?"
            " AND d.stream_id <= ? AND (d.user_id = ? OR"
            f" {shares_joined_room_sql('d.user_id')})",
            (since, until, user_id, user_id))
        changed = {r[0] for r in rows}
        changed |= DeviceStore.private_device_list_changes_txn(txn, user_id, since, until)
        return changed

    async def get_device_list_changes(self, user_id: str, since: int,
                                      until: int) -> set[str]:
        """``get_device_list_changes_txn`` in a transaction of its own."""
        return await self.db.run_interaction(
            "get_device_list_changes", self.get_device_list_changes_txn, user_id, since,
            until)

    async def get_member_counts(self, room_nid: int) -> dict[str, int]:
        rows = await self.db.execute(
            "get_member_counts",
            "SELECT membership, COUNT(*) FROM room_memberships WHERE room_nid = ?"
            " GROUP BY membership", (room_nid,))
        return {m: int(c) for m, c in rows}

    async def get_member_counts_many(self, room_nids: list[int]) -> dict[int, dict[str, int]]:
        """``get_member_counts`` of many rooms in one query."""
        if not room_nids:
            return {}
        return await self.db.run_interaction("get_member_counts_many",
                                             self.member_counts_many_txn, room_nids)

    @staticmethod
    def member_counts_many_txn(txn: Txn, room_nids: list[int]) -> dict[int, dict[str, int]]:
        """``get_member_counts_many`` in a transaction under way."""
        out: dict[int, dict[str, int]] = {nid: {} for nid in room_nids}
        for nid, membership, count in select_in_txn(
                txn, "SELECT room_nid, membership, COUNT(*) FROM room_memberships"
                " WHERE room_nid IN ({}) GROUP BY room_nid, membership", room_nids):
            out[int(nid)][str(membership)] = int(count)
        return out

    async def get_heroes(self, room_nid: int, user_id: str, limit: int = 5) -> list[str]:
        """Up to ``limit`` members other than ``user_id`` to name the room by:
        joined and invited first, else those who left."""
        rows = await self.db.execute(
            "get_heroes",
            "SELECT user_id, membership FROM room_memberships WHERE room_nid = ?"
            f" AND user_id <> ? ORDER BY stream_ordering LIMIT {HERO_CANDIDATES}",
            (room_nid, user_id))
        return _pick_heroes(rows, limit)

    async def get_summary_parts(self, room_nid: int,
                                ) -> tuple[dict[str, int], list[tuple[str, str]]]:
        """The room's member counts and its hero candidates for anybody:
        (user ID, membership) of its first members by stream order, one more
        than ``get_heroes`` reads, so that leaving out the reader still
        leaves as many (``pick_heroes``)."""
        def txn_fn(txn: Txn) -> tuple[dict[str, int], list[tuple[str, str]]]:
            counts = {str(m): int(c) for m, c in txn.select_all(
                "SELECT membership, COUNT(*) FROM room_memberships WHERE room_nid = ?"
                " GROUP BY membership", (room_nid,))}
            rows = txn.select_all(
                "SELECT user_id, membership FROM room_memberships WHERE room_nid = ?"
                f" ORDER BY stream_ordering LIMIT {HERO_CANDIDATES + 1}", (room_nid,))
            return counts, [(str(u), str(m)) for u, m in rows]
        return await self.db.run_interaction("get_summary_parts", txn_fn)

    async def get_summaries(self, room_nids: list[int], user_id: str, limit: int = 5,
                            ) -> dict[int, tuple[dict[str, int], list[str]]]:
        """``get_member_counts`` and ``get_heroes`` of many rooms in one
        transaction (an initial sync): room NID -> (counts, heroes)."""
        def txn_fn(txn: Txn) -> dict[int, tuple[dict[str, int], list[str]]]:
            counts: dict[int, dict[str, int]] = {n: {} for n in room_nids}
            candidates: dict[int, list[tuple[str, str]]] = {n: [] for n in room_nids}
            for nid, membership, count in select_in_txn(
                    txn, "SELECT room_nid, membership, COUNT(*) FROM room_memberships"
                    " WHERE room_nid IN ({}) GROUP BY room_nid, membership", room_nids):
                counts[int(nid)][str(membership)] = int(count)
            for nid, member, membership in select_in_txn(
                    txn, "SELECT room_nid, user_id, membership FROM (SELECT room_nid, user_id,"
                    " membership, ROW_NUMBER() OVER (PARTITION BY room_nid"
                    " ORDER BY stream_ordering) AS n FROM room_memberships"
                    " WHERE room_nid IN ({}) AND user_id <> ?) ranked"
                    f" WHERE n <= {HERO_CANDIDATES} ORDER BY room_nid, n",
                    room_nids, after=(user_id,)):
                candidates[int(nid)].append((str(member), str(membership)))
            return {n: (counts[n], _pick_heroes(candidates[n], limit)) for n in room_nids}

        return await self.db.run_interaction("get_summaries", txn_fn)

    async def get_naming_event_ids(self, room_nids: list[int]) -> dict[int, list[str]]:
        """Per room of ``room_nids`` that has any, the IDs of its current
        ``m.room.name`` and ``m.room.canonical_alias`` events: a room named by
        one of them gets no heroes in its summary."""
        rows = await select_in(
            self.db, "get_naming_event_ids",
            "SELECT cs.room_nid, ev.event_id FROM current_state cs"
            " JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
            " JOIN events ev ON ev.event_nid = cs.event_nid"
            " WHERE cs.room_nid IN ({}) AND sk.state_key = ''"
            " AND sk.event_type IN (?, ?)",
            room_nids, after=("m.room.name", "m.room.canonical_alias"))
        out: dict[int, list[str]] = {}
        for nid, event_id in rows:
            out.setdefault(int(nid), []).append(str(event_id))
        return out


# members read to choose a room's heroes from
HERO_CANDIDATES = 50


def pick_heroes(candidates: list[tuple[str, str]], user_id: str, limit: int = 5) -> list[str]:
    """``get_heroes`` of ``user_id`` from ``get_summary_parts``' candidates."""
    return _pick_heroes([r for r in candidates if r[0] != user_id][:HERO_CANDIDATES], limit)


def _pick_heroes(rows: list[tuple[Any, ...]], limit: int) -> list[str]:
    active = [str(u) for u, m in rows if m in ("join", "invite")]
    if active:
        return active[:limit]
    return [str(u) for u, m in rows if m in ("leave", "ban")][:limit]
