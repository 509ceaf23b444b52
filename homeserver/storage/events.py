"""Events: the events table, the DAG edges, and persisting a new event.

Every event gets an integer NID and, once it is part of the room's timeline,
a position on the global stream (``storage/streams.py``). ``json`` is the PDU
as canonical JSON; the columns beside it (type, state key, sender, depth,
timestamp) are what queries filter on. ``prev_events`` and ``auth_events``
are kept as NID pairs in ``event_edges`` and ``event_auth_edges``.

``persist_event`` stores one event and everything it changes in ONE
transaction: the event row and its edges, the stream position, the room's
forward extremities, the state snapshot after it (``storage/state.py``), the
current-state delta, the membership table and the client transaction ID. The
caller (``rooms/creator.py``) holds the room's write lock, so the state it
authorised the event against is the state this transaction updates.

Read events are kept in a bounded LRU cache (``event_cache_size``, scaled by
``caches.global_factor`` as Synapse scales its ``*getEvent*`` cache).

Redactions (``rooms/redaction.py`` decides which apply): ``event_redactions``
maps a redacted event ID to the redactions of it. The original JSON stays in
``events`` (federation and a future "censor after N days" need it), and
every read -- ``get_events`` and all that goes through it: timelines, state,
auth -- returns the redacted form, with the earliest redaction's event ID in
``unsigned.redacted_by`` (``REDACTED_BY``). Persisting a redaction drops its
target from the cache.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.events.model import Event
from homeserver.events.redaction import redact
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.auth_chains import AuthChainStore
from homeserver.storage.cache import LruCache
from homeserver.storage.database import Database, Txn
from homeserver.storage.event_hooks import (
    MessageBatch,
    PersistHooks,
)
from homeserver.storage.event_rows import (
    EventRow,
    event_nids_txn,
    insert_edges_txn,
    insert_event_rows_txn,
)
from homeserver.storage.rooms import RoomStore
from homeserver.storage.sql import select_in, select_in_txn
from homeserver.storage.state import StateKey, StateStore
from homeserver.storage.streams import next_stream_id_txn, next_stream_ids_txn

DEFAULT_EVENT_CACHE_SIZE = 10_000

# unsigned key of a redacted event read from the store: the redaction's event ID
REDACTED_BY = "redacted_by"


def _is_chain(events: list[Event]) -> bool:
    """Plain messages (no state event, no redaction), each after the first
    with exactly the one before it as its prev_event."""
    if any(e.is_state() or e.type == "m.room.redaction" for e in events):
        return False
    return all(list(events[i].prev_event_ids) == [events[i - 1].event_id]
               for i in range(1, len(events)))


@dataclass(frozen=True)
class NewEventTxn:
    """A client transaction ID to remember with a sent event."""

    user_id: str
    scope: str
    txn_id: str


@dataclass(frozen=True)
class PersistedEvent:
    event_nid: int
    stream_ordering: int
    snapshot_nid: int


@dataclass(frozen=True)
class EventPosition:
    event_nid: int
    room_nid: int
    stream_ordering: int | None
    snapshot_nid: int | None


class EventStore:
    def __init__(self, db: Database, cache_size: int = DEFAULT_EVENT_CACHE_SIZE,
                 state: StateStore | None = None) -> None:
        self.db = db
        self.cache: LruCache[str, Event] = LruCache(cache_size)
        # snapshots are read through its block cache
        self.state = state if state is not None else StateStore(db)
        # per-event index work in the persist transaction (the HomeServer adds them)
        self.persist_hooks = PersistHooks()

    # -- reading -----------------------------------------------------------

    @staticmethod
    def _event_from_row(event_id: str, version: str, text: str, rejected: str | None,
                        redacted_by: str | None = None) -> Event:
        room_version = KNOWN_ROOM_VERSIONS[version]
        pdu = json.loads(text)
        if redacted_by is not None:
            pdu = redact(pdu, room_version)
            pdu["unsigned"] = {REDACTED_BY: redacted_by}
        return Event(event_id, room_version, pdu, rejected)

    async def get_events(self, event_ids: list[str]) -> dict[str, Event]:
        """The events of ``event_ids`` that we have (from the cache when we can)."""
        out: dict[str, Event] = {}
        missing: list[str] = []
        for event_id in dict.fromkeys(event_ids):
            cached = self.cache.get(event_id)
            if cached is not None:
                out[event_id] = cached
            else:
                missing.append(event_id)
        generation = self.cache.generation
        rows = await select_in(
            self.db, "get_events",
            "SELECT ev.event_id, r.room_version, ev.json, ev.rejected_reason,"
            " (SELECT red.event_id FROM event_redactions er"
            "  JOIN events red ON red.event_nid = er.redaction_nid"
            "  WHERE er.redacts = ev.event_id AND red.room_nid = ev.room_nid"
            "  ORDER BY red.event_nid LIMIT 1)"
            " FROM events ev JOIN rooms r ON r.room_nid = ev.room_nid"
            " WHERE ev.event_id IN ({})", missing)
        for row in rows:
            event = self._event_from_row(*row)
            if self.cache.generation == generation:
                self.cache.put(event.event_id, event)
            out[event.event_id] = event
        return out

    async def get_event(self, event_id: str) -> Event | None:
        return (await self.get_events([event_id])).get(event_id)

    async def get_event_position(self, event_id: str) -> EventPosition | None:
        rows = await self.db.execute(
            "get_event_position",
            "SELECT event_nid, room_nid, stream_ordering, snapshot_nid FROM events"
            " WHERE event_id = ?", (event_id,))
        if not rows:
            return None
        nid, room, stream, snapshot = rows[0]
        return EventPosition(int(nid), int(room), None if stream is None else int(stream),
                             None if snapshot is None else int(snapshot))

    async def get_room_events(self, room_nid: int, *, from_pos: int, to_pos: int | None,
                              backwards: bool, limit: int) -> list[tuple[int, Event]]:
        """Up to ``limit`` timeline events of the room as (stream position, event).

        Backwards: positions <= ``from_pos`` and > ``to_pos``, newest first.
        Forwards: positions > ``from_pos`` and <= ``to_pos``, oldest first.
        """
        if backwards:
            sql = ("SELECT stream_ordering, event_id FROM events WHERE room_nid = ?"
                   " AND outlier = 0 AND stream_ordering <= ? AND stream_ordering > ?"
                   " ORDER BY stream_ordering DESC LIMIT ?")
            # below zero: history fetched with /backfill (storage/federation_events.py)
            params = (room_nid, from_pos, to_pos if to_pos is not None else -(2**62), limit)
        else:
            sql = ("SELECT stream_ordering, event_id FROM events WHERE room_nid = ?"
                   " AND outlier = 0 AND stream_ordering > ? AND stream_ordering <= ?"
                   " ORDER BY stream_ordering ASC LIMIT ?")
            params = (room_nid, from_pos, to_pos if to_pos is not None else 2**62, limit)
        rows = await self.db.execute("get_room_events", sql, params)
        events = await self.get_events([r[1] for r in rows])
        return [(int(pos), events[eid]) for pos, eid in rows if eid in events]

    async def get_newest_room_events_many(self, room_nids: list[int], until: int, limit: int,
                                          ) -> dict[int, list[tuple[int, Event]]]:
        """``get_room_events`` backwards from ``until`` of many rooms at once
        (an initial sync's first page of each): room NID -> rows, newest first.
        One transaction; a statement per 50 rooms, each room an index range
        scan of its own (a window function would read whole histories)."""
        rows = await self.db.run_interaction("get_newest_room_events_many",
                                             self._newest_room_events_many_txn,
                                             room_nids, until, limit)
        events = await self.get_events([r[2] for r in rows])
        out: dict[int, list[tuple[int, Event]]] = {nid: [] for nid in room_nids}
        for nid, pos, eid in rows:
            if eid in events:
                out[int(nid)].append((int(pos), events[eid]))
        return out

    @staticmethod
    def _newest_room_events_many_txn(txn: Txn, room_nids: list[int], until: int,
                                     limit: int) -> list[tuple[Any, ...]]:
        one = ("SELECT * FROM (SELECT room_nid, stream_ordering, event_id FROM events"
               " WHERE room_nid = ? AND outlier = 0 AND stream_ordering <= ?"
               " ORDER BY stream_ordering DESC LIMIT ?) AS r{}")
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(room_nids), 50):
            chunk = room_nids[start:start + 50]
            sql = " UNION ALL ".join(one.format(i) for i in range(len(chunk)))
            out.extend(txn.select_all(sql, [x for nid in chunk for x in (nid, until, limit)]))
        # newest first within each room, whatever order UNION ALL gave
        out.sort(key=lambda r: (r[0], -int(r[1])))
        return out

    async def get_events_by_nid(self, nids: list[int]) -> dict[int, Event]:
        if not nids:
            return {}
        rows = await select_in(
            self.db, "get_event_ids_by_nid",
            "SELECT event_nid, event_id FROM events WHERE event_nid IN ({})", nids)
        events = await self.get_events([r[1] for r in rows])
        return {int(n): events[e] for n, e in rows if e in events}

    async def get_replaced_state(self, event_ids: list[str]) -> dict[str, Event]:
        """For state events: event ID -> the state event it replaced, if any."""
        if not event_ids:
            return {}
        rows = await select_in(
            self.db, "get_replaced_state",
            "SELECT ev.event_id, old.event_id FROM events ev"
            " JOIN events old ON old.event_nid = ev.replaces_nid"
            " WHERE ev.event_id IN ({})", event_ids)
        olds = await self.get_events([r[1] for r in rows])
        return {e: olds[o] for e, o in rows if o in olds}

    async def get_state_at_events(self, event_ids: list[str], keys: list[StateKey],
                                  ) -> dict[str, dict[StateKey, str]]:
        """For each of ``event_ids``: the state after it, only ``keys``, as
        ``(type, state_key) -> event ID`` (events we do not have are absent)."""
        if not event_ids:
            return {}

        def txn_fn(txn: Txn) -> dict[str, dict[StateKey, str]]:
            out: dict[str, dict[StateKey, str]] = {e: {} for e in event_ids}
            nids = StateStore.get_state_key_nids_txn(txn, keys)
            if not nids:
                return out
            by_nid = {n: k for k, n in nids.items()}
            snapshot_of = {e: int(s) for e, s in select_in_txn(
                txn, "SELECT event_id, snapshot_nid FROM events"
                " WHERE event_id IN ({}) AND snapshot_nid IS NOT NULL", event_ids)}
            states = self.state.load_snapshots_txn(txn, snapshot_of.values(), by_nid)
            ids = self.state.event_ids_for_nids_txn(
                txn, (e for state in states.values() for e in state.values()))
            for eid, snapshot in snapshot_of.items():
                for skey, event_nid in states.get(snapshot, {}).items():
                    if event_nid in ids:
                        out[eid][by_nid[skey]] = ids[event_nid]
            return out

        return await self.db.run_interaction("get_state_at_events", txn_fn)

    async def get_member_event_ids(self, room_nid: int, user_id: str, *, after: int,
                                   until: int | None) -> list[str]:
        """``user_id``'s member events in the room at stream positions in
        (``after``, ``until``], oldest first."""
        rows = await self.db.execute(
            "get_member_event_ids",
            "SELECT event_id FROM events WHERE room_nid = ? AND event_type = 'm.room.member'"
            " AND state_key = ? AND outlier = 0 AND stream_ordering > ?"
            " AND stream_ordering <= ? ORDER BY stream_ordering",
            (room_nid, user_id, after, until if until is not None else 2**62))
        return [r[0] for r in rows]

    async def get_snapshot_at_stream(self, room_nid: int, pos: int) -> int | None:
        """The room's state snapshot after its last event at or before ``pos``.

        State events a history purge took out of the timeline (outliers that
        keep their position and snapshot) still count: the state at the
        start of what remains is the state after them."""
        rows = await self.db.execute(
            "get_snapshot_at_stream",
            "SELECT snapshot_nid FROM events WHERE room_nid = ?"
            " AND (outlier = 0 OR snapshot_nid IS NOT NULL)"
            " AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1",
            (room_nid, pos))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    async def get_snapshots_at_stream_many(self, positions: dict[int, int],
                                           ) -> dict[int, int | None]:
        """``get_snapshot_at_stream`` of many rooms (room NID -> position) in
        one transaction, a query per hundred rooms: room NID -> snapshot NID."""
        return await self.db.run_interaction("get_snapshots_at_stream_many",
                                             self._snapshots_at_stream_many_txn,
                                             list(positions.items()))

    @staticmethod
    def _snapshots_at_stream_many_txn(txn: Txn, positions: list[tuple[int, int]],
                                      ) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        for start in range(0, len(positions), 100):
            chunk = positions[start:start + 100]
            # VALUES names its columns column1, column2 on SQLite and PostgreSQL alike
            values = ", ".join(["(?, ?)"] * len(chunk))
            rows = txn.select_all(
                "SELECT v.column1, (SELECT e.snapshot_nid FROM events e"
                " WHERE e.room_nid = v.column1"
                " AND (e.outlier = 0 OR e.snapshot_nid IS NOT NULL)"
                " AND e.stream_ordering <= v.column2"
                f" ORDER BY e.stream_ordering DESC LIMIT 1) FROM (VALUES {values}) AS v",
                [x for pair in chunk for x in pair])
            out.update((int(nid), int(snap) if snap is not None else None)
                       for nid, snap in rows)
        return out

    async def get_events_near_timestamp(self, room_nid: int, ts: int, *, forwards: bool,
                                        until: int | None, limit: int,
                                        ) -> list[tuple[int, Event]]:
        """Timeline events nearest ``ts`` as (stream position, event): forwards,
        the first at or after ``ts``; backwards, the last at or before it.
        Only positions up to ``until`` (when given)."""
        if forwards:
            cond, order = "origin_server_ts >= ?", "origin_server_ts ASC, stream_ordering ASC"
        else:
            cond, order = "origin_server_ts <= ?", "origin_server_ts DESC, stream_ordering DESC"
        rows = await self.db.execute(
            "get_events_near_timestamp",
            f"SELECT stream_ordering, event_id FROM events WHERE room_nid = ? AND {cond}"
            " AND outlier = 0 AND stream_ordering <= ?"
            f" ORDER BY {order} LIMIT ?",
            (room_nid, ts, until if until is not None else 2**62, limit))
        events = await self.get_events([r[1] for r in rows])
        return [(int(pos), events[eid]) for pos, eid in rows if eid in events]

    # -- writing -----------------------------------------------------------

    async def persist_event(self, event: Event, *, room_nid: int | None, now_ms: int,
                            txn_id: NewEventTxn | None = None,
                            new_room_id: str | None = None) -> PersistedEvent:
        """Store ``event`` and all it changes, in one transaction.

        ``room_nid`` None: ``event`` is the ``m.room.create`` of the room
        ``new_room_id`` (a v12 create event carries no room ID), and the room
        is created with it.
        """
        result = await self.db.run_interaction(
            "persist_event", self.persist_event_txn, event, room_nid, now_ms, txn_id,
            new_room_id)
        self.cache.put(event.event_id, event)
        redacts = self._applied_redaction(event)
        if redacts is not None:
            self.cache.invalidate(redacts)
        return result

    async def persist_events(self, events: list[tuple[Event, NewEventTxn | None]], *,
                             room_nid: int, now_ms: int) -> list[PersistedEvent]:
        """Store several new events of one room, in order, in ONE transaction
        (each may have the one before it as a prev_event): one commit for a
        batch of a busy room's messages (``rooms/creator.py``)."""
        return (await self.persist_event_groups([(room_nid, events)], now_ms=now_ms))[0]

    async def persist_event_groups(self, groups: list[tuple[int, list[tuple[Event,
                                                                          NewEventTxn | None]]]],
                                   *, now_ms: int) -> list[list[PersistedEvent]]:
        """``persist_events`` for the batches of several rooms (room NID, its
        events in order), all in ONE transaction: one commit for what the
        writers of many busy rooms have ready at once (group commit,
        ``rooms/creator.py``). A room appears at most once. The batches of
        plain messages are written together (``persist_message_groups_txn``),
        the others event by event."""
        def txn_fn(txn: Txn) -> list[list[PersistedEvent]]:
            done = self.persist_message_groups_txn(txn, groups, now_ms)
            return [found if found is not None else
                    [self.persist_event_txn(txn, event, room_nid, now_ms, txn_id)
                     for event, txn_id in events]
                    for (room_nid, events), found in zip(groups, done, strict=True)]

        name = "persist_events" if len(groups) == 1 else "persist_event_groups"
        result = await self.db.run_interaction(name, txn_fn)
        for _, events in groups:
            for event, _ in events:
                self.cache.put(event.event_id, event)
                redacts = self._applied_redaction(event)
                if redacts is not None:
                    self.cache.invalidate(redacts)
        return result

    def persist_messages_txn(self, txn: Txn, events: list[tuple[Event, NewEventTxn | None]],
                             room_nid: int, now_ms: int, *,
                             snapshot: int | None = None) -> list[PersistedEvent] | None:
        """``persist_event_txn`` for a chain of plain messages, in a few
        statements for the whole batch instead of a dozen per event; None
        (nothing written) when the batch is not such a chain
        (``persist_message_groups_txn`` for one room).

        ``snapshot``: the state the chain is sent in, when it is not the
        room's current state (`homeserver import-synapse` writes history
        before it sets the current state): the snapshot after the first
        event's prev_event.
        """
        return self.persist_message_groups_txn(
            txn, [(room_nid, events)], now_ms,
            snapshots=None if snapshot is None else {room_nid: snapshot})[0]

    def persist_message_groups_txn(
            self, txn: Txn, groups: Sequence[tuple[int, Sequence[tuple[Event,
                                                                    NewEventTxn | None]]]],
            now_ms: int, *, snapshots: dict[int, int] | None = None,
    ) -> list[list[PersistedEvent] | None]:
        """The chains of plain messages among ``groups`` (room NID, its new
        events in order; a room at most once), written together in a few
        statements for all of them instead of a dozen per event; for each
        group its persisted events, or None (nothing written) when it is not
        such a chain.

        Such a chain: no state event and no redaction; each event after the
        first has exactly the one before it as its prev_event; every auth
        event is already stored and no stored event waits for one of these
        (``AuthChainStore``). Then every event shares the room's current
        snapshot, only the last one becomes a forward extremity, and the
        auth-chain index has nothing to do for them.

        ``snapshots``: room NID -> the snapshot to use instead of the room's
        current one (``persist_messages_txn``).
        """
        out: list[list[PersistedEvent] | None] = [None] * len(groups)
        chosen = [i for i, (_, events) in enumerate(groups) if events and _is_chain(
            [event for event, _ in events])]
        if not chosen:
            return out
        ids = [event.event_id for i in chosen for event, _ in groups[i][1]]
        waited = {str(r[0]) for r in select_in_txn(
            txn, "SELECT DISTINCT auth_event_id FROM event_auth_chain_pending"
            " WHERE auth_event_id IN ({})", ids)}
        if waited:
            chosen = [i for i in chosen
                      if not any(event.event_id in waited for event, _ in groups[i][1])]
        refs: list[str] = []
        for i in chosen:
            refs += groups[i][1][0][0].prev_event_ids
            refs += [a for event, _ in groups[i][1] for a in event.auth_event_ids]
        refs = list(dict.fromkeys(refs))
        known = event_nids_txn(txn, refs)
        chosen = [i for i in chosen if all(a in known for event, _ in groups[i][1]
                                           for a in event.auth_event_ids)]
        rooms = [groups[i][0] for i in chosen]
        current = dict(snapshots or {})
        missing = [r for r in rooms if r not in current]
        if missing:
            current.update(RoomStore.get_current_snapshots_txn(txn, missing))
        chosen = [i for i in chosen if groups[i][0] in current]
        if not chosen:
            return out
        evs = [(groups[i][0], event, txn_id) for i in chosen for event, txn_id in groups[i][1]]
        streams = next_stream_ids_txn(txn, len(evs))
        nids = insert_event_rows_txn(txn, [
            EventRow(event, room_nid, stream_ordering=stream, snapshot_nid=current[room_nid])
            for (room_nid, event, _), stream in zip(evs, streams, strict=True)])
        # each event after the first has the one before it as its prev_event
        known.update(nids)
        insert_edges_txn(txn, [event for _, event, _ in evs], nids, known, remote=False)
        RoomStore.advance_forward_extremities_txn(txn, [
            (groups[i][0], nids[groups[i][1][-1][0].event_id],
             [known[p] for p in groups[i][1][0][0].prev_event_ids if p in known])
            for i in chosen])
        RoomStore.add_txn_ids_txn(txn, [
            (t.user_id, t.scope, room_nid, t.txn_id, nids[e.event_id], now_ms)
            for room_nid, e, t in evs if t is not None])
        position = dict(zip((event.event_id for _, event, _ in evs), streams, strict=True))
        batches = [MessageBatch(groups[i][0], [
            (event, nids[event.event_id], position[event.event_id])
            for event, _ in groups[i][1]]) for i in chosen]
        self.persist_hooks.run_batches_txn(txn, batches)
        txn.new_events.extend(zip((event for _, event, _ in evs), streams, strict=True))
        for i, batch in zip(chosen, batches, strict=True):
            out[i] = [PersistedEvent(nid, stream, current[batch.room_nid])
                      for _, nid, stream in batch.events]
        return out

    @staticmethod
    def _applied_redaction(event: Event) -> str | None:
        """The event ID ``event`` redacts, if it is a redaction to apply."""
        if event.type != "m.room.redaction" or event.rejected_reason is not None:
            return None
        return event.redacts

    def persist_event_txn(self, txn: Txn, event: Event, room_nid: int | None, now_ms: int,
                          txn_id: NewEventTxn | None,
                          new_room_id: str | None = None) -> PersistedEvent:
        if room_nid is None:
            if new_room_id is None or event.type != "m.room.create":
                raise ValueError("a new room starts with its m.room.create event")
            room_nid = RoomStore.create_room_txn(txn, new_room_id,
                                                 event.room_version.identifier,
                                                 event.sender, now_ms)
        known = event_nids_txn(txn, event.prev_event_ids + event.auth_event_ids)
        prev_nids = [known[e] for e in event.prev_event_ids if e in known]

        state_key_nid: int | None = None
        replaces: int | None = None
        if event.is_state():
            state_key_nid = StateStore.get_or_create_state_key_nids_txn(
                txn, [event.state_pair()])[event.state_pair()]
            replaces = RoomStore.get_current_state_event_nid_txn(txn, room_nid, state_key_nid)

        # A message (or a rejected state event) shares the room's current
        # snapshot: known now, so its row is written once, with no state row
        # touched. An accepted state event's snapshot needs its event NID.
        current = RoomStore.get_current_snapshot_txn(txn, room_nid)
        changes_state = state_key_nid is not None and event.rejected_reason is None
        snapshot: int | None = None
        if not changes_state:
            if current is None:
                current = StateStore.snapshot_from_map_txn(txn, room_nid, {})
                RoomStore.set_current_snapshot_txn(txn, room_nid, current)
            snapshot = current

        stream = next_stream_id_txn(txn)
        nids = insert_event_rows_txn(txn, [EventRow(
            event, room_nid, stream_ordering=stream, state_key_nid=state_key_nid,
            snapshot_nid=snapshot, replaces_nid=replaces)])
        event_nid = nids[event.event_id]
        insert_edges_txn(txn, [event], nids, known, remote=False)
        AuthChainStore.persist_event_txn(txn, event, event_nid)
        RoomStore.update_forward_extremities_txn(txn, room_nid, event_nid, prev_nids)

        if changes_state:
            assert state_key_nid is not None
            snapshot = StateStore.create_snapshot_txn(txn, room_nid, current,
                                                      {state_key_nid: event_nid})
            RoomStore.set_current_state_txn(txn, room_nid, state_key_nid, event_nid)
            RoomStore.set_current_snapshot_txn(txn, room_nid, snapshot)
            if event.type == "m.room.member" and event.membership is not None:
                assert event.state_key is not None
                RoomStore.set_membership_txn(txn, event.state_key, room_nid, event.membership,
                                             event_nid, stream)
            txn.execute("UPDATE events SET snapshot_nid = ? WHERE event_nid = ?",
                        (snapshot, event_nid))
        assert snapshot is not None
        redacts = EventStore._applied_redaction(event)
        if redacts is not None:
            txn.execute("INSERT INTO event_redactions (redacts, redaction_nid) VALUES (?, ?)",
                        (redacts, event_nid))
        if txn_id is not None:
            RoomStore.add_txn_id_txn(txn, txn_id.user_id, txn_id.scope, room_nid,
                                     txn_id.txn_id, event_nid, now_ms)
        self.persist_hooks.run_txn(txn, event, event_nid)
        txn.new_events.append((event, stream))
        return PersistedEvent(event_nid, stream, snapshot)
