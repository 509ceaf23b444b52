"""Room recency in memory: each room's newest event and newest "bump" event.

Sliding sync (``sync/sliding.py``) sorts a user's rooms by ``bump_stamp``
(the stream position of the room's newest event of a type in
``BUMP_TYPES``) and tells whether a room changed since a connection was last
sent it by the position of its newest event. Reading both from ``events``
for each of a user's 1,000 rooms costs two index probes per room on every
request; ``RoomRecency`` keeps them here instead:

- fed by the write hub (``storage/hub.py``) on the database thread, right
  after a commit and before the stream tracker can count its positions as
  persisted: a reader that sees a position as persisted finds its event
  here;
- filled from the database per room on first use (``heads``): the rooms not
  yet known are read in one query, and merged with whatever the hub told
  meanwhile. Both only ever raise a position (``max``), so the order in
  which a commit and a read arrive does not matter: a room is known once a
  read of it has been merged, or once the hub told its ``m.room.create``
  (its first event: every later one is told too).

A position here may be newer than the stream's "persisted up to" (a commit
whose earlier positions are still being written): callers clamp to the
position they answer as of. Purged history leaves a position too new,
which makes a room look changed with nothing to send: harmless.

One process only, as ``sync/recent.py``: a process that does not persist
the events would have to hear of them through replication.
"""

from __future__ import annotations

import bisect
import threading
from typing import TYPE_CHECKING

from homeserver.storage.hub import Committed
from homeserver.storage.sliding_sync import BUMP_TYPES

if TYPE_CHECKING:
    from homeserver.storage.sliding_sync import SlidingSyncStore

# rooms remembered; past this the index starts over (rooms are read again)
MAX_ROOMS = 500_000
# head changes logged (``changed_since``); past this the older half goes
MAX_LOGGED = 100_000

_BUMP = frozenset(BUMP_TYPES)


class RoomRecency:
    def __init__(self, store: "SlidingSyncStore") -> None:
        self.store = store
        self._lock = threading.Lock()
        # room ID -> [newest event's position, newest bump event's position]
        # (None: none seen)
        self._heads: dict[str, list[int | None]] = {}
        # rooms whose heads were read from the database
        self._known: set[str] = set()
        # every raised head counts one generation; the log says which room
        # each generation raised (those after ``_log_low``), so a sorted
        # room list built at a generation learns which of its rooms moved
        self.generation = 0
        self._log_gens: list[int] = []
        self._log_rooms: list[str] = []
        self._log_low = 0
        # the newest position of any head (a list built from heads all at or
        # below a response's end needs no clamping)
        self.max_pos = 0

    def _raised(self, room_id: str, pos: int | None) -> None:
        """(Under the lock.) Log that ``room_id``'s heads moved."""
        self.generation += 1
        self._log_gens.append(self.generation)
        self._log_rooms.append(room_id)
        if pos is not None and pos > self.max_pos:
            self.max_pos = pos
        if len(self._log_gens) > MAX_LOGGED:
            drop = len(self._log_gens) - MAX_LOGGED // 2
            self._log_low = self._log_gens[drop - 1]
            del self._log_gens[:drop]
            del self._log_rooms[:drop]

    def changed_since(self, generation: int) -> set[str] | None:
        """The rooms whose heads moved after ``generation`` (None: the log
        no longer reaches back that far)."""
        with self._lock:
            if generation < self._log_low:
                return None
            first = bisect.bisect_right(self._log_gens, generation)
            return set(self._log_rooms[first:])

    def on_commit(self, committed: Committed) -> None:
        """The hub's subscriber: raise the heads of the rooms of the
        timeline events just committed."""
        if not committed.events:
            return
        with self._lock:
            for event, pos in committed.events:
                room_id = event.json.get("room_id")
                if not isinstance(room_id, str):
                    continue
                head = self._heads.get(room_id)
                first_seen = head is None
                if head is None:
                    head = self._heads[room_id] = [None, None]
                raised = False
                if head[0] is None or pos > head[0]:
                    head[0] = pos
                    raised = True
                if event.type in _BUMP and (head[1] is None or pos > head[1]):
                    head[1] = pos
                    raised = True
                if raised:
                    self._raised(room_id, pos)
                if first_seen and pos > 0 and event.type == "m.room.create" \
                        and event.state_key == "":
                    # a room created here and now (not history fetched
                    # later, stored below everything): every later event of
                    # it passes here too (one process), so it needs no read
                    self._known.add(room_id)

    async def heads(self, rooms: dict[str, int]) -> dict[str, tuple[int | None, int | None]]:
        """Room ID -> (newest position, newest bump position) of ``rooms``
        (room ID -> room NID), reading the rooms not known yet."""
        with self._lock:
            if len(self._heads) > MAX_ROOMS:
                # before the read below: what the hub told until now is in
                # the database by the time it reads
                self._heads.clear()
                self._known.clear()
                self.generation += 1
                self._log_low = self.generation
                self._log_gens.clear()
                self._log_rooms.clear()
            unknown = {nid: room_id for room_id, nid in rooms.items()
                       if room_id not in self._known}
        if unknown:
            read = await self.store.get_room_heads(list(unknown))
            with self._lock:
                for nid, room_id in unknown.items():
                    last, bump = read.get(nid, (None, None))
                    head = self._heads.get(room_id)
                    if head is None:
                        head = self._heads[room_id] = [None, None]
                    raised = False
                    if last is not None and (head[0] is None or last > head[0]):
                        head[0] = last
                        raised = True
                    if bump is not None and (head[1] is None or bump > head[1]):
                        head[1] = bump
                        raised = True
                    if raised:
                        self._raised(room_id, last)
                    self._known.add(room_id)
        with self._lock:
            out: dict[str, tuple[int | None, int | None]] = {}
            for room_id in rooms:
                head = self._heads.get(room_id)
                out[room_id] = (head[0], head[1]) if head is not None else (None, None)
            return out
