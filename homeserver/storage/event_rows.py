"""The one writer of ``events`` rows and of the DAG edges stored with them.

Every way an event enters the database -- a local event (``EventStore``),
a batch of local messages, a federated timeline event, outliers, backfill
(``FederationEventStore``) -- writes the same row and the same edges; they
differ only in the values (an outlier has no stream position, a message
shares the room's snapshot, ...). So the SQL lives here once:

- ``insert_event_rows_txn``: the ``events`` rows, as multi-row INSERTs
  (a batch of a busy room's messages or a join's whole auth chain is a
  statement or a few, not one per event: this is on the send path).
- ``event_nids_txn``: the NIDs of the events we hold among some IDs (the
  prev and auth events a new event names).
- ``insert_edges_txn``: ``event_edges`` and ``event_auth_edges`` for the
  referenced events we hold and, for events from other servers, the
  ``event_edges_pending`` rows for the prev_events we do not hold yet, and
  the edges of stored events that were waiting for these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.model import Event
from homeserver.storage.database import Txn
from homeserver.storage.sql import chunks, placeholders, select_in_txn

_COLUMNS = ("event_id, room_nid, stream_ordering, depth, event_type, state_key,"
            " state_key_nid, sender, origin_server_ts, json, rejected_reason, outlier,"
            " snapshot_nid, replaces_nid, soft_failed")
_ROW = "(" + placeholders(15) + ")"
# 15 parameters a row: a batch of messages (rooms/creator.py sends at most
# 100 at once) stays one statement, well under SQLite's parameter limit
_ROWS_PER_INSERT = 100
# two parameters a row
_EDGES_PER_INSERT = 500


@dataclass(frozen=True)
class EventRow:
    """An event and the columns of its row that are not in its JSON."""

    event: Event
    room_nid: int
    stream_ordering: int | None = None
    state_key_nid: int | None = None
    outlier: bool = False
    snapshot_nid: int | None = None
    replaces_nid: int | None = None
    soft_failed: bool = False

    def params(self) -> tuple[Any, ...]:
        e = self.event
        return (e.event_id, self.room_nid, self.stream_ordering, e.depth, e.type, e.state_key,
                self.state_key_nid, e.sender, e.origin_server_ts,
                encode_canonical_json(e.json, strict=False).decode("utf-8"),
                e.rejected_reason, 1 if self.outlier else 0, self.snapshot_nid,
                self.replaces_nid, 1 if self.soft_failed else 0)


def insert_event_rows_txn(txn: Txn, rows: Sequence[EventRow]) -> dict[str, int]:
    """Insert ``rows`` (events not held yet), in order; event ID -> new NID."""
    nids: dict[str, int] = {}
    for part in chunks(rows, _ROWS_PER_INSERT):
        nids.update((str(eid), int(nid)) for nid, eid in txn.select_all(
            f"INSERT INTO events ({_COLUMNS}) VALUES " + ",".join([_ROW] * len(part))
            + " RETURNING event_nid, event_id",
            [value for row in part for value in row.params()]))
    return nids


def event_nids_txn(txn: Txn, event_ids: Iterable[str]) -> dict[str, int]:
    """Event ID -> NID for those of ``event_ids`` we hold."""
    ids = list(dict.fromkeys(event_ids))
    return {str(e): int(n) for e, n in select_in_txn(
        txn, "SELECT event_id, event_nid FROM events WHERE event_id IN ({})", ids)}


def _insert_pairs_txn(txn: Txn, table_columns: str, rows: Sequence[tuple[Any, Any]],
                      ignore_conflicts: bool) -> None:
    on_conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    for part in chunks(rows, _EDGES_PER_INSERT):
        txn.execute(f"INSERT INTO {table_columns} VALUES " + ",".join(["(?, ?)"] * len(part))
                    + on_conflict, [value for row in part for value in row])


def insert_edges_txn(txn: Txn, events: Sequence[Event], nids: Mapping[str, int],
                     known: Mapping[str, int], *, remote: bool) -> None:
    """The DAG edges of new ``events`` (their NIDs in ``nids``) to the
    events of ``known`` (ID -> NID, which may include ``nids``).

    ``remote``: the events came from other servers, so prev_events may be
    missing: those are remembered in ``event_edges_pending``, and stored
    events waiting for one of ``events`` get their edge now.
    """
    def held(refs: Callable[[Event], Sequence[str]]) -> list[tuple[int, int]]:
        return [(nids[e.event_id], known[r]) for e in events
                for r in dict.fromkeys(refs(e)) if r in known]

    _insert_pairs_txn(txn, "event_edges (event_nid, prev_event_nid)",
                      held(lambda e: e.prev_event_ids), remote)
    _insert_pairs_txn(txn, "event_auth_edges (event_nid, auth_event_nid)",
                      held(lambda e: e.auth_event_ids), remote)
    if not remote:
        return
    _insert_pairs_txn(txn, "event_edges_pending (event_nid, prev_event_id)",
                      [(nids[e.event_id], p) for e in events
                       for p in dict.fromkeys(e.prev_event_ids) if p not in known], remote)
    for ids in chunks(sorted(nids), _EDGES_PER_INSERT):
        txn.execute("INSERT INTO event_edges (event_nid, prev_event_nid)"
                    " SELECT p.event_nid, e.event_nid FROM event_edges_pending p"
                    " JOIN events e ON e.event_id = p.prev_event_id"
                    f" WHERE p.prev_event_id IN ({placeholders(len(ids))})"
                    " ON CONFLICT DO NOTHING", ids)
        txn.execute("DELETE FROM event_edges_pending"
                    f" WHERE prev_event_id IN ({placeholders(len(ids))})", ids)
