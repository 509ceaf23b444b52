"""What /sync can know without the database, behind one object.

The fast path (``sync/fast_path.py``) answers a woken sync from memory only,
and what it needs is kept by six modules, each for its own reasons:

- recent writes on the global stream, unread counts carried forward, and
  the devices with unacknowledged to-device messages (``sync/recent.py``);
- whether typing changed (``edu/typing.py``);
- each room's local joined members (the notifier's wake-up cache,
  ``sync/notifier.py``);
- each user's ignored users (``rooms/ignored.py``);
- each device's one-time key counts (``e2e/keys.py``);
- the push rules' verdicts for recently persisted events
  (``push/actions.py``);
- lazy-loaded members: what each connection was sent, and each room's
  members and summary as last read (``sync/lazy_members.py``, kept here).

``SyncMemory`` fronts them so the sync code asks one thing, and so a reader
sees in one place everything a fast answer depends on. Its readers are the
owners' own bound methods, taken once here: asking through it costs what
asking the owner directly did (the fast path runs per room, per receiver).
The full builder writes here too (unread counts, pending to-device marks),
which is what keeps the fast path's answers equal to its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from homeserver.sync.lazy_members import RoomFacts, SentMembers

if TYPE_CHECKING:
    from homeserver.e2e.keys import E2eKeyHandler
    from homeserver.edu.typing import TypingManager
    from homeserver.push.actions import PushActions
    from homeserver.rooms.ignored import IgnoredUsers
    from homeserver.storage.e2e_keys import KeyCounts
    from homeserver.sync.notifier import Notifier
    from homeserver.sync.recent import RecentActivity


class SyncMemory:
    """Everything /sync may read without the database (module docstring)."""

    def __init__(self, recent: "RecentActivity", typing: "TypingManager",
                 notifier: "Notifier", ignored: "IgnoredUsers",
                 e2e_keys: "E2eKeyHandler", push_actions: "PushActions") -> None:
        self.recent = recent
        self._typing = typing
        # (user, room) -> (as of position, notifications, highlights), and
        # their setter; the range's plain events and barrier scopes
        self.unread = recent.unread
        self.set_unread = recent.set_unread
        self.plain_events = recent.plain_events
        self.thread_unread = recent.thread_unread
        self.set_thread_unread = recent.set_thread_unread
        # whether a room's state (and relations to some of its events) is
        # unchanged after a position
        self.unchanged_since = recent.unchanged_since
        self.members_unchanged_since = recent.members_unchanged_since
        self.sent_members = SentMembers()
        self.facts = RoomFacts()
        # the room's local joined members, None when not cached
        self.room_members: Callable[[str], frozenset[str] | None] = notifier.cached_members
        # the user's ignored users, None when not loaded
        self.ignored: Callable[[str], frozenset[str] | None] = ignored.cached
        # the device's key counts, None when not cached
        self.key_counts: Callable[[str, str | None], KeyCounts | None] = \
            e2e_keys.cached_counts
        # {local user: (notify, highlight)} of a recently persisted event,
        # None when persisted before this process started
        self.push_verdicts: Callable[[str], dict[str, tuple[int, int]] | None] = \
            push_actions.recent_actions

    def typing_rooms(self, since_pos: int) -> list[str]:
        """The rooms whose typing set changed after ``since_pos``."""
        return self._typing.rooms_changed_since(since_pos)

    def typing(self, room_ids: list[str], since_pos: int) -> dict[str, list[str]]:
        """Who types now in those of ``room_ids`` whose typing changed after ``since_pos``."""
        return self._typing.get_typing(room_ids, since_pos)

    def typing_changed(self, since_pos: int, now_pos: int) -> bool:
        """Whether any room's typing set changed in (``since_pos``, ``now_pos``]."""
        return now_pos != since_pos and bool(self._typing.rooms_changed_since(since_pos))

    def to_device_pending(self, user_id: str, device_id: str) -> bool:
        """Whether the device may hold to-device messages it has not acknowledged."""
        return (user_id, device_id) in self.recent.to_device_pending

    def set_to_device_pending(self, user_id: str, device_id: str, pending: bool) -> None:
        """What is left for the device to acknowledge, as the full builder found it
        (a message written since is a barrier in the next range, so dropping
        the mark is safe)."""
        if pending:
            self.recent.to_device_pending.add((user_id, device_id))
        else:
            self.recent.to_device_pending.discard((user_id, device_id))
