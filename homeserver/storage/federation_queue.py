"""The federation sender's queues: PDUs per destination, backoff, position.

Tables (migration 0012):

- ``federation_pdu_queue``: (destination, stream position, room NID): an
  event a destination has not acknowledged yet. The PDU itself is read from
  ``events`` when a transaction is built, so a row costs a few bytes and a
  dead destination's backlog stays small. Rows are deleted once the
  destination acknowledged a transaction carrying them (or refused it with
  a 4xx), and thinned to the latest event per room by catch-up.
- ``federation_destinations``: per destination, the backoff state
  (``retry_last_ts``, ``retry_interval``, ms); interval 0 is healthy.
- ``federation_sender_position``: one row, the global stream position up to
  which every local event has had its queue rows written. The rows and the
  advance are written in one transaction (``enqueue``), so after a crash the
  sender re-enqueues exactly the events past it (``get_local_events_after``).

To-device EDUs wait in ``device_federation_outbox`` (storage/to_device.py);
``get_destinations_with_work`` reads it too, so a restart resumes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import chunks, placeholders, select_in_txn

_CHUNK = 500



@dataclass(frozen=True)
class NewPdu:
    """An event to queue: its room, stream position, the server of a member
    event's target (who must hear of an invite, kick or ban), and a server
    not to send it to (the origin of an event we forward for it)."""

    room_id: str
    stream_ordering: int
    target_server: str | None = None
    exclude_server: str | None = None


@dataclass(frozen=True)
class LocalEvent:
    """A timeline event found by the restart scan (``get_local_events_after``)."""

    stream_ordering: int
    room_id: str
    sender: str
    event_type: str
    state_key: str | None


def server_of(user_id: str) -> str | None:
    """The server name of a user ID, or None when it has none."""
    _, sep, server = user_id.partition(":")
    return server if sep and server else None


class FederationQueueStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # a federation sender process of several (federation_sender_instances):
        # the row of its own position (1: the single sender's; 2 + its index
        # in the list: a sender process's), and which destinations are its own
        self.slot = 1
        self.owns: Callable[[str], bool] | None = None

    # -- the position --------------------------------------------------------

    async def get_position(self) -> int | None:
        """The persisted "enqueued up to" position, None before the first start."""
        rows = await self.db.execute(
            "get_federation_sender_position",
            "SELECT stream_ordering FROM federation_sender_position WHERE lock = ?",
            (self.slot,))
        if not rows and self.slot != 1:
            # a sender process's first start: on from where the single sender
            # (main) stopped, if it ever ran, so nothing is owed at the switch
            rows = await self.db.execute(
                "get_federation_sender_position",
                "SELECT stream_ordering FROM federation_sender_position WHERE lock = 1")
        return int(rows[0][0]) if rows else None

    @staticmethod
    def _advance_position_txn(txn: Txn, position: int, slot: int = 1) -> None:
        # never backwards: two enqueues may commit out of order
        txn.execute("UPDATE federation_sender_position SET stream_ordering = ?"
                    " WHERE lock = ? AND stream_ordering < ?", (position, slot, position))
        if txn.select_one("SELECT 1 FROM federation_sender_position WHERE lock = ?",
                          (slot,)) is None:
            txn.execute("INSERT INTO federation_sender_position (lock, stream_ordering)"
                        " VALUES (?, ?)", (slot, position))

    async def set_position(self, position: int) -> None:
        await self.db.run_interaction("set_federation_sender_position",
                                      self._advance_position_txn, position, self.slot)

    # -- enqueueing --------------------------------------------------------------

    @staticmethod
    def enqueue_txn(txn: Txn, pdus: Sequence[NewPdu], own_server: str,
                    position: int | None, *, lazy_position: bool = False,
                    slot: int = 1,
                    owns: Callable[[str], bool] | None = None) -> dict[str, int]:
        """Write the queue rows of ``pdus`` for every destination, and advance
        the position to ``position`` (if given), in ``txn``. ``lazy_position``:
        only if some row was written (events of rooms with no other server
        then cost a read-only transaction; the caller bounds how far the
        stored position may lag, which is what a restart rescans).

        Destinations of an event: the servers of the users joined to its room
        now, plus its ``target_server``, minus ``own_server`` and its
        ``exclude_server``. Returns
        destination -> rows written.
        """
        room_ids = list(dict.fromkeys(p.room_id for p in pdus))
        nids = {str(r): int(n) for r, n in select_in_txn(
            txn, "SELECT room_id, room_nid FROM rooms WHERE room_id IN ({})", room_ids,
            chunk=_CHUNK)}
        servers: dict[int, set[str]] = {}
        for room_nid in nids.values():
            joined = txn.select_all(
                "SELECT user_id FROM room_memberships WHERE room_nid = ? AND membership = ?",
                (room_nid, "join"))
            servers[room_nid] = {s for (u,) in joined if (s := server_of(str(u))) is not None}
        rows: list[tuple[str, int, int]] = []
        counts: dict[str, int] = {}
        for pdu in pdus:
            nid = nids.get(pdu.room_id)
            if nid is None:
                continue
            destinations = set(servers[nid])
            if pdu.target_server is not None:
                destinations.add(pdu.target_server)
            destinations.discard(own_server)
            destinations.discard(pdu.exclude_server)
            for destination in sorted(destinations):
                if owns is not None and not owns(destination):
                    continue  # another sender's
                rows.append((destination, pdu.stream_ordering, nid))
                counts[destination] = counts.get(destination, 0) + 1
        if rows:
            txn.execute_many(
                "INSERT INTO federation_pdu_queue (destination, stream_ordering, room_nid)"
                " VALUES (?, ?, ?) ON CONFLICT (destination, stream_ordering) DO NOTHING",
                rows)
        if position is not None and (rows or not lazy_position):
            FederationQueueStore._advance_position_txn(txn, position, slot)
        return counts

    async def enqueue(self, pdus: Sequence[NewPdu], own_server: str,
                      position: int | None, *, lazy_position: bool = False) -> dict[str, int]:
        """See ``enqueue_txn``."""
        return await self.db.run_interaction("federation_enqueue", self.enqueue_txn, pdus,
                                             own_server, position, lazy_position=lazy_position,
                                             slot=self.slot, owns=self.owns)

    async def get_local_events_after(self, after: int, upto: int, server_name: str,
                                     limit: int = 500) -> tuple[list[LocalEvent], int | None]:
        """Timeline (non-outlier) events at positions in (after, upto] whose
        sender is on ``server_name``, oldest first, from at most ``limit``
        rows; and the last position looked at (None: nothing left to scan)."""
        rows = await self.db.execute(
            "get_local_events_after",
            "SELECT e.stream_ordering, r.room_id, e.sender, e.event_type, e.state_key"
            " FROM events e JOIN rooms r ON r.room_nid = e.room_nid"
            " WHERE e.stream_ordering > ? AND e.stream_ordering <= ? AND e.outlier = 0"
            " AND e.sender LIKE ? ORDER BY e.stream_ordering LIMIT ?",
            (after, upto, "%:" + server_name, limit))
        last = int(rows[-1][0]) if len(rows) == limit else None
        # LIKE treats _ in the server name as a wildcard: check exactly here
        return [LocalEvent(int(s), str(r), str(u), str(t), None if k is None else str(k))
                for s, r, u, t, k in rows if server_of(str(u)) == server_name], last

    # -- a destination's queue -------------------------------------------------------

    async def get_pdus(self, destination: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The oldest queued PDUs for ``destination``: (stream position, PDU JSON).

        A row whose event is gone (purged) comes back with an empty dict; the
        caller drops it.
        """
        rows = await self.db.execute(
            "get_federation_pdus",
            "SELECT q.stream_ordering, e.json FROM federation_pdu_queue q"
            " LEFT JOIN events e ON e.stream_ordering = q.stream_ordering"
            " WHERE q.destination = ? ORDER BY q.stream_ordering LIMIT ?",
            (destination, limit))
        return [(int(s), json.loads(j) if j is not None else {}) for s, j in rows]

    async def count_pdus(self, destination: str, up_to: int) -> int:
        """How many PDUs are queued for ``destination``, counting to ``up_to`` at most."""
        rows = await self.db.execute(
            "count_federation_pdus",
            "SELECT COUNT(*) FROM (SELECT 1 FROM federation_pdu_queue WHERE destination = ?"
            " LIMIT ?) AS queued", (destination, up_to))
        return int(rows[0][0])

    async def keep_latest_per_room(self, destination: str) -> int:
        """Catch-up: drop every queued PDU of ``destination`` but the latest
        of each room. Returns how many were dropped."""
        def txn_fn(txn: Txn) -> int:
            txn.execute(
                "DELETE FROM federation_pdu_queue WHERE destination = ?"
                " AND stream_ordering NOT IN (SELECT MAX(stream_ordering)"
                " FROM federation_pdu_queue WHERE destination = ? GROUP BY room_nid)",
                (destination, destination))
            return txn.rowcount
        return await self.db.run_interaction("federation_catch_up", txn_fn)

    async def delete_pdus(self, destination: str, positions: Iterable[int]) -> None:
        """Drop queued PDUs (acknowledged or refused)."""
        ids = list(positions)

        def txn_fn(txn: Txn) -> None:
            for chunk in chunks(ids, _CHUNK):
                txn.execute("DELETE FROM federation_pdu_queue WHERE destination = ?"
                            f" AND stream_ordering IN ({placeholders(len(chunk))})",
                            (destination, *chunk))
        if ids:
            await self.db.run_interaction("delete_federation_pdus", txn_fn)

    async def get_destinations_with_work(self) -> set[str]:
        """Every destination with queued PDUs or to-device messages."""
        rows = await self.db.execute(
            "get_federation_destinations_with_work",
            "SELECT DISTINCT destination FROM federation_pdu_queue"
            " UNION SELECT DISTINCT destination FROM device_federation_outbox")
        return {str(d) for (d,) in rows}

    async def get_destinations_with_to_device(self) -> set[str]:
        """Every destination with queued to-device messages."""
        rows = await self.db.execute(
            "get_federation_destinations_with_to_device",
            "SELECT DISTINCT destination FROM device_federation_outbox")
        return {str(d) for (d,) in rows}

    # -- backoff -------------------------------------------------------------------

    async def get_retry_timings(self) -> dict[str, tuple[int, int]]:
        """destination -> (retry_last_ts, retry_interval), for those in backoff."""
        rows = await self.db.execute(
            "get_federation_retry_timings",
            "SELECT destination, retry_last_ts, retry_interval FROM federation_destinations"
            " WHERE retry_interval > 0")
        return {str(d): (int(ts), int(i)) for d, ts, i in rows}

    async def get_all_retry_timings(self) -> dict[str, tuple[int, int]]:
        """destination -> (retry_last_ts, retry_interval), healthy ones too."""
        rows = await self.db.execute(
            "get_all_federation_retry_timings",
            "SELECT destination, retry_last_ts, retry_interval FROM federation_destinations")
        return {str(d): (int(ts or 0), int(i or 0)) for d, ts, i in rows}

    async def set_retry_timings(self, destination: str, last_ts: int, interval: int) -> None:
        """Record the backoff of ``destination`` (interval 0: healthy again)."""
        await self.db.execute(
            "set_federation_retry_timings",
            "INSERT INTO federation_destinations (destination, retry_last_ts, retry_interval)"
            " VALUES (?, ?, ?) ON CONFLICT (destination) DO UPDATE"
            " SET retry_last_ts = excluded.retry_last_ts,"
            " retry_interval = excluded.retry_interval",
            (destination, last_ts, interval))
