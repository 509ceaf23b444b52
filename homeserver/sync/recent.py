"""Recent activity in memory: what lets a woken /sync answer without the database.

When a message lands in a room of 1,000 members, 1,000 long-polls wake, and
each would read the same few rows: what changed since its token, the new
events, its unread counts. ``RecentActivity`` keeps, in memory, what those
reads would find for the common case (plain messages), so the sync handler's
fast path (``sync/fast_path.py``) can build most woken responses from it:

- ``events``: the newest timeline events that are *plain*: not state, not
  redactions. Each with its stream position and room.
- ``barriers``: the stream positions of every other write on the global
  stream: state events and redactions (scoped to their room, and a member
  event to its target user too), and everything else (receipts, account
  data, to-device, presence, device lists, ...: of unknown reach). A sync
  range holding a barrier that may concern the user is answered by the full
  builder, which reads the database.
- ``low``: below this position the memory is incomplete (server start, or
  entries dropped to bound memory). A range starting below it goes to the
  full builder too.
- unread counts per (user, room) as of a stream position, stored by the
  full builder and carried forward by the fast path (per thread too, for
  ``unread_thread_notifications``).
- the newest position at which each room's state may have changed (a state
  event, a redaction, a write of unknown reach), and at which each event
  got a relation: what says whether something read of a room at a position
  (its lazy-loaded members, its summary: ``sync/lazy_members.py``) still
  holds (``unchanged_since``).

Both lists are filled from the write hub (``storage/hub.py``): called on the
database thread right after a transaction commits and *before* the stream
tracker can move "persisted up to" past its positions (storage/streams.py).
So a reader that sees a position as persisted also sees it here: either as a
plain event or as a barrier. A transaction that names no events (a receipt,
presence) is a barrier at each of its positions, whatever it wrote.

One process only: a second writer process would have to feed this through
replication (Redis) before several processes can use the fast path.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from typing import Any

from homeserver.events.model import Event
from homeserver.storage.hub import Committed
from homeserver.storage.streams import ONLY_USER, TO_DEVICE

# plain events kept (all rooms together); barrier positions kept
MAX_EVENTS = 20_000
MAX_BARRIERS = 20_000
MAX_UNREAD_ENTRIES = 200_000
# rooms and relation targets whose last change is remembered
MAX_CHANGE_ENTRIES = 100_000

# a receipt: (room ID, user ID, receipt type, thread ("" unthreaded), event
# ID, data)
Receipt = tuple[str, str, str, str, str, dict[str, Any]]
# (as of position, main notifications, main highlights, per thread root:
# (notifications, highlights))
ThreadCounts = tuple[int, int, int, dict[str, tuple[int, int]]]


class RecentActivity:
    def __init__(self, start_pos: int) -> None:
        self._lock = threading.Lock()
        self.low = start_pos
        self._positions: list[int] = []  # ascending, parallel to _events
        self._events: list[tuple[str, Event]] = []  # (room ID, event)
        self._barriers: list[int] = []  # ascending
        # parallel to _barriers: (room ID, member event's target) of a state
        # event or redaction; (None, None): a write of unknown reach
        self._barrier_scope: list[tuple[str | None, str | None]] = []
        # devices that may hold to-device messages not yet acknowledged (a
        # sync past them deletes them: the full builder's work)
        self.to_device_pending: set[tuple[str, str]] = set()
        # (user, room) -> (as of position, notification count, highlight count)
        self._unread: dict[tuple[str, str], tuple[int, int, int]] = {}
        # the same, counted per thread (``unread_thread_notifications``)
        self._thread_unread: dict[tuple[str, str], ThreadCounts] = {}
        # room -> newest position its state may have changed at; event ID ->
        # newest position of an event relating to it; positions of a write
        # of unknown reach; below ``_changes_low`` nothing is known
        self._room_changed: dict[str, int] = {}
        self._related: dict[str, int] = {}
        # the same for one member's member event; and for writes concerning
        # a room in a way not said (its state may have changed wholesale)
        self._member_changed: dict[tuple[str, str], int] = {}
        self._room_reset: dict[str, int] = {}
        # receipts by position (room, user, type, thread, event ID, data), and
        # (room, user, type, thread) -> the position of its latest write:
        # the database keeps only that one, and sends it with its range
        self._receipts: dict[int, Receipt] = {}
        self._receipt_latest: dict[tuple[str, str, str, str], int] = {}
        self._unknown_changed = 0
        self._changes_low = start_pos

    def restart(self, start_pos: int, to_device_pending: set[tuple[str, str]]) -> None:
        """Forget everything: the memory is complete from ``start_pos`` (the
        stream's position when the server starts), and these devices hold
        messages stored before. The object stays: the sync code holds it."""
        with self._lock:
            self.low = start_pos
            self._positions = []
            self._events = []
            self._barriers = []
            self._barrier_scope = []
            self.to_device_pending = to_device_pending
            self._unread = {}
            self._thread_unread = {}
            self._room_changed = {}
            self._related = {}
            self._member_changed = {}
            self._room_reset = {}
            self._receipts = {}
            self._receipt_latest = {}
            self._unknown_changed = 0
            self._changes_low = start_pos

    # -- writers: the database thread, right after a commit ---------------

    def on_commit(self, committed: Committed) -> None:
        """A transaction committed with these global ``positions``; ``events``
        are the timeline events it persisted with their positions, ``scopes``
        who its other writes concern (``storage/streams.py``); all three
        read from ``committed`` (``storage/hub.py``)."""
        positions, events, scopes = committed.positions, committed.events, committed.scopes
        by_pos = {pos: event for event, pos in events}
        with self._lock:
            for pos, room, reader, receipt_type, thread, read_up_to, data in committed.receipts:
                if len(self._receipts) >= MAX_BARRIERS:
                    self._receipts.clear()
                    self._receipt_latest.clear()
                self._receipts[pos] = (room, reader, receipt_type, thread, read_up_to, dict(data))
                self._receipt_latest[(room, reader, receipt_type, thread)] = pos
            for pos in sorted(positions):
                event = by_pos.get(pos)
                if event is None:
                    for room_id, user_id in scopes.get(pos) or [(None, None)]:
                        if room_id is not None and room_id.startswith(TO_DEVICE):
                            assert user_id is not None
                            self.to_device_pending.add((user_id, room_id[len(TO_DEVICE):]))
                            room_id = ONLY_USER
                        self._add_barrier(pos, room_id, user_id)
                        if room_id is None:
                            self._unknown_changed = pos
                        elif user_id is None:
                            self._changed(room_id, pos)
                            self._remember(self._room_reset, room_id, pos)
                elif event.type == "m.room.create":
                    # a new room: only its creator is in it
                    self._add_barrier(pos, ONLY_USER, event.sender)
                elif event.rejected_reason is not None \
                        or not isinstance(event.json.get("room_id"), str):
                    self._add_barrier(pos, None, None)
                    self._unknown_changed = pos
                elif event.is_state() or event.type == "m.room.redaction":
                    target = event.state_key if event.type == "m.room.member" else None
                    self._add_barrier(pos, event.room_id, target)
                    self._changed(event.room_id, pos)
                    if target is not None:
                        self._remember(self._member_changed, (event.room_id, target), pos)
                    if event.type == "m.room.redaction" and isinstance(event.redacts, str):
                        self._relation(event.redacts, pos)
                else:
                    relates = event.content.get("m.relates_to")
                    if isinstance(relates, dict) and isinstance(relates.get("event_id"), str):
                        self._relation(relates["event_id"], pos)
                    if self._positions and pos < self._positions[-1]:
                        index = bisect.bisect(self._positions, pos)
                    else:
                        index = len(self._positions)
                    self._positions.insert(index, pos)
                    self._events.insert(index, (event.room_id, event))
            self._trim()

    def _add_barrier(self, pos: int, room_id: str | None, target: str | None) -> None:
        index = bisect.bisect(self._barriers, pos)
        self._barriers.insert(index, pos)
        self._barrier_scope.insert(index, (room_id, target))

    def _changed(self, room_id: str, pos: int) -> None:
        self._remember(self._room_changed, room_id, pos)

    def _relation(self, event_id: str, pos: int) -> None:
        self._remember(self._related, event_id, pos)

    def _remember(self, changes: dict[Any, int], key: Any, pos: int) -> None:
        """``key`` changed at ``pos``; a full map is emptied, and nothing
        before ``pos`` is known any more."""
        if len(changes) >= MAX_CHANGE_ENTRIES and key not in changes:
            changes.clear()
            self._changes_low = max(self._changes_low, pos)
        if pos > changes.get(key, 0):
            changes[key] = pos

    def _trim(self) -> None:
        if len(self._positions) > MAX_EVENTS:
            drop = len(self._positions) - MAX_EVENTS // 2
            self.low = max(self.low, self._positions[drop - 1])
            del self._positions[:drop]
            del self._events[:drop]
        if len(self._barriers) > MAX_BARRIERS:
            drop = len(self._barriers) - MAX_BARRIERS // 2
            self.low = max(self.low, self._barriers[drop - 1])
            del self._barriers[:drop]
            del self._barrier_scope[:drop]

    # -- readers: the reactor ----------------------------------------------

    def plain_events(self, since: int, until: int,
                     ) -> tuple[list[tuple[int, str, Event]],
                                list[tuple[str | None, str | None]], list[Receipt]] | None:
        """Every plain timeline event at positions in (``since``, ``until``]
        as (position, room ID, event), oldest first; the scopes of the other
        writes in the range (see ``_barrier_scope``) but receipts; and the
        receipts written in the range that are still their latest write (as
        the database keeps them). None when the range is not all known here
        (then the database must answer)."""
        with self._lock:
            if since < self.low:
                return None
            first = bisect.bisect_right(self._barriers, since)
            last = bisect.bisect_right(self._barriers, until)
            scopes = []
            receipts = []
            for k in range(first, last):
                receipt = self._receipts.get(self._barriers[k])
                if receipt is None:
                    scopes.append(self._barrier_scope[k])
                elif self._receipt_latest.get(receipt[:4]) == self._barriers[k]:
                    receipts.append(receipt)
            start = bisect.bisect_right(self._positions, since)
            end = bisect.bisect_right(self._positions, until)
            return ([(self._positions[k], *self._events[k]) for k in range(start, end)],
                    scopes, receipts)

    def unread(self, user_id: str, room_id: str) -> tuple[int, int, int] | None:
        return self._unread.get((user_id, room_id))

    def set_unread(self, user_id: str, room_id: str, pos: int, notifications: int,
                   highlights: int) -> None:
        """Counts as of ``pos`` (a later entry is never replaced by an earlier one)."""
        key = (user_id, room_id)
        old = self._unread.get(key)
        if old is not None and old[0] > pos:
            return
        if old is None and len(self._unread) >= MAX_UNREAD_ENTRIES:
            self._unread.clear()
        self._unread[key] = (pos, notifications, highlights)

    def thread_unread(self, user_id: str, room_id: str) -> ThreadCounts | None:
        return self._thread_unread.get((user_id, room_id))

    def set_thread_unread(self, user_id: str, room_id: str, counts: ThreadCounts) -> None:
        """Per-thread counts as of ``counts[0]`` (a later entry is never
        replaced by an earlier one)."""
        key = (user_id, room_id)
        old = self._thread_unread.get(key)
        if old is not None and old[0] > counts[0]:
            return
        if old is None and len(self._thread_unread) >= MAX_UNREAD_ENTRIES:
            self._thread_unread.clear()
        self._thread_unread[key] = counts

    def unchanged_since(self, room_id: str, pos: int, event_ids: Iterable[str] = ()) -> bool:
        """Whether the room's state (and the relations of ``event_ids``) is
        known not to have changed at any position after ``pos``: what was
        read of it as of ``pos`` still holds. Every write at or below the
        stream's "persisted up to" has been seen here, so the answer covers
        the room up to there."""
        with self._lock:
            if pos < self._changes_low or self._unknown_changed > pos \
                    or self._room_changed.get(room_id, 0) > pos:
                return False
            related = self._related
            return not any(related.get(e, 0) > pos for e in event_ids)

    def members_unchanged_since(self, room_id: str, user_ids: Iterable[str], pos: int,
                                event_ids: Iterable[str] = ()) -> bool:
        """Whether the member events of ``user_ids`` in the room (and the
        relations and redactions of ``event_ids``) are known not to have
        changed at any position after ``pos``: narrower than
        ``unchanged_since``, so that other state changes of a busy room
        leave what was read of its members valid."""
        with self._lock:
            if pos < self._changes_low or self._unknown_changed > pos \
                    or self._room_reset.get(room_id, 0) > pos:
                return False
            changed, related = self._member_changed, self._related
            return (not any(changed.get((room_id, u), 0) > pos for u in user_ids)
                    and not any(related.get(e, 0) > pos for e in event_ids))

    def stats(self) -> dict[str, Any]:
        return {"events": len(self._positions), "barriers": len(self._barriers),
                "low": self.low, "unread_entries": len(self._unread)}


def rooms_of(entries: Iterable[tuple[int, str, Event]]) -> dict[str, list[tuple[int, Event]]]:
    """Group ``plain_events`` output by room, keeping position order."""
    out: dict[str, list[tuple[int, Event]]] = {}
    for pos, room_id, event in entries:
        out.setdefault(room_id, []).append((pos, event))
    return out
