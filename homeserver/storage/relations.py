"""Relations: which events relate to which (reactions, edits, threads, references).

``event_relations`` (migration 0017) holds one row per timeline event whose
``content["m.relates_to"]`` names a string ``rel_type`` and ``event_id``: the
child's NID and room, the parent's event ID (``relates_to``: the parent may
arrive later, or never), the rel_type, the child's type and sender, and for
``m.annotation`` the key. The row is written by a persist hook
(``storage/event_hooks.py``) in the transaction that stores the child, for
local sends, events from other servers and backfilled history alike.

A redaction deletes its target's row (in the redaction's own persist
transaction), so every aggregation and ``/relations`` page drops a redacted
reaction, edit or thread reply at once. A redaction can arrive before the
event it redacts (federation): the hook then finds the redaction already
recorded in ``event_redactions`` and writes no row. As in ``get_events``, a
redaction counts only when it is in the same room as its target.

Pages and summaries order children by their stream position (the order the
server knows them in: the spec's "topological" order as this server sees it;
backfilled history sits below zero).

The rules on top (which edits are valid, what goes in a bundle, who may see
what) live in ``rooms/relations.py``; this module only reads and writes rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.events.model import Event
from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import chunks, placeholders, select_in, select_in_txn

logger = logging.getLogger(__name__)

ANNOTATION = "m.annotation"
REPLACE = "m.replace"
THREAD = "m.thread"
REFERENCE = "m.reference"

# Parent event IDs per IN (...) list.
_CHUNK = 500


def relation_of(event: Event) -> tuple[str, str, str | None] | None:
    """(rel_type, parent event ID, annotation key) of ``event``, if it relates
    to another event. Odd content (anything from another server) gives None
    rather than an error."""
    relates = event.content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None
    rel_type = relates.get("rel_type")
    parent = relates.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent, str) or not rel_type \
            or not parent:
        return None
    key = relates.get("key") if rel_type == ANNOTATION else None
    return rel_type, parent, key if isinstance(key, str) else None


def index_relation_txn(txn: Txn, event: Event, event_nid: int) -> None:
    """The persist hook: the event's relation row (a redaction drops it)."""
    if event.type == "m.room.redaction":
        redacts = event.redacts
        if isinstance(redacts, str):
            txn.execute(
                "DELETE FROM event_relations WHERE event_nid IN ("
                " SELECT t.event_nid FROM events t JOIN events red"
                " ON red.room_nid = t.room_nid"
                " WHERE t.event_id = ? AND red.event_nid = ?)", (redacts, event_nid))
        return
    relation = relation_of(event)
    if relation is None:
        return
    rel_type, parent, key = relation
    # "INSERT ... SELECT" takes the room from the row just written and skips
    # an event already redacted by a redaction that arrived first
    txn.execute(
        "INSERT INTO event_relations (event_nid, room_nid, relates_to, rel_type, event_type,"
        " sender, aggregation_key)"
        " SELECT ev.event_nid, ev.room_nid, ?, ?, ?, ?, ? FROM events ev"
        " WHERE ev.event_nid = ? AND NOT EXISTS ("
        "  SELECT 1 FROM event_redactions er JOIN events red"
        "  ON red.event_nid = er.redaction_nid"
        "  WHERE er.redacts = ev.event_id AND red.room_nid = ev.room_nid)"
        " ON CONFLICT (event_nid) DO NOTHING",
        (parent, rel_type, event.type, event.sender, key, event_nid))



@dataclass(frozen=True)
class RelationRow:
    """One child event of a ``/relations`` page."""

    event_id: str
    stream_ordering: int


@dataclass(frozen=True)
class ThreadSummaryRow:
    """A thread root's children as the index sees them."""

    count: int
    latest_event_id: str
    participated: bool


