"""The auth-chain index: auth chains and the auth difference as queries.

State resolution asks for the auth chain of events and for the *auth
difference* of state sets (events in some but not all of the sets' full auth
chains). Walking ``event_auth_edges`` for that reads the whole auth history
of a room. This index, Synapse's "chain cover" (its
docs/auth_chain_difference_algorithm.md), answers both with two queries.

The index
---------
Every indexed event has a place ``(chain_id, sequence_number)``. A chain is a
run of events each of which has all earlier events of its chain in its auth
chain: a state event extends the chain of the auth event with the same
``(type, state_key)`` when that auth event is the last of its chain (a
user's successive memberships, the successive power levels), else it starts
a new chain. *Links* say what else an event reaches: a link
``(C, s) -> (T, t)`` means the event at ``(C, s)``, and so every later event
of ``C``, has the events of chain ``T`` up to ``t`` in its auth chain. Links
are stored transitively closed but as deltas: an event gets a link to ``T``
only where it reaches further into ``T`` than the event before it in its
chain. So the auth chain of the event at ``(C, s)`` is

- the events of ``C`` with sequence numbers below ``s``, and
- for each chain ``T``, its events up to ``max(t)`` over the links from
  ``C`` with origin sequence number ``<= s``;

and the auth chain of a set of events is, per chain, the largest of those
bounds ("reach"). The auth difference of state sets is then, per chain, the
events between the smallest and the largest reach of the sets.

What is indexed
---------------
State events, as Synapse does: only state events are auth events, and the
state sets state resolution compares are made of them. The auth chain of an
event outside the index (a message) is read through its ``event_auth_edges``
row: its auth events and their chains. A non-state event that a state event
names as an auth event (invalid, but a remote server may send it) is indexed
on demand.

v12 rooms (``room_id_from_create_event``): the create event is not in
``auth_events`` but authorises every event; as ``rooms/auth_chain.py`` does,
the index counts it as an auth event of every other event of the room.
``event_auth_edges`` keeps only the listed ones.

Events arriving out of order (federation, outliers)
---------------------------------------------------
``persist_event_txn`` runs in the transaction that stores the event. An
event whose auth events are not all stored and indexed is not indexed yet:
``event_auth_chain_pending`` records what it waits for (by event ID, since a
missing event has no NID). When a waited-for event is stored and indexed, the
DAG edge the event row could not get (``events.persist_event_txn`` drops
edges to unknown events) is added to ``event_auth_edges``, and the waiting
events are indexed in dependency order, and then whatever waited for them.
An event in an auth cycle (only a malicious room has one) waits forever.
While an event waits, queries answer for it with the indexed part of its
auth chain (its indexed auth events and their chains), as for a message.

Events stored before the index existed are indexed by ``ensure_indexed``
(called at start) for the rooms listed in ``event_auth_chain_backfill`` by
the migration, a batch per transaction, in dependency order. Their edges to
events that were unknown when they were stored were dropped then, so the
index covers the DAG as ``event_auth_edges`` has it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import chunks, placeholders, select_in_txn

logger = logging.getLogger(__name__)

# rows of a VALUES list, or NIDs of an IN list, per statement
_CHUNK = 300
# events indexed per transaction by ensure_indexed
BACKFILL_BATCH = 500

# the room versions whose create event authorises every event implicitly
_V12_LIKE = sorted(v.identifier for v in KNOWN_ROOM_VERSIONS.values()
                   if v.room_id_from_create_event)

# chain ID -> the largest sequence number reached in it
Reach = dict[int, int]



def _implicit_create_id(room_id: str, room_version: str, event_type: str) -> str | None:
    """v12: the create event's ID, from the room ID ("!x" -> "$x")."""
    rv = KNOWN_ROOM_VERSIONS.get(room_version)
    if rv is None or not rv.room_id_from_create_event or event_type == "m.room.create":
        return None
    return "$" + room_id[1:] if room_id.startswith("!") else None


def _merge(into: Reach, chain: int, seq: int) -> None:
    if seq > into.get(chain, 0):
        into[chain] = seq


class AuthChainStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- maintaining the index ------------------------------------------------

    @staticmethod
    def persist_event_txn(txn: Txn, event: Event, event_nid: int) -> None:
        """Index ``event``, just stored as ``event_nid`` with its edges, and the
        events that waited for it; or record what it waits for."""
        auth_ids = list(dict.fromkeys(event.auth_event_ids))
        missing: list[str] = []
        if auth_ids:
            known = {r[0] for r in txn.select_all(
                f"SELECT event_id FROM events WHERE event_id IN ({placeholders(len(auth_ids))})",
                auth_ids)}
            missing = [a for a in auth_ids if a not in known]
        if missing:
            txn.execute_many(
                "INSERT INTO event_auth_chain_pending (event_nid, auth_event_id, explicit)"
                " VALUES (?, ?, 1)", [(event_nid, a) for a in missing])
        # it may be the missing auth event of events stored before it
        txn.execute(
            "INSERT INTO event_auth_edges (event_nid, auth_event_nid)"
            " SELECT event_nid, ? FROM event_auth_chain_pending"
            " WHERE auth_event_id = ? AND explicit = 1 ON CONFLICT DO NOTHING",
            (event_nid, event.event_id))
        if not event.is_state() and txn.select_one(
                "SELECT 1 FROM event_auth_chain_pending WHERE auth_event_id = ? LIMIT 1",
                (event.event_id,)) is None:
            return
        AuthChainStore.index_events_txn(txn, [event_nid])

    @staticmethod
    def persist_events_txn(txn: Txn, events: Sequence[tuple[Event, int]]) -> None:
        """``persist_event_txn`` for many events stored in one transaction (a
        join's state and auth chain): the same work in a few statements."""
        if not events:
            return
        auth_ids = sorted({a for e, _ in events for a in e.auth_event_ids})
        known = {r[0] for r in select_in_txn(
            txn, "SELECT event_id FROM events WHERE event_id IN ({})", auth_ids, chunk=_CHUNK)}
        pending = [(nid, a) for e, nid in events for a in dict.fromkeys(e.auth_event_ids)
                   if a not in known]
        for part in chunks(pending, _CHUNK):
            txn.execute("INSERT INTO event_auth_chain_pending (event_nid, auth_event_id,"
                        " explicit) VALUES " + ",".join(["(?, ?, 1)"] * len(part)),
                        [v for row in part for v in row])
        new_ids = {e.event_id: nid for e, nid in events}
        waited_for: set[str] = set()
        for chunk in chunks(sorted(new_ids), _CHUNK):
            rows = txn.select_all(
                "SELECT event_nid, auth_event_id, explicit FROM event_auth_chain_pending"
                f" WHERE auth_event_id IN ({placeholders(len(chunk))})", chunk)
            waited_for.update(r[1] for r in rows)
            edges = [(int(w), new_ids[a]) for w, a, explicit in rows if explicit]
            for edge_rows in chunks(edges, _CHUNK):
                txn.execute("INSERT INTO event_auth_edges (event_nid, auth_event_nid) VALUES "
                            + ",".join(["(?, ?)"] * len(edge_rows)) + " ON CONFLICT DO NOTHING",
                            [v for row in edge_rows for v in row])
        to_index = [nid for e, nid in events if e.is_state() or e.event_id in waited_for]
        if to_index:
            AuthChainStore.index_events_txn(txn, to_index)

    @staticmethod
    def index_events_txn(txn: Txn, event_nids: Iterable[int]) -> None:
        """Index the events ``event_nids`` (already stored), with the unindexed
        events they depend on, then the events that waited for them."""
        todo = set(event_nids)
        while todo:
            done = AuthChainStore._index_batch_txn(txn, todo)
            todo = AuthChainStore._release_waiters_txn(txn, done)

    @staticmethod
    def _index_batch_txn(txn: Txn, nids: set[int]) -> dict[int, str]:
        """Index what of ``nids`` (and their unindexed, not waiting auth
        events) can be; record what the rest wait for. Returns the newly
        indexed events, NID -> event ID."""
        info: dict[int, tuple[str, int, int | None]] = {}  # nid -> (id, room, state key)
        deps: dict[int, set[int]] = {}
        indexed: dict[int, tuple[int, int]] = {}  # nid -> (chain, seq), in the index
        waiting: set[int] = set()  # have pending rows
        frontier = set(nids)
        while frontier:
            # the batch grows by dependencies that are stored but neither
            # indexed nor waiting (pre-backfill history, non-state events)
            new = sorted(frontier)
            frontier = set()
            for nid, eid, room, skey in AuthChainStore._event_rows_txn(txn, new):
                info[nid] = (eid, room, skey)
            for nid, pos in AuthChainStore._positions_txn(txn, new).items():
                indexed[nid] = pos
            waiting |= AuthChainStore._waiting_txn(txn, new)
            batch_new = [n for n in new if n in info and n not in indexed and n not in waiting]
            for nid, dep_set in AuthChainStore._auth_deps_txn(txn, batch_new).items():
                deps[nid] = dep_set
            unseen = sorted({d for n in batch_new for d in deps.get(n, ())} - info.keys())
            if unseen:
                for nid, pos in AuthChainStore._positions_txn(txn, unseen).items():
                    indexed[nid] = pos
                waiting_deps = AuthChainStore._waiting_txn(txn, unseen)
                waiting |= waiting_deps
                for nid, eid, room, skey in AuthChainStore._event_rows_txn(txn, unseen):
                    info[nid] = (eid, room, skey)
                frontier = {d for d in unseen if d not in indexed and d not in waiting_deps}
        batch = {n for n in info if n not in indexed and n not in waiting}

        # dependency order within the batch (Kahn); what a cycle or a waiting
        # dependency holds back stays unindexed
        blocked_by: dict[int, set[int]] = {}
        users: dict[int, list[int]] = defaultdict(list)
        remaining: dict[int, int] = {}
        ready: list[int] = []
        for n in sorted(batch):
            inner = [d for d in deps.get(n, ()) if d in batch]
            for d in inner:
                users[d].append(n)
            remaining[n] = len(inner)
            outside_waiting = {d for d in deps.get(n, ()) if d not in batch and d not in indexed}
            if outside_waiting:
                blocked_by[n] = outside_waiting
        order: list[int] = []
        for n in sorted(batch):
            if remaining[n] == 0:
                ready.append(n)
        while ready:
            n = ready.pop()
            if n in blocked_by:
                # held back: its users wait for it
                for u in users[n]:
                    blocked_by.setdefault(u, set()).add(n)
            else:
                order.append(n)
            for u in users[n]:
                remaining[u] -= 1
                if remaining[u] == 0:
                    ready.append(u)
        for n in batch:
            if remaining[n] > 0:  # on or behind an auth cycle
                blocked_by.setdefault(n, set()).update(
                    d for d in deps.get(n, ()) if d not in indexed)
        if blocked_by:
            txn.execute_many(
                "INSERT INTO event_auth_chain_pending (event_nid, auth_event_id, explicit)"
                " VALUES (?, ?, 0) ON CONFLICT DO NOTHING",
                [(n, info[d][0]) for n, ds in blocked_by.items() for d in ds if d in info])

        # the reach of the indexed auth events, and the last place of their chains
        outside = sorted({d for n in order for d in deps.get(n, ()) if d in indexed})
        reach: dict[int, Reach] = AuthChainStore._own_reach_txn(txn, outside)
        heads: dict[int, int] = {}
        chains = sorted({indexed[d][0] for d in outside})
        for chunk in chunks(chains, _CHUNK):
            for chain, seq in txn.select_all(
                    "SELECT chain_id, MAX(sequence_number) FROM event_auth_chains"
                    f" WHERE chain_id IN ({placeholders(len(chunk))}) GROUP BY chain_id",
                    chunk):
                heads[int(chain)] = int(seq)

        places: list[tuple[int, int, int]] = []
        links: list[tuple[int, int, int, int]] = []
        for n in order:
            eid, room, skey = info[n]
            mine: Reach = {}
            head: int | None = None
            for d in deps.get(n, ()):
                chain, seq = indexed[d]
                _merge(mine, chain, seq)
                for c, s in reach.get(d, {}).items():
                    _merge(mine, c, s)
                if (head is None and skey is not None and info.get(d, ("", 0, None))[2] == skey
                        and info[d][1] == room and heads.get(chain) == seq):
                    head = d
            if head is not None:
                chain, seq = indexed[head]
                seq += 1
                before = reach.get(head, {})
            else:
                chain = int(txn.select_value(
                    "INSERT INTO event_auth_chain_ids (room_nid) VALUES (?) RETURNING chain_id",
                    (room,)))
                seq = 1
                before = {}
            mine.pop(chain, None)
            links.extend((chain, seq, c, s) for c, s in mine.items() if s > before.get(c, 0))
            places.append((n, chain, seq))
            indexed[n] = (chain, seq)
            heads[chain] = seq
            reach[n] = mine
        txn.execute_many(
            "INSERT INTO event_auth_chains (event_nid, chain_id, sequence_number)"
            " VALUES (?, ?, ?)", places)
        txn.execute_many(
            "INSERT INTO event_auth_chain_links (origin_chain_id, origin_sequence_number,"
            " target_chain_id, target_sequence_number) VALUES (?, ?, ?, ?)", links)
        return {n: info[n][0] for n in order}

    @staticmethod
    def _release_waiters_txn(txn: Txn, done: dict[int, str]) -> set[int]:
        """Events waiting for the newly indexed ``done``: add their missing
        DAG edges, drop the waits, and return those that wait for nothing now."""
        by_id = {eid: nid for nid, eid in done.items()}
        ids = sorted(by_id)
        rows = [(int(w), a, int(x)) for w, a, x in select_in_txn(
            txn, "SELECT event_nid, auth_event_id, explicit FROM event_auth_chain_pending"
            " WHERE auth_event_id IN ({})", ids, chunk=_CHUNK)]
        if not rows:
            return set()
        txn.execute_many(
            "INSERT INTO event_auth_edges (event_nid, auth_event_nid) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            [(w, by_id[a]) for w, a, explicit in rows if explicit])
        for chunk in chunks(ids, _CHUNK):
            txn.execute("DELETE FROM event_auth_chain_pending"
                        f" WHERE auth_event_id IN ({placeholders(len(chunk))})", chunk)
        waiters = sorted({w for w, _, _ in rows})
        return set(waiters) - AuthChainStore._waiting_txn(txn, waiters)

    @staticmethod
    def _event_rows_txn(txn: Txn, nids: Sequence[int]) -> list[tuple[int, str, int, int | None]]:
        return [(int(n), e, int(r), None if k is None else int(k))
                for n, e, r, k in select_in_txn(
                    txn, "SELECT event_nid, event_id, room_nid, state_key_nid FROM events"
                    " WHERE event_nid IN ({})", nids, chunk=_CHUNK)]

    @staticmethod
    def _positions_txn(txn: Txn, nids: Sequence[int]) -> dict[int, tuple[int, int]]:
        return {int(n): (int(c), int(s)) for n, c, s in select_in_txn(
            txn, "SELECT event_nid, chain_id, sequence_number FROM event_auth_chains"
            " WHERE event_nid IN ({})", nids, chunk=_CHUNK)}

    @staticmethod
    def _waiting_txn(txn: Txn, nids: Sequence[int]) -> set[int]:
        return {int(r[0]) for r in select_in_txn(
            txn, "SELECT DISTINCT event_nid FROM event_auth_chain_pending"
            " WHERE event_nid IN ({})", nids, chunk=_CHUNK)}

    @staticmethod
    def _auth_deps_txn(txn: Txn, nids: Sequence[int]) -> dict[int, set[int]]:
        """The auth events of ``nids`` as the index counts them: the DAG edges,
        and in v12 rooms the create event. An unknown create event makes the
        event wait for it."""
        deps: dict[int, set[int]] = {n: set() for n in nids}
        creates: dict[int, str] = {}
        for chunk in chunks(nids, _CHUNK):
            for n, a in txn.select_all(
                    "SELECT event_nid, auth_event_nid FROM event_auth_edges"
                    f" WHERE event_nid IN ({placeholders(len(chunk))})", chunk):
                deps[int(n)].add(int(a))
            for n, room_id, version, etype in txn.select_all(
                    "SELECT e.event_nid, r.room_id, r.room_version, e.event_type"
                    " FROM events e JOIN rooms r ON r.room_nid = e.room_nid"
                    f" WHERE e.event_nid IN ({placeholders(len(chunk))})", chunk):
                create = _implicit_create_id(room_id, version, etype)
                if create is not None:
                    creates[int(n)] = create
        if creates:
            ids = sorted(set(creates.values()))
            create_nids = {e: int(n) for e, n in txn.select_all(
                f"SELECT event_id, event_nid FROM events WHERE event_id IN"
                f" ({placeholders(len(ids))})", ids)}
            unknown: list[tuple[int, str]] = []
            for n, create in creates.items():
                if create in create_nids:
                    deps[n].add(create_nids[create])
                else:
                    unknown.append((n, create))
            if unknown:
                txn.execute_many(
                    "INSERT INTO event_auth_chain_pending (event_nid, auth_event_id, explicit)"
                    " VALUES (?, ?, 0) ON CONFLICT DO NOTHING", unknown)
                for n, _ in unknown:
                    deps[n].add(-1)  # never indexed: holds the event back
        return deps

    @staticmethod
    def _own_reach_txn(txn: Txn, nids: Sequence[int]) -> dict[int, Reach]:
        """For indexed events: what their links reach (their own chain aside)."""
        out: dict[int, Reach] = {n: {} for n in nids}
        for chunk in chunks(nids, _CHUNK):
            for n, c, s in txn.select_all(
                    "SELECT c.event_nid, l.target_chain_id, MAX(l.target_sequence_number)"
                    " FROM event_auth_chains c JOIN event_auth_chain_links l"
                    " ON l.origin_chain_id = c.chain_id"
                    " AND l.origin_sequence_number <= c.sequence_number"
                    f" WHERE c.event_nid IN ({placeholders(len(chunk))})"
                    " GROUP BY c.event_nid, l.target_chain_id", chunk):
                out[int(n)][int(c)] = int(s)
        return out

    # -- queries ---------------------------------------------------------------

    @staticmethod
    def _reach_of_sets_txn(txn: Txn, sets: Sequence[Iterable[int]]) -> list[Reach]:
        """For each set of events, per chain the last event of its auth chain
        (the union of its events' auth chains)."""
        pairs = sorted({(i, int(n)) for i, s in enumerate(sets) for n in s})
        out: list[Reach] = [{} for _ in sets]
        for chunk in chunks(pairs, _CHUNK):
            values = ",".join("(?, ?)" for _ in chunk)
            params: list[Any] = [v for pair in chunk for v in pair]
            params.extend(_V12_LIKE)
            for i, c, s in txn.select_all(
                    f"WITH q (idx, nid) AS (VALUES {values}),"
                    # the events themselves if indexed; else their auth events
                    # (upto: the place whose links count)
                    " p (idx, chain_id, seq, upto) AS ("
                    "  SELECT q.idx, c.chain_id, c.sequence_number - 1, c.sequence_number"
                    "  FROM q JOIN event_auth_chains c ON c.event_nid = q.nid"
                    "  UNION ALL"
                    "  SELECT q.idx, c.chain_id, c.sequence_number, c.sequence_number FROM q"
                    "  JOIN event_auth_edges a ON a.event_nid = q.nid"
                    "  JOIN event_auth_chains c ON c.event_nid = a.auth_event_nid"
                    "  WHERE NOT EXISTS"
                    "   (SELECT 1 FROM event_auth_chains x WHERE x.event_nid = q.nid)"
                    "  UNION ALL"  # and, in v12 rooms, the implicit create event
                    "  SELECT q.idx, c.chain_id, c.sequence_number, c.sequence_number FROM q"
                    "  JOIN events e ON e.event_nid = q.nid"
                    "  JOIN rooms r ON r.room_nid = e.room_nid"
                    "  JOIN events ce ON ce.event_id = '$' || SUBSTR(r.room_id, 2)"
                    "  JOIN event_auth_chains c ON c.event_nid = ce.event_nid"
                    f"  WHERE r.room_version IN ({placeholders(len(_V12_LIKE))})"
                    "  AND e.event_type <> 'm.room.create' AND NOT EXISTS"
                    "   (SELECT 1 FROM event_auth_chains x WHERE x.event_nid = q.nid)),"
                    " r (idx, chain_id, seq) AS ("
                    "  SELECT idx, chain_id, seq FROM p"
                    "  UNION ALL"
                    "  SELECT p.idx, l.target_chain_id, l.target_sequence_number FROM p"
                    "  JOIN event_auth_chain_links l ON l.origin_chain_id = p.chain_id"
                    "  AND l.origin_sequence_number <= p.upto)"
                    " SELECT idx, chain_id, MAX(seq) FROM r GROUP BY idx, chain_id",
                    params):
                _merge(out[int(i)], int(c), int(s))
        return out

    @staticmethod
    def _events_in_ranges_txn(txn: Txn, ranges: dict[int, tuple[int, int]],
                              room_nid: int | None = None) -> set[int]:
        """The indexed events with ``lo < sequence_number <= hi`` in each
        chain of ``ranges`` (chain -> (lo, hi))."""
        rows = sorted((c, lo, hi) for c, (lo, hi) in ranges.items() if hi > lo)
        out: set[int] = set()
        for chunk in chunks(rows, _CHUNK):
            values = ",".join("(?, ?, ?)" for _ in chunk)
            params: list[int] = [v for row in chunk for v in row]
            sql = (f"WITH r (chain_id, lo, hi) AS (VALUES {values})"
                   " SELECT c.event_nid FROM r JOIN event_auth_chains c"
                   " ON c.chain_id = r.chain_id AND c.sequence_number > r.lo"
                   " AND c.sequence_number <= r.hi")
            if room_nid is not None:
                sql += (" JOIN events e ON e.event_nid = c.event_nid"
                        " WHERE e.room_nid = ?")
                params.append(room_nid)
            out.update(int(r[0]) for r in txn.select_all(sql, params))
        return out

    @staticmethod
    def get_auth_chain_nids_txn(txn: Txn, event_nids: Iterable[int]) -> set[int]:
        """The union of the auth chains of ``event_nids``: every event reached
        through auth events, not the events themselves unless so reached."""
        reach = AuthChainStore._reach_of_sets_txn(txn, [list(event_nids)])[0]
        return AuthChainStore._events_in_ranges_txn(
            txn, {c: (0, s) for c, s in reach.items()})

    @staticmethod
    def get_auth_chain_difference_nids_txn(txn: Txn, room_nid: int,
                                           state_sets: Sequence[Iterable[int]]) -> set[int]:
        """The auth difference of state resolution (spec: v2-state-res): with
        ``C_i`` the full auth chain of ``state_sets[i]`` (the union of its
        events' auth chains, as ``get_auth_chain_nids``), ``union(C_i) -
        intersection(C_i)``. Only events of the room ``room_nid``."""
        if not state_sets:
            return set()
        reaches = AuthChainStore._reach_of_sets_txn(txn, state_sets)
        chains = {c for r in reaches for c in r}
        ranges = {c: (min(r.get(c, 0) for r in reaches), max(r.get(c, 0) for r in reaches))
                  for c in chains}
        return AuthChainStore._events_in_ranges_txn(txn, ranges, room_nid)

    async def get_auth_chain_nids(self, event_nids: Iterable[int]) -> set[int]:
        return await self.db.run_interaction(
            "get_auth_chain_nids", self.get_auth_chain_nids_txn, list(event_nids))

    async def get_auth_chain_difference_nids(self, room_nid: int,
                                             state_sets: Sequence[Iterable[int]]) -> set[int]:
        return await self.db.run_interaction(
            "get_auth_chain_difference_nids", self.get_auth_chain_difference_nids_txn,
            room_nid, [list(s) for s in state_sets])

    # -- events stored before the index -----------------------------------------

    async def ensure_indexed(self) -> int:
        """Index the state events of rooms stored before the index existed
        (``event_auth_chain_backfill``); returns how many were indexed."""
        rooms = await self.db.execute(
            "auth_chain_backfill_rooms",
            "SELECT room_nid FROM event_auth_chain_backfill ORDER BY room_nid")
        total = 0
        for (room_nid,) in rooms:
            while True:
                n = await self.db.run_interaction(
                    "auth_chain_backfill", self._backfill_room_txn, int(room_nid),
                    BACKFILL_BATCH)
                if n == 0:
                    break
                total += n
        if total:
            logger.info("indexed the auth chains of %d events", total)
        return total

    @staticmethod
    def _backfill_room_txn(txn: Txn, room_nid: int, limit: int) -> int:
        """Index up to about ``limit`` unindexed state events of the room (and
        their unindexed auth events); 0 and the room is done when none are left."""
        nids = [int(r[0]) for r in txn.select_all(
            "SELECT e.event_nid FROM events e WHERE e.room_nid = ?"
            " AND e.state_key IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM event_auth_chains c"
            "  WHERE c.event_nid = e.event_nid)"
            " AND NOT EXISTS (SELECT 1 FROM event_auth_chain_pending p"
            "  WHERE p.event_nid = e.event_nid)"
            " ORDER BY e.event_nid LIMIT ?", (room_nid, limit))]
        if not nids:
            txn.execute("DELETE FROM event_auth_chain_backfill WHERE room_nid = ?", (room_nid,))
            return 0
        AuthChainStore.index_events_txn(txn, nids)
        return len(nids)
