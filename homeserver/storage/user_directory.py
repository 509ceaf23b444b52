"""The user directory: who a user can find by name to invite or message.

``user_directory`` holds one row per user the server knows: its own users
and every user seen joining a room, with their display name and avatar and
a ``search_key`` (user ID and display name, case-folded in Python, so
matching is case-insensitive beyond ASCII on both engines). It is kept up
to date cheaply:

- a persist hook writes the profile of every ``m.room.member`` join (a
  profile change of a local user is a new join event in each of their
  rooms, ``rooms/membership.py``; a remote user's profile is what their
  join says);
- the migration copies the local users there at the time, and
  ``update_profile`` (registration and profile changes of users in no room)
  and a catch-up at search time cover the rest: local users missing a row
  (``_add_missing_local_txn``, an anti-join on primary keys) and members of
  the searcher's rooms missing one (``_add_missing_members_txn``: the members
  a room had when we joined it over federation came as state, which the
  hook does not see).

Who may be found is decided at search time from ``room_memberships``, so a
join or a leave needs no directory write: the *other* users joined to a room
the searcher is joined to, or anyone joined to a public room, or, with
``search_all_users``, every local user and every user joined to some room.
Deactivated local users are never found. As in Synapse, a room is public
when its current ``join_rule`` is ``public`` or its ``history_visibility`` is
``world_readable``, and only while one of our users is still joined to it:
once this server has left a room, what it last knew of that room's members
is stale and finds no one. A user sharing no room with the searcher finds
themselves only through a public room (Synapse's pairs of users who share a
private room never pair a user with themselves).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from homeserver.events.model import Event
from homeserver.storage.database import Database, Txn

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 1000


@dataclass(frozen=True)
class DirectoryUser:
    user_id: str
    display_name: str | None
    avatar_url: str | None


def search_key(user_id: str, display_name: str | None) -> str:
    return f"{user_id} {display_name or ''}".casefold()


def _clean(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        return None
    return value.replace("\x00", "")


def _upsert_txn(txn: Txn, user_id: str, display_name: str | None,
                avatar_url: str | None) -> None:
    txn.execute("INSERT INTO user_directory (user_id, display_name, avatar_url, search_key)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                " display_name = excluded.display_name, avatar_url = excluded.avatar_url,"
                " search_key = excluded.search_key"
                # unchanged: no write, so a user joining many rooms at once does
                # not make their transactions conflict on this row (PostgreSQL)
                " WHERE user_directory.display_name IS DISTINCT FROM excluded.display_name"
                " OR user_directory.avatar_url IS DISTINCT FROM excluded.avatar_url",
                (user_id, display_name, avatar_url, search_key(user_id, display_name)))


def member_joined_txn(txn: Txn, event: Event, event_nid: int) -> None:
    """The persist hook: remember the profile a join carries."""
    if event.type != "m.room.member" or event.membership != "join":
        return
    if event.rejected_reason is not None or event.state_key is None:
        return
    content = event.content
    _upsert_txn(txn, event.state_key.replace("\x00", ""), _clean(content.get("displayname")),
                _clean(content.get("avatar_url")))


# The rooms that are public (current join rule public, or history
# world_readable) and that one of our users is still joined to. The
# canonical JSON of an event has no spaces, and nothing but the content
# holds these keys.
_PUBLIC_ROOMS = (
    "SELECT pr.room_nid FROM rooms AS pr"
    " JOIN current_state AS cs ON cs.room_nid = pr.room_nid AND cs.state_key_nid IN"
    " (SELECT state_key_nid FROM state_keys WHERE state_key = ''"
    " AND event_type IN ('m.room.join_rules', 'm.room.history_visibility'))"
    " JOIN events AS je ON je.event_nid = cs.event_nid"
    " WHERE (je.json LIKE '%\"join_rule\":\"public\"%'"
    " OR je.json LIKE '%\"history_visibility\":\"world_readable\"%')"
    " AND EXISTS (SELECT 1 FROM room_memberships AS lm JOIN users AS lu"
    " ON lu.user_id = lm.user_id WHERE lm.room_nid = pr.room_nid AND lm.membership = 'join')")


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class UserDirectoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def update_profile(self, user_id: str, display_name: str | None,
                             avatar_url: str | None) -> None:
        """A local user's profile changed (or they registered)."""
        await self.db.run_interaction("user_directory_update", _upsert_txn, user_id,
                                      _clean(display_name), _clean(avatar_url))

    @staticmethod
    def _add_missing_local_txn(txn: Txn) -> None:
        rows = txn.select_all(
            "SELECT u.user_id, p.displayname, p.avatar_url FROM users AS u"
            " LEFT JOIN profiles AS p ON p.user_id = u.user_id"
            " WHERE NOT EXISTS (SELECT 1 FROM user_directory AS d WHERE d.user_id = u.user_id)")
        for user_id, name, avatar in rows:
            _upsert_txn(txn, user_id, _clean(name), _clean(avatar))

    @staticmethod
    def _add_missing_members_txn(txn: Txn, user_id: str | None) -> None:
        """Members without a row (of ``user_id``'s rooms; None: of every room):
        the members a room already had when we joined it over federation
        arrived as state, not through the persist hook."""
        sql = ("SELECT m.user_id, e.json FROM room_memberships AS m"
               " JOIN events AS e ON e.event_nid = m.event_nid"
               " WHERE m.membership = 'join'"
               " AND NOT EXISTS (SELECT 1 FROM user_directory AS d WHERE d.user_id = m.user_id)")
        params: list[Any] = []
        if user_id is not None:
            sql += (" AND m.room_nid IN (SELECT mine.room_nid FROM room_memberships AS mine"
                    " WHERE mine.user_id = ? AND mine.membership = 'join')")
            params.append(user_id)
        for member, text in txn.select_all(sql, params):
            try:
                content = json.loads(text).get("content")
            except ValueError:
                content = None
            if not isinstance(content, dict):
                content = {}
            _upsert_txn(txn, member, _clean(content.get("displayname")),
                        _clean(content.get("avatar_url")))

    def _search_txn(self, txn: Txn, user_id: str, term: str, limit: int, *,
                    search_all: bool, prefer_local: bool) -> list[DirectoryUser]:
        self._add_missing_local_txn(txn)
        self._add_missing_members_txn(txn, None if search_all else user_id)
        params: list[Any] = []
        words = term.replace("\x00", " ").casefold().split()
        sql = ("SELECT d.user_id, d.display_name, d.avatar_url FROM user_directory AS d"
               " LEFT JOIN users AS u ON u.user_id = d.user_id"
               " WHERE COALESCE(u.deactivated, 0) = 0")
        for word in words:
            sql += " AND d.search_key LIKE ? ESCAPE '\\'"
            params.append(f"%{_like_escape(word)}%")
        joined_somewhere = ("EXISTS (SELECT 1 FROM room_memberships AS them"
                            " WHERE them.user_id = d.user_id AND them.membership = 'join'")
        if search_all:
            sql += f" AND (u.user_id IS NOT NULL OR {joined_somewhere}))"
        else:
            sql += (f" AND ({joined_somewhere} AND d.user_id <> ? AND them.room_nid IN ("
                    "SELECT mine.room_nid FROM room_memberships AS mine"
                    " WHERE mine.user_id = ? AND mine.membership = 'join'))"
                    f" OR {joined_somewhere} AND them.room_nid IN ({_PUBLIC_ROOMS})))")
            params.extend([user_id, user_id])
        order = " ORDER BY "
        if prefer_local:
            order += "CASE WHEN u.user_id IS NULL THEN 1 ELSE 0 END, "
        order += ("CASE WHEN d.display_name IS NULL THEN 1 ELSE 0 END,"
                  " d.search_key, d.user_id LIMIT ?")
        params.append(limit)
        rows = txn.select_all(sql + order, params)
        return [DirectoryUser(str(r[0]), r[1], r[2]) for r in rows]

    async def search(self, user_id: str, term: str, limit: int, *, search_all: bool = False,
                     prefer_local: bool = False) -> list[DirectoryUser]:
        """Up to ``limit`` users ``user_id`` may find whose user ID or display
        name holds every word of ``term`` (case-insensitive)."""
        return await self.db.run_interaction("user_directory_search", self._search_txn,
                                             user_id, term, limit, search_all=search_all,
                                             prefer_local=prefer_local)
