"""Persisting events that came from other servers.

A local event is built on the room's current state, so ``EventStore``
persists it as "current state plus this event". An event from another server
may sit anywhere in the DAG: the state before it is whatever the inbound
pipeline (``federation/event_handler.py``) computed from its prev_events
(state resolution when they fork), and the room's current state afterwards
is the resolution of the states after every forward extremity. So the
pipeline hands both over, and this store writes them in ONE transaction:

- ``persist_outliers_txn``: events we hold only for their own sake (auth
  chains, the state a join response lists, events fetched by ID): a row with
  edges and the auth-chain index, no stream position, no state of their own.
- ``persist_federated_txn``: a timeline event with the state before it
  (a base snapshot plus a delta when it has one prev event we hold, else a
  full map): its snapshot is that state plus itself; unless it is rejected or
  soft-failed it gets a stream position and replaces its prev_events among
  the forward extremities; with ``new_current`` the room's current state,
  memberships and current snapshot move to that state.
- invites to rooms we are not in: the room row, the invite as an outlier with
  a stream position (so the invitee's /sync sees it) and the stripped state
  the inviting server sent.

Rejected events keep ``rejected_reason`` and a snapshot (state before them)
so that events naming them as prev_events can still be placed; they never
change state. Soft-failed events (``soft_failed``) are the same except that
their own state counts for the state after them.

When the new current state differs from "the old one plus this event" (a
fork resolved), the transaction takes one more stream position, scoped to
the room: a barrier for the sync fast path (sync/recent.py), so every member
is answered by the full builder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from homeserver.events.model import Event
from homeserver.storage.auth_chains import AuthChainStore
from homeserver.storage.database import Database, Txn
from homeserver.storage.event_rows import (
    EventRow,
    event_nids_txn,
    insert_edges_txn,
    insert_event_rows_txn,
)
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.sql import chunks, placeholders, select_in, select_in_txn
from homeserver.storage.state import StateKey, StateStore
from homeserver.storage.streams import next_stream_id_txn

StateIds = Mapping[StateKey, str]


# events walked back through soft-failed and rejected prev_events, at most
MAX_REFUSED_WALK = 1000


@dataclass(frozen=True)
class EventInfo:
    """What the pipeline needs to know of an event it may already hold."""

    event_nid: int
    outlier: bool
    stream_ordering: int | None
    snapshot_nid: int | None
    rejected: bool
    soft_failed: bool
    room_nid: int


@dataclass
class FederatedPersisted:
    event_nid: int
    stream_ordering: int | None
    snapshot_nid: int
    # users whose membership of the room changed in current_state
    membership_changes: dict[str, str] = field(default_factory=dict)
    # a barrier position (the current state moved by more than the event)
    barrier: int | None = None
    current_changed: bool = False


class FederationEventStore:
    def __init__(self, db: Database, state: StateStore, events: EventStore) -> None:
        self.db = db
        self.state = state
        self.events = events

    # -- reading -----------------------------------------------------------

    async def get_event_info(self, event_ids: Iterable[str]) -> dict[str, EventInfo]:
        rows = await select_in(
            self.db, "get_event_info",
            "SELECT event_id, event_nid, outlier, stream_ordering, snapshot_nid,"
            " rejected_reason, soft_failed, room_nid FROM events WHERE event_id IN ({})",
            dict.fromkeys(event_ids))
        return {eid: EventInfo(int(nid), bool(outlier), None if stream is None else int(stream),
                               None if snapshot is None else int(snapshot),
                               rejected is not None, bool(soft), int(room_nid))
                for eid, nid, outlier, stream, snapshot, rejected, soft, room_nid in rows}

    async def get_state_ids_at_snapshots(self, snapshot_nids: Iterable[int],
                                         ) -> dict[int, dict[StateKey, str]]:
        """The whole state of each snapshot as ``(type, state_key) -> event ID``."""
        def txn_fn(txn: Txn) -> dict[int, dict[StateKey, str]]:
            return {s: self.state.load_snapshot_ids_txn(txn, s) for s in set(snapshot_nids)}
        return await self.db.run_interaction("get_state_ids_at_snapshots", txn_fn)

    async def get_state_ids_before(self, event_id: str) -> dict[StateKey, str] | None:
        """The state before the (timeline) event ``event_id``, None if we do
        not hold it with its state: the state after it with its own key put
        back to what it replaced."""
        def txn_fn(txn: Txn) -> dict[StateKey, str] | None:
            row = txn.select_one(
                "SELECT ev.snapshot_nid, ev.event_type, ev.state_key, ev.rejected_reason,"
                " old.event_id FROM events ev LEFT JOIN events old"
                " ON old.event_nid = ev.replaces_nid WHERE ev.event_id = ?", (event_id,))
            if row is None or row[0] is None:
                return None
            snapshot, event_type, state_key, rejected, replaced = row
            state = self.state.load_snapshot_ids_txn(txn, int(snapshot))
            if state_key is not None and rejected is None:
                key = (event_type, state_key)
                if state.get(key) == event_id:
                    if replaced is not None:
                        state[key] = replaced
                    else:
                        del state[key]
            return state
        return await self.db.run_interaction("get_state_ids_before", txn_fn)

    async def get_prev_events_for_backfill(self, room_nid: int, event_ids: list[str],
                                           limit: int) -> list[str]:
        """Up to ``limit`` events reached by walking prev_events back from
        ``event_ids`` (breadth first, deepest first), them included."""
        def txn_fn(txn: Txn) -> list[str]:
            start = [int(r[0]) for r in txn.select_all(
                f"SELECT event_nid FROM events WHERE event_id IN"
                f" ({placeholders(len(event_ids))}) AND room_nid = ?",
                [*event_ids, room_nid])] if event_ids else []
            seen: set[int] = set(start)
            order: list[int] = []
            frontier = start
            while frontier and len(order) < limit:
                order.extend(frontier[:limit - len(order)])
                nxt: list[int] = []
                # deepest first within each chunk of the frontier
                for (p,) in select_in_txn(
                        txn, "SELECT e.prev_event_nid FROM event_edges e JOIN events ev"
                        " ON ev.event_nid = e.prev_event_nid"
                        " WHERE e.event_nid IN ({}) AND ev.room_nid = ?"
                        " ORDER BY ev.depth DESC", frontier, after=(room_nid,)):
                    if int(p) not in seen:
                        seen.add(int(p))
                        nxt.append(int(p))
                frontier = nxt
            ids = self.state.event_ids_for_nids_txn(txn, order)
            return [ids[n] for n in order if n in ids]
        return await self.db.run_interaction("get_prev_events_for_backfill", txn_fn)

    async def get_missing_events(self, room_nid: int, earliest: list[str], latest: list[str],
                                 limit: int, min_depth: int) -> list[str]:
        """/get_missing_events: events before ``latest`` back to ``earliest``
        (excluded), breadth first, at most ``limit``, not below ``min_depth``."""
        def txn_fn(txn: Txn) -> list[str]:
            def nids(ids: list[str]) -> list[int]:
                if not ids:
                    return []
                return [int(r[0]) for r in txn.select_all(
                    f"SELECT event_nid FROM events WHERE event_id IN"
                    f" ({placeholders(len(ids))}) AND room_nid = ?", [*ids, room_nid])]
            seen = set(nids(earliest)) | set(nids(latest))
            frontier = nids(latest)
            found: list[tuple[int, int]] = []  # (depth, nid)
            while frontier and len(found) < limit:
                rows = txn.select_all(
                    "SELECT e.prev_event_nid, ev.depth FROM event_edges e JOIN events ev"
                    " ON ev.event_nid = e.prev_event_nid"
                    f" WHERE e.event_nid IN ({placeholders(len(frontier))})"
                    " AND ev.room_nid = ?", [*frontier, room_nid])
                frontier = []
                for p, depth in rows:
                    p = int(p)
                    if p in seen or int(depth) < min_depth:
                        continue
                    seen.add(p)
                    frontier.append(p)
                    found.append((int(depth), p))
                    if len(found) >= limit:
                        break
            found.sort()
            ids = self.state.event_ids_for_nids_txn(txn, [n for _, n in found])
            return [ids[n] for _, n in found if n in ids]
        return await self.db.run_interaction("get_missing_events", txn_fn)

    async def get_inbound_txn(self, origin: str, txn_id: str) -> Any:
        rows = await self.db.execute(
            "get_inbound_txn", "SELECT response FROM federation_inbound_txns"
            " WHERE origin = ? AND txn_id = ?", (origin, txn_id))
        return json.loads(rows[0][0]) if rows else None

    async def store_inbound_txn(self, origin: str, txn_id: str, response: Any,
                                now_ms: int) -> None:
        await self.db.execute(
            "store_inbound_txn", "INSERT INTO federation_inbound_txns"
            " (origin, txn_id, response, received_ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (origin, txn_id) DO NOTHING",
            (origin, txn_id, json.dumps(response), now_ms))

    async def prune_inbound_txns(self, older_than_ms: int) -> None:
        await self.db.execute("prune_inbound_txns", "DELETE FROM federation_inbound_txns"
                              " WHERE received_ts < ?", (older_than_ms,))

    async def get_remote_invite_state(self, event_id: str) -> list[dict[str, Any]] | None:
        rows = await self.db.execute(
            "get_remote_invite_state",
            "SELECT ris.stripped_state FROM remote_invite_state ris JOIN events ev"
            " ON ev.event_nid = ris.event_nid WHERE ev.event_id = ?", (event_id,))
        return json.loads(rows[0][0]) if rows else None  # type: ignore[no-any-return]

    # -- writing -----------------------------------------------------------

    @staticmethod
    def ensure_room_txn(txn: Txn, room_id: str, room_version: str, creator: str | None,
                        now_ms: int) -> int:
        row = txn.select_one("SELECT room_nid FROM rooms WHERE room_id = ?", (room_id,))
        if row is not None:
            return int(row[0])
        return RoomStore.create_room_txn(txn, room_id, room_version, creator or "", now_ms)

    @staticmethod
    def _insert_event_txn(txn: Txn, event: Event, room_nid: int, *, outlier: bool,
                          stream: int | None, snapshot: int | None,
                          soft_failed: bool = False) -> int:
        state_key_nid = None
        if event.is_state():
            state_key_nid = StateStore.get_or_create_state_key_nids_txn(
                txn, [event.state_pair()])[event.state_pair()]
        known = event_nids_txn(txn, event.prev_event_ids + event.auth_event_ids)
        nids = insert_event_rows_txn(txn, [EventRow(
            event, room_nid, stream_ordering=stream, state_key_nid=state_key_nid,
            outlier=outlier, snapshot_nid=snapshot, soft_failed=soft_failed)])
        insert_edges_txn(txn, [event], nids, known, remote=True)
        event_nid = nids[event.event_id]
        AuthChainStore.persist_event_txn(txn, event, event_nid)
        return event_nid

    @classmethod
    def persist_outliers_txn(cls, txn: Txn, room_nid: int, events: Iterable[Event]) -> None:
        """Store ``events`` (auth events before the events they authorise,
        where the caller can) as outliers; those already held are skipped."""
        evs = list({e.event_id: e for e in events}.values())
        if not evs:
            return
        held = set(event_nids_txn(txn, (e.event_id for e in evs)))
        todo = list({e.event_id: e for e in evs if e.event_id not in held}.values())
        if len(todo) <= 2:
            for event in todo:
                cls._insert_event_txn(txn, event, room_nid, outlier=True, stream=None,
                                      snapshot=None)
            return
        cls._insert_outliers_bulk_txn(txn, room_nid, todo)

    @staticmethod
    def _insert_outliers_bulk_txn(txn: Txn, room_nid: int, events: list[Event]) -> None:
        """``_insert_event_txn`` for many outliers at once (a join brings the
        room's whole state and auth chain): multi-row statements instead of a
        dozen round trips per event."""
        keys = StateStore.get_or_create_state_key_nids_txn(
            txn, [e.state_pair() for e in events if e.is_state()])
        nids = insert_event_rows_txn(txn, [
            EventRow(e, room_nid, outlier=True,
                     state_key_nid=keys.get(e.state_pair()) if e.is_state() else None)
            for e in events])
        known = dict(nids)
        known.update(event_nids_txn(txn, sorted(
            {r for e in events for r in e.prev_event_ids + e.auth_event_ids} - set(nids))))
        insert_edges_txn(txn, events, nids, known, remote=True)
        AuthChainStore.persist_events_txn(txn, [(e, nids[e.event_id]) for e in events])

    def _state_nids_txn(self, txn: Txn, state: StateIds) -> dict[int, int]:
        """``(type, state_key) -> event ID`` as state-key NID -> event NID
        (events we do not hold are left out)."""
        keys = StateStore.get_or_create_state_key_nids_txn(txn, list(state))
        nids = event_nids_txn(txn, set(state.values()))
        return {keys[k]: nids[e] for k, e in state.items() if e in nids}

    def persist_federated_txn(self, txn: Txn, room_nid: int, room_id: str, event: Event, *,
                              state_before: StateIds | None, base_snapshot: int | None,
                              soft_failed: bool, new_current: StateIds | None,
                              outliers: Iterable[Event] = (),
                              apply_redaction: bool = True) -> FederatedPersisted:
        """Store ``event`` (not held yet) as a timeline event; see the module
        docstring. The state before it is ``base_snapshot`` if given, else
        ``state_before``. A redaction is recorded as applying to its target
        unless ``apply_redaction`` is false (its sender may not redact it)."""
        self.persist_outliers_txn(txn, room_nid, outliers)
        rejected = event.rejected_reason is not None
        own: dict[int, int] = {}
        if base_snapshot is not None:
            before_snapshot = base_snapshot
        else:
            before_snapshot = StateStore.snapshot_from_map_txn(
                txn, room_nid, self._state_nids_txn(txn, state_before or {}))
        stream = None if rejected or soft_failed else next_stream_id_txn(txn)
        event_nid = self._insert_event_txn(txn, event, room_nid, outlier=False, stream=stream,
                                           snapshot=before_snapshot, soft_failed=soft_failed)
        snapshot = before_snapshot
        if event.is_state() and not rejected:
            key_nid = StateStore.get_or_create_state_key_nids_txn(
                txn, [event.state_pair()])[event.state_pair()]
            own = {key_nid: event_nid}
            replaced = (state_before or {}).get(event.state_pair())
            if replaced is not None:
                txn.execute("UPDATE events SET replaces_nid ="
                            " (SELECT event_nid FROM events WHERE event_id = ?)"
                            " WHERE event_nid = ?", (replaced, event_nid))
            snapshot = StateStore.create_snapshot_txn(txn, room_nid, before_snapshot, own)
            txn.execute("UPDATE events SET snapshot_nid = ? WHERE event_nid = ?",
                        (snapshot, event_nid))
        result = FederatedPersisted(event_nid, stream, snapshot)
        if not rejected and not soft_failed:
            self.events.persist_hooks.run_txn(txn, event, event_nid)
        redacts = EventStore._applied_redaction(event)
        if redacts is not None and not soft_failed and apply_redaction:
            txn.execute("INSERT INTO event_redactions (redacts, redaction_nid) VALUES (?, ?)",
                        (redacts, event_nid))
        if stream is None:
            return result
        prev_nids = [int(r[0]) for r in txn.select_all(
            "SELECT prev_event_nid FROM event_edges WHERE event_nid = ?", (event_nid,))]
        prev_nids += self._behind_refused_prevs_txn(txn, prev_nids)
        RoomStore.update_forward_extremities_txn(txn, room_nid, event_nid, prev_nids)
        txn.new_events.append((event, stream))
        if new_current is not None:
            self._set_current_state_txn(txn, room_nid, room_id, event, event_nid, snapshot,
                                        new_current, stream, result)
        return result

    @staticmethod
    def _behind_refused_prevs_txn(txn: Txn, prev_nids: list[int]) -> list[int]:
        """The events an event reaches back to through prev_events that were
        soft-failed or rejected (Synapse's ``_get_prevs_before_rejected``).

        A soft-failed event is no forward extremity, so its prev_events
        stayed ones; an event that builds on it covers them too, else they
        dangle as extremities nobody will ever build on."""
        found: list[int] = []
        frontier = list(prev_nids)
        seen = set(frontier)
        while frontier and len(seen) < MAX_REFUSED_WALK:
            refused = [int(r[0]) for r in select_in_txn(
                txn, "SELECT event_nid FROM events WHERE event_nid IN ({})"
                " AND (soft_failed = 1 OR rejected_reason IS NOT NULL)", frontier)]
            if not refused:
                break
            frontier = []
            for (prev,) in select_in_txn(
                    txn, "SELECT prev_event_nid FROM event_edges WHERE event_nid IN ({})",
                    refused):
                if int(prev) not in seen:
                    seen.add(int(prev))
                    found.append(int(prev))
                    frontier.append(int(prev))
        return found

    def _set_current_state_txn(self, txn: Txn, room_nid: int, room_id: str, event: Event,
                               event_nid: int, event_snapshot: int, new_current: StateIds,
                               stream: int, result: FederatedPersisted) -> None:
        target = self._state_nids_txn(txn, new_current)
        current = {int(k): int(v) for k, v in txn.select_all(
            "SELECT state_key_nid, event_nid FROM current_state WHERE room_nid = ?",
            (room_nid,))}
        if target == current:
            return
        result.current_changed = True
        changed = {k: v for k, v in target.items() if current.get(k) != v}
        removed = [k for k in current if k not in target]
        txn.execute_many("DELETE FROM current_state WHERE room_nid = ? AND state_key_nid = ?",
                         [(room_nid, k) for k in removed])
        rows = sorted(changed.items())
        for part in chunks(rows, 500):
            txn.execute("INSERT INTO current_state (room_nid, state_key_nid, event_nid) VALUES "
                        + ",".join(["(?, ?, ?)"] * len(part))
                        + " ON CONFLICT (room_nid, state_key_nid)"
                        " DO UPDATE SET event_nid = excluded.event_nid",
                        [v for k, e in part for v in (room_nid, k, e)])
        event_after = StateStore.load_snapshot_txn(txn, event_snapshot)
        snapshot = event_snapshot if event_after == target else \
            StateStore.snapshot_from_map_txn(txn, room_nid, target)
        RoomStore.set_current_snapshot_txn(txn, room_nid, snapshot)
        # memberships of the member keys that changed
        names = self.state.state_keys_for_nids_txn(txn, list(changed) + removed)
        member_nids = {k: names[k][1] for k in changed if k in names
                       and names[k][0] == "m.room.member"}
        if member_nids:
            values = [changed[k] for k in member_nids]
            membership_of: dict[int, Any] = {
                int(n): json.loads(j).get("content", {}).get("membership")
                for n, j in select_in_txn(
                    txn, "SELECT event_nid, json FROM events WHERE event_nid IN ({})", values)}
            member_rows: list[tuple[str, int, str, int, int]] = []
            for key, user_id in member_nids.items():
                membership = membership_of.get(changed[key])
                if isinstance(membership, str):
                    member_rows.append((user_id, room_nid, membership, changed[key], stream))
                    result.membership_changes[user_id] = membership
            for members in chunks(member_rows, 500):
                txn.execute(
                    "INSERT INTO room_memberships"
                    " (user_id, room_nid, membership, event_nid, stream_ordering, forgotten)"
                    " VALUES " + ",".join(["(?, ?, ?, ?, ?, 0)"] * len(members))
                    + " ON CONFLICT (user_id, room_nid) DO UPDATE SET"
                    " membership = excluded.membership, event_nid = excluded.event_nid,"
                    " stream_ordering = excluded.stream_ordering, forgotten = 0",
                    [v for row in members for v in row])
        for key in removed:
            if key in names and names[key][0] == "m.room.member":
                txn.execute("DELETE FROM room_memberships WHERE user_id = ? AND room_nid = ?",
                            (names[key][1], room_nid))
        # more changed than the event itself: every member must rebuild
        own_key = None
        if event.is_state() and event.rejected_reason is None:
            own_key = event.state_pair()
        if any(names.get(k) != own_key for k in list(changed) + removed
               if not (k in names and names[k] == own_key and changed.get(k) == event_nid)):
            barrier = next_stream_id_txn(txn)
            txn.add_scope(barrier, room_id, None)
            result.barrier = barrier

    def store_remote_invite_txn(self, txn: Txn, room_id: str, room_version: str, event: Event,
                                stripped_state: list[dict[str, Any]], now_ms: int) -> int:
        """An invite of a local user to a room we do not hold: the room row,
        the invite (an outlier with a stream position), its stripped state and
        the invitee's membership. Returns the stream position."""
        room_nid = self.ensure_room_txn(txn, room_id, room_version, None, now_ms)
        held = txn.select_one("SELECT event_nid, stream_ordering FROM events"
                              " WHERE event_id = ?", (event.event_id,))
        if held is not None and held[1] is not None:
            return int(held[1])
        stream = next_stream_id_txn(txn)
        if held is not None:
            event_nid = int(held[0])
            txn.execute("UPDATE events SET stream_ordering = ? WHERE event_nid = ?",
                        (stream, event_nid))
        else:
            event_nid = self._insert_event_txn(txn, event, room_nid, outlier=True,
                                               stream=stream, snapshot=None)
        if stripped_state:
            txn.execute("INSERT INTO remote_invite_state (event_nid, stripped_state)"
                        " VALUES (?, ?) ON CONFLICT (event_nid) DO NOTHING",
                        (event_nid, json.dumps(stripped_state)))
        assert event.state_key is not None
        RoomStore.set_membership_txn(txn, event.state_key, room_nid,
                                     event.membership or "invite", event_nid, stream)
        self.events.persist_hooks.run_remote_invite_txn(txn, event, event_nid)
        txn.new_events.append((event, stream))
        return stream

    async def store_remote_invite(self, room_id: str, room_version: str, event: Event,
                                  stripped_state: list[dict[str, Any]], now_ms: int) -> int:
        return await self.db.run_interaction("store_remote_invite",
                                             self.store_remote_invite_txn, room_id,
                                             room_version, event, stripped_state, now_ms)

    async def persist_federated(self, room_nid: int, room_id: str, event: Event, *,
                                state_before: StateIds | None, base_snapshot: int | None,
                                soft_failed: bool, new_current: StateIds | None,
                                outliers: Iterable[Event] = (),
                                apply_redaction: bool = True) -> FederatedPersisted:
        result = await self.db.run_interaction(
            "persist_federated", self.persist_federated_txn, room_nid, room_id, event,
            state_before=state_before, base_snapshot=base_snapshot, soft_failed=soft_failed,
            new_current=new_current, outliers=list(outliers), apply_redaction=apply_redaction)
        redacts = EventStore._applied_redaction(event)
        if redacts is not None:
            self.events.cache.invalidate(redacts)
        return result

    async def get_backfill_point(self, room_nid: int, from_pos: int,
                                 wanted: int) -> tuple[int, str | None, bool]:
        """For a backwards read of ``wanted`` events from ``from_pos``: how
        many timeline events the room holds there, the ID of its earliest
        timeline event, and whether that is the room's create event (then
        there is nothing before it to fetch)."""
        def txn_fn(txn: Txn) -> tuple[int, str | None, bool]:
            held = txn.select_value(
                "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE room_nid = ? AND outlier = 0"
                " AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT ?) AS held",
                (room_nid, from_pos, wanted))
            row = txn.select_one(
                "SELECT event_id, event_type FROM events WHERE room_nid = ? AND outlier = 0"
                " AND stream_ordering IS NOT NULL ORDER BY stream_ordering LIMIT 1",
                (room_nid,))
            if row is None:
                return int(held), None, False
            return int(held), str(row[0]), row[1] == "m.room.create"
        return await self.db.run_interaction("get_backfill_point", txn_fn)

    async def get_backfill_gaps(self, room_nid: int, from_pos: int,
                                wanted: int) -> list[tuple[str, list[str]]]:
        """For a backwards read of ``wanted`` events from ``from_pos``: the
        gaps in the DAG there, as (event ID, the IDs of its prev_events
        missing from the timeline: not held, or held only as outliers, as
        the state across a gap brings them), newest event first. The
        room's earliest timeline event is left out (``get_backfill_point``
        covers what lies before it), and so are prev_events of another
        room: a room's history never continues into another room's."""
        def txn_fn(txn: Txn) -> list[tuple[str, list[str]]]:
            # the event just after the page too: the client holds it, and
            # what is missing before it belongs to the page
            after = txn.select_value(
                "SELECT MIN(stream_ordering) FROM events WHERE room_nid = ? AND outlier = 0"
                " AND stream_ordering > ?", (room_nid, from_pos))
            window = txn.select_all(
                "SELECT event_nid, event_id FROM events WHERE room_nid = ? AND outlier = 0"
                " AND stream_ordering <= ? AND stream_ordering > (SELECT MIN(stream_ordering)"
                " FROM events WHERE room_nid = ? AND outlier = 0)"
                " ORDER BY stream_ordering DESC LIMIT ?",
                (room_nid, from_pos if after is None else int(after), room_nid, wanted + 1))
            if not window:
                return []
            nids = [int(r[0]) for r in window]
            missing: dict[int, list[str]] = {}
            for nid, prev_id in select_in_txn(
                    txn, "SELECT p.event_nid, p.prev_event_id FROM event_edges_pending p"
                    " WHERE p.event_nid IN ({}) AND NOT EXISTS"
                    " (SELECT 1 FROM events h WHERE h.event_id = p.prev_event_id)", nids):
                missing.setdefault(int(nid), []).append(str(prev_id))
            for nid, prev_id in select_in_txn(
                    txn, "SELECT e.event_nid, pe.event_id FROM event_edges e JOIN events pe"
                    " ON pe.event_nid = e.prev_event_nid WHERE e.event_nid IN ({})"
                    " AND pe.room_nid = ? AND pe.outlier = 1", nids, after=(room_nid,)):
                missing.setdefault(int(nid), []).append(str(prev_id))
            return [(str(event_id), sorted(missing[int(nid)]))
                    for nid, event_id in window if int(nid) in missing]
        return await self.db.run_interaction("get_backfill_gaps", txn_fn)

    def persist_backfilled_txn(self, txn: Txn, room_nid: int, events: list[Event],
                               state_before: StateIds) -> int:
        """Store history fetched with /backfill below everything else in the
        timeline: newest first, each one position lower (they are older
        than every event we hold). They all get ``state_before`` (the state
        before the earliest event we held) as their state: close enough for
        the history-visibility checks of reading them, and they never
        change the room's current state or forward extremities. Returns how
        many were stored."""
        snapshot = StateStore.snapshot_from_map_txn(txn, room_nid,
                                                    self._state_nids_txn(txn, state_before))
        ids = [e.event_id for e in events]
        # held already: skipped, but an outlier (the auth chain and state a join
        # brought) becomes part of the timeline where history puts it
        held = {r[0]: (int(r[1]), r[2] is None) for r in txn.select_all(
            "SELECT event_id, outlier, stream_ordering, event_nid FROM events"
            f" WHERE event_id IN ({placeholders(len(ids))})", ids)} if ids else {}
        promote = {e for e, (outlier, no_stream) in held.items() if outlier and no_stream}
        todo = [e for e in events if e.event_id not in held or e.event_id in promote]
        timeline = [e for e in todo if e.rejected_reason is None]
        if timeline:
            low = int(txn.select_value(
                "UPDATE backfill_stream SET position = position - ? WHERE lock = 1"
                " RETURNING position", (len(timeline),)))
        positions = {e.event_id: low + len(timeline) - 1 - i
                     for i, e in enumerate(timeline)} if timeline else {}
        for event in todo:
            if event.event_id in promote:
                if event.event_id in positions:
                    txn.execute("UPDATE events SET outlier = 0, stream_ordering = ?,"
                                " snapshot_nid = ? WHERE event_id = ? AND outlier = 1",
                                (positions[event.event_id], snapshot, event.event_id))
                    nid = txn.select_value("SELECT event_nid FROM events WHERE event_id = ?",
                                           (event.event_id,))
                    if nid is not None:
                        self.events.persist_hooks.run_txn(txn, event, int(nid))
                continue
            event_nid = self._insert_event_txn(
                txn, event, room_nid, outlier=False, stream=positions.get(event.event_id),
                snapshot=snapshot)
            if event.rejected_reason is None:
                self.events.persist_hooks.run_txn(txn, event, event_nid)
            redacts = EventStore._applied_redaction(event)
            if redacts is not None:
                txn.execute("INSERT INTO event_redactions (redacts, redaction_nid)"
                            " VALUES (?, ?)", (redacts, event_nid))
        return len(todo)

    async def persist_backfilled(self, room_nid: int, events: list[Event],
                                 state_before: StateIds) -> int:
        count = await self.db.run_interaction("persist_backfilled",
                                              self.persist_backfilled_txn, room_nid, events,
                                              state_before)
        for event in events:
            redacts = EventStore._applied_redaction(event)
            if redacts is not None:
                self.events.cache.invalidate(redacts)
        return count

    async def persist_outliers(self, room_nid: int, events: list[Event]) -> None:
        await self.db.run_interaction("persist_outliers", self.persist_outliers_txn,
                                      room_nid, events)

    async def clean_room_for_join(self, room_nid: int) -> None:
        """Forget the room's forward extremities before a join through another
        server: what we last saw of a room we left (our own leave, say) is
        an ancestor of the join, and resolving it against the join's state
        would undo the join. The send_join state is the room's state now."""
        await self.db.execute("clean_room_for_join",
                              "DELETE FROM forward_extremities WHERE room_nid = ?", (room_nid,))

    async def ensure_room(self, room_id: str, room_version: str, creator: str | None,
                          now_ms: int) -> int:
        return await self.db.run_interaction("ensure_room", self.ensure_room_txn, room_id,
                                             room_version, creator, now_ms)
