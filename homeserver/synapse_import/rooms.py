"""The rooms stage of `homeserver import-synapse`: every room with its events.

Each room's events go through ``FederationEventStore.persist_federated_txn``
(see the package's ``importer`` docstring for why), in Synapse's
topological order (depth, then stream order), outliers first. A room is
written in transactions of ``chunk`` events (``--events-per-transaction``,
default ``CHUNK``); after each, the marker
``room-partial:<room_id>`` holds how many of its timeline events are in,
and the last one replaces it with ``room:<room_id>``. A stopped import
resumes a room after its last committed chunk (the order is the same on
every read of a Synapse that is not running).

The state before an event: our own snapshot after its prev event when it
has exactly one and we hold it with its state (a linear room, the common
case, costs no lookup in Synapse); otherwise (a fork, a gap, the first
event after a resumed chunk) Synapse's state group of the event, which is
the state after it, with the event's own key put back to what its prev
events' groups say. The room's current state is Synapse's
``current_state_events``, set with its last accepted event; that write also
fills in the memberships.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.storage import synapse_import as rows
from homeserver.storage.database import Database, Txn
from homeserver.synapse_import.common import StageContext, load_json, now_ms
from homeserver.synapse_import.source import SynapseSource

if TYPE_CHECKING:
    from homeserver.storage import Stores
    from homeserver.synapse_import.common import ImportReport, Progress

# events per transaction
CHUNK = 2000

StateMap = dict[tuple[str, str], str]


class RoomImporter:
    def __init__(self, src: SynapseSource, db: Database, stores: Stores, progress: Progress,
                 report: ImportReport, done: dict[str, int], chunk: int = CHUNK) -> None:
        self.src = src
        self.db = db
        self.stores = stores
        self.progress = progress
        self.report = report
        self.done = done
        self.chunk = max(1, chunk)

    def run(self) -> None:
        src = self.src
        rooms = src.rows("SELECT room_id, room_version, creator FROM rooms ORDER BY room_id")
        total_events = int(src.value("SELECT COUNT(*) FROM events"))
        advance = self.progress.stage("rooms and events", total_events)
        imported = 0
        started = time.monotonic()
        room_count = 0
        for room_id, version, creator in rooms:
            if f"room:{room_id}" in self.done:
                advance(self.done[f"room:{room_id}"])
                room_count += 1
                continue
            rv = KNOWN_ROOM_VERSIONS.get(version or "1")
            if rv is None:
                self.report.skipped.append(
                    f"room {room_id}: room version {version!r} unknown here")
                continue
            imported += self._import_room(str(room_id), rv, creator, advance)
            src.end_snapshot()
            room_count += 1
        elapsed = time.monotonic() - started
        if imported and elapsed > 0:
            self.report.events_per_second = imported / elapsed
        self.report.counts["rooms"] = room_count
        self.report.counts["events"] = int(self.db.run_txn_blocking(
            "import_count_events", lambda txn: txn.select_value("SELECT COUNT(*) FROM events")))

    # -- reading Synapse ---------------------------------------------------

    def _events(self, room_id: str, rv: RoomVersion, outlier: bool,
                rejected: dict[str, str]) -> Iterator[tuple[Event, bool]]:
        """The room's outliers or timeline events, in the order to persist
        them, each with whether Synapse soft-failed it."""
        for event_id, meta, text in self.src.iter_rows(
                "SELECT e.event_id, j.internal_metadata, j.json FROM events e"
                " JOIN event_json j ON j.event_id = e.event_id WHERE e.room_id = ?"
                " AND e.outlier = ? ORDER BY e.topological_ordering, e.stream_ordering",
                (room_id, outlier)):
            pdu = load_json(text)
            # Synapse's bookkeeping for its clients (age_ts, redacted_because)
            pdu.pop("unsigned", None)
            soft = bool((load_json(meta or "{}") or {}).get("soft_failed"))
            yield Event(str(event_id), rv, pdu, rejected.get(str(event_id))), soft

    def _last_accepted(self, room_id: str, rejected: dict[str, str]) -> str | None:
        """The last timeline event neither rejected nor soft-failed: the one
        the room's current state is set with."""
        last = None
        for event_id, meta in self.src.iter_rows(
                "SELECT e.event_id, j.internal_metadata FROM events e"
                " JOIN event_json j ON j.event_id = e.event_id WHERE e.room_id = ?"
                " AND e.outlier = ? ORDER BY e.topological_ordering, e.stream_ordering",
                (room_id, False)):
            if str(event_id) not in rejected and \
                    not (load_json(meta or "{}") or {}).get("soft_failed"):
                last = str(event_id)
        return last

    def _state_before(self, event: Event) -> StateMap:
        """The state before ``event`` by Synapse's state groups."""
        src = self.src
        group = src.value("SELECT state_group FROM event_to_state_groups WHERE event_id = ?",
                          (event.event_id,))
        state = src.state_group_ids(int(group)) if group is not None else {}
        if event.is_state() and event.rejected_reason is None:
            # Synapse's group is the state after the event: put back what
            # the event replaced, as the prev events' groups have it
            key = event.state_pair()
            replaced = None
            for prev in event.prev_event_ids:
                g = src.value("SELECT state_group FROM event_to_state_groups"
                              " WHERE event_id = ?", (prev,))
                if g is not None:
                    replaced = src.state_group_ids(int(g)).get(key)
                    if replaced is not None:
                        break
            if replaced is None:
                state.pop(key, None)
            else:
                state[key] = replaced
        return state

    # -- writing ours ------------------------------------------------------

    def _import_room(self, room_id: str, rv: RoomVersion, creator: str | None,
                     advance: Any) -> int:
        src = self.src
        rejected = {str(e): str(r) for e, r in src.rows(
            "SELECT r.event_id, r.reason FROM rejections r JOIN events e"
            " ON e.event_id = r.event_id WHERE e.room_id = ?", (room_id,))}
        current = {(str(t), str(k)): str(e) for t, k, e in src.rows(
            "SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ?",
            (room_id,))}
        last_accepted = self._last_accepted(room_id, rejected)
        partial = f"room-partial:{room_id}"
        skip = self.done.get(partial, 0)
        written = 0
        if skip:
            advance(skip)
        else:
            outliers = [e for e, _ in self._events(room_id, rv, True, rejected)]
            self.db.run_txn_blocking(f"import room {room_id} outliers", self._outliers_txn,
                                     room_id, rv, creator, outliers, partial)
            written += len(outliers)
            advance(len(outliers))
        # event ID -> our snapshot after it, for the events that follow it
        after: dict[str, int] = {}
        chunk: list[tuple[Event, bool]] = []
        done = skip
        seen = 0
        for item in self._events(room_id, rv, False, rejected):
            seen += 1
            if seen <= skip:
                continue
            chunk.append(item)
            if len(chunk) >= self.chunk:
                done += len(chunk)
                after.update(self.db.run_txn_blocking(
                    f"import room {room_id}", self._timeline_txn, room_id, chunk, after,
                    current, last_accepted, partial, done, False))
                advance(len(chunk))
                written += len(chunk)
                chunk = []
        done += len(chunk)
        self.db.run_txn_blocking(f"import room {room_id}", self._timeline_txn, room_id, chunk,
                                 after, current, last_accepted, partial, done, True)
        advance(len(chunk))
        written += len(chunk)
        return written

    def _outliers_txn(self, txn: Txn, room_id: str, rv: RoomVersion, creator: str | None,
                      outliers: list[Event], partial: str) -> None:
        fed = self.stores.federation_events
        room_nid = fed.ensure_room_txn(txn, room_id, rv.identifier, creator, now_ms())
        fed.persist_outliers_txn(txn, room_nid, outliers)
        rows.set_progress_txn(txn, partial, 0, now_ms())

    def _timeline_txn(self, txn: Txn, room_id: str, chunk: list[tuple[Event, bool]],
                      after: dict[str, int], current: StateMap, last_accepted: str | None,
                      partial: str, done: int, last: bool) -> dict[str, int]:
        """Persist ``chunk``; returns the snapshot after each of its events
        (the caller keeps them once the transaction has committed)."""
        fed = self.stores.federation_events
        state = self.stores.state
        room_nid = int(txn.select_value("SELECT room_nid FROM rooms WHERE room_id = ?",
                                        (room_id,)))
        # a retried transaction must not see the snapshots of its own first try
        snapshots: dict[str, int] = {}
        # a chain of plain messages, each on the one before: one batch write
        run: list[Event] = []
        run_base = 0

        def flush() -> None:
            if not run:
                return
            done = self.stores.events.persist_messages_txn(
                txn, [(e, None) for e in run], room_nid, now_ms(), snapshot=run_base)
            if done is None:  # not such a chain after all: one by one
                for e in run:
                    one(e, False)
            else:
                snapshots.update((e.event_id, p.snapshot_nid)
                                 for e, p in zip(run, done, strict=True))
            run.clear()

        def one(event: Event, soft: bool) -> None:
            prevs = event.prev_event_ids
            base = None
            if len(prevs) == 1:
                base = snapshots.get(prevs[0], after.get(prevs[0]))
            before: StateMap | None = None
            if base is not None:
                if event.is_state():
                    before = state.load_snapshot_ids_txn(txn, base, event.type)
            else:
                before = self._state_before(event)
            result = fed.persist_federated_txn(
                txn, room_nid, room_id, event, state_before=before, base_snapshot=base,
                soft_failed=soft,
                new_current=current if event.event_id == last_accepted else None)
            snapshots[event.event_id] = result.snapshot_nid

        for event, soft in chunk:
            prevs = event.prev_event_ids
            plain = (not soft and event.rejected_reason is None and not event.is_state()
                     and event.type != "m.room.redaction" and len(prevs) == 1
                     and event.event_id != last_accepted)
            if plain and run and prevs[0] == run[-1].event_id:
                run.append(event)
                continue
            flush()
            base = snapshots.get(prevs[0], after.get(prevs[0])) if len(prevs) == 1 else None
            if plain and base is not None:
                run.append(event)
                run_base = base
                continue
            one(event, soft)
        flush()
        if last:
            rows.clear_progress_txn(txn, partial)
            rows.mark_done_txn(txn, f"room:{room_id}", done, now_ms())
        else:
            rows.set_progress_txn(txn, partial, done, now_ms())
        return snapshots


