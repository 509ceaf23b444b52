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
  which a commit and a read arrive does not matter: a room is known
  exactly once a read of it has been merged.

A position here may be newer than the stream's "persisted up to" (a commit
whose earlier positions are still being written): callers clamp to the
position they answer as of. Purged history leaves a position too new,
which makes a room look changed with nothing to send: harmless.

One process only, as ``sync/recent.py``: a process that does not persist
the events would have to hear of them through replication.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from homeserver.storage.hub import Committed
from homeserver.storage.sliding_sync import BUMP_TYPES

if TYPE_CHECKING:
    from homeserver.storage.sliding_sync import SlidingSyncStore

# rooms remembered; past this the index starts over (rooms are read again)
MAX_ROOMS = 500_000

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
                if head is None:
                    head = self._heads[room_id] = [None, None]
                if head[0] is None or pos > head[0]:
                    head[0] = pos
                if event.type in _BUMP and (head[1] is None or pos > head[1]):
                    head[1] = pos

    async def heads(self, rooms: dict[str, int]) -> dict[str, tuple[int | None, int | None]]:
        """Room ID -> (newest position, newest bump position) of ``rooms``
        (room ID -> room NID), reading the rooms not known yet."""
        with self._lock:
            if len(self._heads) > MAX_ROOMS:
                # before the read below: what the hub told until now is in
                # the database by the time it reads
                self._heads.clear()
                self._known.clear()
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
                    if last is not None and (head[0] is None or last > head[0]):
                        head[0] = last
                    if bump is not None and (head[1] is None or bump > head[1]):
                        head[1] = bump
                    self._known.add(room_id)
        with self._lock:
            out: dict[str, tuple[int | None, int | None]] = {}
            for room_id in rooms:
                head = self._heads.get(room_id)
                out[room_id] = (head[0], head[1]) if head is not None else (None, None)
            return out