@dataclass
class AggregationRows:
    """What bundled aggregations need of a set of parents, read in one transaction."""

    # parent -> [(edit event ID, sender, type, origin_server_ts)], any order
    edits: dict[str, list[tuple[str, str, str, int]]] = field(default_factory=dict)
    threads: dict[str, ThreadSummaryRow] = field(default_factory=dict)
    # parent -> referencing event IDs, oldest first
    references: dict[str, list[str]] = field(default_factory=dict)


class RelationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- checks at send time ----------------------------------------------

    async def has_user_annotated(self, parent_id: str, event_type: str, key: str,
                                 sender: str) -> bool:
        """Whether ``sender`` already annotated ``parent_id`` with this type and
        key (and the annotation was not redacted)."""
        row = await self.db.execute(
            "has_user_annotated",
            "SELECT 1 FROM event_relations WHERE relates_to = ? AND rel_type = ?"
            " AND event_type = ? AND aggregation_key = ? AND sender = ? LIMIT 1",
            (parent_id, ANNOTATION, event_type, key, sender))
        return bool(row)

    async def is_target_of_relation(self, parent_id: str) -> bool:
        """Whether some event we hold relates to ``parent_id``."""
        row = await self.db.execute(
            "is_target_of_relation",
            "SELECT 1 FROM event_relations WHERE relates_to = ? LIMIT 1", (parent_id,))
        return bool(row)

    # -- /relations -----------------------------------------------------------

    async def get_children(self, room_nid: int, parent_id: str, *, rel_type: str | None,
                           event_type: str | None, from_pos: int | None,
                           to_pos: int | None, backwards: bool, limit: int,
                           max_depth: int = 1) -> list[RelationRow]:
        """Up to ``limit`` events relating to ``parent_id`` (directly, or through
        up to ``max_depth`` relations), in stream order: backwards from
        ``from_pos`` (inclusive) down to ``to_pos`` (exclusive), or forwards
        from ``from_pos`` (exclusive) up to ``to_pos`` (inclusive).
        ``rel_type`` and ``event_type`` filter the returned children."""
        def txn_fn(txn: Txn) -> list[RelationRow]:
            nids: list[int] = []
            seen: set[str] = {parent_id}
            level = [parent_id]
            for _ in range(max_depth):
                found: list[str] = []
                for nid, event_id in select_in_txn(
                        txn, "SELECT r.event_nid, ev.event_id FROM event_relations r"
                        " JOIN events ev ON ev.event_nid = r.event_nid"
                        " WHERE r.relates_to IN ({}) AND r.room_nid = ?",
                        dict.fromkeys(level), after=(room_nid,), chunk=_CHUNK):
                    if event_id not in seen:  # never loop
                        seen.add(event_id)
                        nids.append(int(nid))
                        found.append(event_id)
                if not found:
                    break
                level = found
            if not nids:
                return []
            clauses = ["ev.stream_ordering IS NOT NULL"]
            params: list[Any] = []
            if rel_type is not None:
                clauses.append("r.rel_type = ?")
                params.append(rel_type)
            if event_type is not None:
                clauses.append("r.event_type = ?")
                params.append(event_type)
            if from_pos is not None:
                clauses.append("ev.stream_ordering <= ?" if backwards
                               else "ev.stream_ordering > ?")
                params.append(from_pos)
            if to_pos is not None:
                clauses.append("ev.stream_ordering > ?" if backwards
                               else "ev.stream_ordering <= ?")
                params.append(to_pos)
            order = "DESC" if backwards else "ASC"
            # each chunk's first ``limit``; then the first ``limit`` of them all
            rows = select_in_txn(
                txn, "SELECT ev.event_id, ev.stream_ordering FROM event_relations r"
                " JOIN events ev ON ev.event_nid = r.event_nid WHERE r.event_nid IN ({}) AND "
                + " AND ".join(clauses) + f" ORDER BY ev.stream_ordering {order} LIMIT ?",
                nids, after=(*params, limit), chunk=_CHUNK)
            rows.sort(key=lambda r: int(r[1]), reverse=backwards)
            return [RelationRow(str(e), int(p)) for e, p in rows[:limit]]

        return await self.db.run_interaction("get_relation_children", txn_fn)

    # -- bundled aggregations -------------------------------------------------

    async def get_aggregation_rows(self, parent_ids: Sequence[str], user_id: str,
                                   ignored: Sequence[str] = ()) -> AggregationRows:
        """Edits, thread summaries (``user_id``'s participation; replies by
        ``ignored`` users neither counted nor latest) and references of
        ``parent_ids``, in one transaction."""
        if not parent_ids:
            return AggregationRows()
        return await self.db.run_interaction("get_aggregation_rows", self.aggregation_rows_txn,
                                             parent_ids, user_id, ignored)

    @staticmethod
    def aggregation_rows_txn(txn: Txn, parent_ids: Sequence[str], user_id: str,
                             ignored: Sequence[str] = ()) -> AggregationRows:
        """``get_aggregation_rows`` in a transaction under way."""
        out = AggregationRows()
        ignored = list(ignored)[:_CHUNK]
        not_ignored = (f" AND r.sender NOT IN ({placeholders(len(ignored))})"
                       if ignored else "")
        for chunk in chunks(list(dict.fromkeys(parent_ids)), _CHUNK):
            marks = placeholders(len(chunk))
            for parent, event_id, sender, event_type, ts in txn.select_all(
                    "SELECT r.relates_to, ev.event_id, r.sender, r.event_type,"
                    " ev.origin_server_ts FROM event_relations r"
                    " JOIN events ev ON ev.event_nid = r.event_nid"
                    f" WHERE r.relates_to IN ({marks}) AND r.rel_type = ?",
                    (*chunk, REPLACE)):
                out.edits.setdefault(parent, []).append(
                    (event_id, sender, event_type, int(ts)))
            counts: dict[str, tuple[int, int]] = {}
            for parent, count, latest in txn.select_all(
                    "SELECT r.relates_to, COUNT(*), MAX(ev.stream_ordering)"
                    " FROM event_relations r JOIN events ev ON ev.event_nid = r.event_nid"
                    f" WHERE r.relates_to IN ({marks}) AND r.rel_type = ?{not_ignored}"
                    " GROUP BY r.relates_to", (*chunk, THREAD, *ignored)):
                if latest is not None:
                    counts[parent] = (int(count), int(latest))
            if counts:
                latest_ids = dict(txn.select_all(
                    "SELECT stream_ordering, event_id FROM events WHERE stream_ordering IN"
                    f" ({placeholders(len(counts))})",
                    [latest for _, latest in counts.values()]))
                roots = list(counts)
                participated = {p for (p,) in txn.select_all(
                    "SELECT DISTINCT relates_to FROM event_relations"
                    f" WHERE relates_to IN ({placeholders(len(roots))})"
                    " AND rel_type = ? AND sender = ?", (*roots, THREAD, user_id))}
                for parent, (count, latest) in counts.items():
                    latest_id = latest_ids.get(latest)
                    if latest_id is not None:
                        out.threads[parent] = ThreadSummaryRow(
                            count, str(latest_id), parent in participated)
            for parent, event_id in txn.select_all(
                    "SELECT r.relates_to, ev.event_id FROM event_relations r"
                    " JOIN events ev ON ev.event_nid = r.event_nid"
                    f" WHERE r.relates_to IN ({marks}) AND r.rel_type = ?"
                    " ORDER BY ev.stream_ordering", (*chunk, REFERENCE)):
                out.references.setdefault(parent, []).append(event_id)
        return out

    # -- /threads -------------------------------------------------------------

    async def get_threads(self, room_nid: int, *, participant: str | None,
                          before: int | None, limit: int,
                          ) -> list[tuple[str, int, int | None]]:
        """(root event ID, stream position of its latest reply, the root's
        stream position: None if we do not hold it in this room's timeline)
        of the room's threads, the most recently active first, whose latest
        reply is before ``before``; only those ``participant`` took part in
        (sent the root or a reply), when given."""
        clauses = ["r.room_nid = ?", "r.rel_type = ?"]
        params: list[Any] = [room_nid, THREAD]
        having: list[str] = []
        having_params: list[Any] = []
        if before is not None:
            having.append("MAX(ev.stream_ordering) < ?")
            having_params.append(before)
        if participant is not None:
            having.append(
                "(MAX(CASE WHEN r.sender = ? THEN 1 ELSE 0 END) = 1 OR EXISTS ("
                " SELECT 1 FROM events root WHERE root.event_id = r.relates_to"
                " AND root.sender = ?))")
            having_params.extend([participant, participant])
        sql = ("SELECT r.relates_to, MAX(ev.stream_ordering),"
               " (SELECT root.stream_ordering FROM events root"
               "  WHERE root.event_id = r.relates_to AND root.room_nid = ?)"
               " FROM event_relations r"
               " JOIN events ev ON ev.event_nid = r.event_nid"
               " WHERE " + " AND ".join(clauses) + " AND ev.stream_ordering IS NOT NULL"
               " GROUP BY r.relates_to"
               + (" HAVING " + " AND ".join(having) if having else "")
               + " ORDER BY MAX(ev.stream_ordering) DESC LIMIT ?")
        rows = await self.db.execute("get_threads", sql,
                                     (room_nid, *params, *having_params, limit))
        return [(str(root), int(pos), int(root_pos) if root_pos is not None else None)
                for root, pos, root_pos in rows]

    # -- threaded notification counts ----------------------------------------

    async def get_thread_roots(self, event_ids: Sequence[str]) -> dict[str, str]:
        """Event ID -> thread root, for those of ``event_ids`` that are in a
        thread (by their ``m.thread`` relation)."""
        rows = await select_in(
            self.db, "get_thread_roots",
            "SELECT ev.event_id, r.relates_to FROM event_relations r"
            " JOIN events ev ON ev.event_nid = r.event_nid"
            " WHERE ev.event_id IN ({}) AND r.rel_type = ?",
            dict.fromkeys(event_ids), after=(THREAD,), chunk=_CHUNK)
        return {str(e): str(root) for e, root in rows}

    async def get_read_positions_many(self, room_nids: list[int], user_id: str,
                                      ) -> dict[int, dict[str, int]]:
        """``get_read_positions`` of many rooms in one query: room NID -> them."""
        rows = await select_in(
            self.db, "get_read_positions_many",
            "SELECT rm.room_nid, r.thread_id, MAX(ev.stream_ordering) FROM receipts r"
            " JOIN rooms rm ON rm.room_id = r.room_id"
            " JOIN events ev ON ev.event_id = r.event_id"
            " WHERE rm.room_nid IN ({}) AND r.user_id = ? AND r.receipt_type IN (?, ?)"
            " GROUP BY rm.room_nid, r.thread_id", room_nids,
            after=(user_id, "m.read", "m.read.private"))
        out: dict[int, dict[str, int]] = {n: {} for n in room_nids}
        for nid, thread, pos in rows:
            if pos is not None:
                out[int(nid)][str(thread)] = int(pos)
        return out

    async def get_read_positions(self, room_nid: int, user_id: str) -> dict[str, int]:
        """Thread ID (``""``: unthreaded, ``"main"``, or a thread root) -> the
        stream position of ``user_id``'s newest ``m.read`` / ``m.read.private``
        receipt in the room for it (threaded read receipts, read here beside
        the thread index that per-thread unread counts combine them with)."""
        rows = await self.db.execute(
            "get_read_positions",
            "SELECT r.thread_id, MAX(ev.stream_ordering) FROM receipts r"
            " JOIN rooms rm ON rm.room_id = r.room_id"
            " JOIN events ev ON ev.event_id = r.event_id"
            " WHERE rm.room_nid = ? AND r.user_id = ? AND r.receipt_type IN (?, ?)"
            " GROUP BY r.thread_id", (room_nid, user_id, "m.read", "m.read.private"))
        return {str(t): int(p) for t, p in rows if p is not None}