def remote_invites(ctx: StageContext, name: str) -> None:
    """Invites of our users to rooms on other servers that they have not
    answered yet: Synapse holds such a room only as its invite (an outlier)
    with the stripped state the inviting server sent; we store them as our
    own federation code does, so the invite shows in the invitee's /sync
    and can be accepted or declined over federation."""
    src = ctx.src
    invites = src.rows(
        "SELECT m.room_id, r.room_version, m.event_id, j.json FROM local_current_membership m"
        " JOIN rooms r ON r.room_id = m.room_id"
        " JOIN event_json j ON j.event_id = m.event_id"
        " WHERE m.membership = 'invite' AND NOT EXISTS (SELECT 1 FROM current_state_events c"
        " WHERE c.room_id = m.room_id)") if src.has_table("local_current_membership") else []
    advance = ctx.progress.stage(name, len(invites))
    fed = ctx.stores.federation_events

    def txn_fn(txn: Txn) -> int:
        count = 0
        for room_id, version, event_id, text in invites:
            rv = KNOWN_ROOM_VERSIONS.get(version or "1")
            pdu = load_json(text)
            stripped = (pdu.pop("unsigned", None) or {}).get("invite_room_state") or []
            if rv is None or not isinstance(stripped, list):
                ctx.report.skipped.append(f"invite to {room_id}: room version {version!r}")
                continue
            fed.store_remote_invite_txn(txn, room_id, rv.identifier,
                                        Event(str(event_id), rv, pdu), stripped, now_ms())
            count += 1
        advance(len(invites))
        return count
    ctx.commit(name, txn_fn)
