"""Ignored users (client-server API, "Ignoring Users"): whose events a user
does not want to see.

The list is the user's ``m.ignored_user_list`` global account data
(``{"ignored_users": {"@bob:example.org": {}}}``), written through the
ordinary account data API; this module only reads it, and refuses a list
that names its owner (Synapse: 400 "Cannot ignore yourself").

Readers filter with it: ``RoomReader`` drops non-state events sent by an
ignored user from every timeline read (``/sync`` timelines, ``/messages``,
``/context``, ``/event``), and ``/sync`` leaves out invites sent by one.
State events of ignored users still go out, as the spec asks, so the room
looks the same to everyone. The filter applies to reads from the moment the
list changes: events sent while someone was ignored are not resent when
they are un-ignored (the client may do a fresh initial sync to get them),
as Synapse behaves.

The list is read on every timeline read, so it is cached per user. The
cache entry is dropped by a write hub subscriber (storage/hub.py) whenever a
transaction writes something for the user alone (the ``ONLY_USER`` scope
that every account data write carries): that listener runs before the
stream's "persisted up to" can pass the write, so a /sync that sees the new
position sees the new list. A load that races a write is not cached (a
generation counter per user). One process only, like the sync fast path:
several writer processes would carry this invalidation over replication.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError
from homeserver.events.model import Event
from homeserver.storage.streams import ONLY_USER

if TYPE_CHECKING:
    from homeserver.storage.account_data import AccountDataStore
    from homeserver.storage.hub import Committed

IGNORED_USER_LIST = "m.ignored_user_list"
# users whose list is kept in memory at once
MAX_CACHED_USERS = 100_000

NOBODY: frozenset[str] = frozenset()


def ignored_users_of(content: dict[str, Any] | None) -> frozenset[str]:
    """The user IDs an ``m.ignored_user_list`` content names (malformed: none)."""
    ignored = content.get("ignored_users") if content is not None else None
    if not isinstance(ignored, dict):
        return NOBODY
    return frozenset(u for u in ignored if isinstance(u, str))


def check_ignore_list(user_id: str, data_type: str, content: dict[str, Any]) -> None:
    """Refuse an ``m.ignored_user_list`` that ignores its own user."""
    if data_type == IGNORED_USER_LIST and user_id in ignored_users_of(content):
        raise MatrixError(400, Codes.UNKNOWN, "Cannot ignore yourself")


def is_hidden(event: Event, ignored: frozenset[str]) -> bool:
    """Whether a reader ignoring ``ignored`` must not see ``event``: state
    events always go out (the room must look the same to everyone)."""
    return bool(ignored) and event.sender in ignored and not event.is_state()


class IgnoredUsers:
    """Each user's ignore list, cached and kept fresh by commit listener."""

    def __init__(self, account_data: "AccountDataStore") -> None:
        self.account_data = account_data
        self._cache: dict[str, frozenset[str]] = {}
        # bumped each time a user's list may have changed
        self._generation: dict[str, int] = {}

    def cached(self, user_id: str) -> frozenset[str] | None:
        """The user's list if it is in memory (the sync fast path is synchronous)."""
        return self._cache.get(user_id)

    async def get(self, user_id: str) -> frozenset[str]:
        """The users ``user_id`` ignores."""
        found = self._cache.get(user_id)
        if found is not None:
            return found
        generation = self._generation.get(user_id, 0)
        content = await self.account_data.get_global_account_data(
            user_id, IGNORED_USER_LIST)
        ignored = ignored_users_of(content)
        if self._generation.get(user_id, 0) == generation:
            if len(self._cache) >= MAX_CACHED_USERS:
                self._cache.clear()
            self._cache[user_id] = ignored
        return ignored

    def forget_all(self) -> None:
        """Drop every cached list (a reader process that missed writes)."""
        self._forget(list(self._cache))

    def _on_commit(self, committed: "Committed") -> None:
        # on the database thread: plain dict operations only
        for entries in committed.scopes.values():
            for room_id, user_id in entries:
                if room_id == ONLY_USER and user_id is not None:
                    self._forget([user_id])

    def _forget(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            self._generation[user_id] = self._generation.get(user_id, 0) + 1
            self._cache.pop(user_id, None)
