"""Pushers and what the HTTP pusher reads to build a notification.

The ``pushers`` table (schema 0024) holds one row per (user, app_id,
pushkey); ``last_stream_ordering`` is how far that pusher has got through
its user's ``event_push_actions`` (schema 0023, written in each event's
persist transaction by the push rule evaluator), so a restart resumes where
the last run stopped. A new pusher starts at the current stream position:
it is not sent the user's old notifications.

The pusher's reads skip what the user has already read: an action at or
before the event of a ``m.read`` or ``m.read.private`` receipt of the user
that covers its thread (unthreaded: all; "main": the main timeline; a
thread root: that thread) neither goes out nor counts as unread, as the
/sync counts see it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn

_PUSHER_COLUMNS = ("user_id, device_id, kind, app_id, pushkey, app_display_name,"
                   " device_display_name, profile_tag, lang, data, pushkey_ts,"
                   " last_stream_ordering, failing_since_ts")

# the action ``a`` is not yet read: no read receipt of its user in its room
# at or after it that covers its thread (an unthreaded receipt covers
# everything, a "main" one the main timeline, a thread's its thread), as the
# /sync counts see it (storage/receipts.py)
_UNREAD = (
    "NOT EXISTS (SELECT 1 FROM receipts r"
    " JOIN events rev ON rev.event_id = r.event_id"
    " JOIN rooms rr ON rr.room_id = r.room_id"
    " WHERE rr.room_nid = a.room_nid AND r.user_id = a.user_id"
    " AND r.receipt_type IN ('m.read', 'm.read.private')"
    " AND (r.thread_id = '' OR r.thread_id = COALESCE(a.thread_id, 'main'))"
    " AND rev.stream_ordering >= a.stream_ordering)")


@dataclass(frozen=True)
class Pusher:
    user_id: str
    device_id: str | None
    kind: str
    app_id: str
    pushkey: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    pushkey_ts: int
    last_stream_ordering: int
    failing_since_ts: int | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.user_id, self.app_id, self.pushkey)

    def to_client(self) -> dict[str, Any]:
        """The pusher as GET /pushers shows it."""
        out: dict[str, Any] = {
            "pushkey": self.pushkey, "kind": self.kind, "app_id": self.app_id,
            "app_display_name": self.app_display_name,
            "device_display_name": self.device_display_name,
            "lang": self.lang, "data": self.data,
        }
        if self.profile_tag is not None:
            out["profile_tag"] = self.profile_tag
        return out


@dataclass(frozen=True)
class PushAction:
    """One notification the pusher owes: an event_push_actions row."""
    stream_ordering: int
    event_id: str
    room_id: str
    highlight: bool
    # the set_tweak actions of the rule that matched (sound, highlight, ...)
    tweaks: dict[str, Any]


@dataclass(frozen=True)
class RoomContext:
    """What the full-format notification says about the room and sender."""
    room_name: str | None
    room_alias: str | None
    sender_display_name: str | None


def _pusher(row: tuple[Any, ...]) -> Pusher:
    return Pusher(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                  json.loads(row[9]), int(row[10]), int(row[11]),
                  int(row[12]) if row[12] is not None else None)


def _tweaks(actions_json: str | None, highlight: bool) -> dict[str, Any]:
    """The tweaks of an actions array (push.md, "Actions")."""
    tweaks: dict[str, Any] = {}
    try:
        actions = json.loads(actions_json) if actions_json else []
    except ValueError:
        actions = []
    for action in actions if isinstance(actions, list) else []:
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            # highlight without a value means true
            tweaks[action["set_tweak"]] = action.get("value", True)
    if highlight:
        tweaks["highlight"] = True
    else:
        tweaks.pop("highlight", None)
    return tweaks


class PusherStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the pushers ----------------------------------------------------------

    async def get_pushers_for_user(self, user_id: str) -> list[Pusher]:
        rows = await self.db.execute(
            "get_pushers_for_user",
            f"SELECT {_PUSHER_COLUMNS} FROM pushers WHERE user_id = ? ORDER BY id",
            (user_id,))
        return [_pusher(r) for r in rows]

    async def get_all_pushers(self) -> list[Pusher]:
        rows = await self.db.execute(
            "get_all_pushers", f"SELECT {_PUSHER_COLUMNS} FROM pushers ORDER BY id")
        return [_pusher(r) for r in rows]

    async def get_pusher(self, user_id: str, app_id: str, pushkey: str) -> Pusher | None:
        rows = await self.db.execute(
            "get_pusher",
            f"SELECT {_PUSHER_COLUMNS} FROM pushers"
            " WHERE user_id = ? AND app_id = ? AND pushkey = ?",
            (user_id, app_id, pushkey))
        return _pusher(rows[0]) if rows else None

    async def upsert_pusher(self, *, user_id: str, device_id: str | None, kind: str,
                            app_id: str, pushkey: str, app_display_name: str,
                            device_display_name: str, profile_tag: str | None, lang: str,
                            data: dict[str, Any], now_ms: int, position: int,
                            append: bool) -> list[tuple[str, str, str]]:
        """Create or update a pusher. A new one starts at ``position``; an
        updated one keeps its place (and its pushkey_ts unless the pushkey
        changed, which it cannot: it is the key). Without ``append``, the
        same (app_id, pushkey) of other users is removed: their keys are
        returned."""
        def txn_fn(txn: Txn) -> list[tuple[str, str, str]]:
            removed: list[tuple[str, str, str]] = []
            if not append:
                rows = txn.select_all(
                    "SELECT user_id FROM pushers WHERE app_id = ? AND pushkey = ?"
                    " AND user_id <> ?", (app_id, pushkey, user_id))
                txn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ?"
                            " AND user_id <> ?", (app_id, pushkey, user_id))
                removed = [(str(r[0]), app_id, pushkey) for r in rows]
            values = (device_id, kind, app_display_name, device_display_name, profile_tag,
                      lang, json.dumps(data))
            txn.execute(
                "UPDATE pushers SET device_id = ?, kind = ?, app_display_name = ?,"
                " device_display_name = ?, profile_tag = ?, lang = ?, data = ?"
                " WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                (*values, user_id, app_id, pushkey))
            if txn.rowcount == 0:
                txn.execute(
                    f"INSERT INTO pushers ({_PUSHER_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (user_id, device_id, kind, app_id, pushkey, app_display_name,
                     device_display_name, profile_tag, lang, json.dumps(data), now_ms,
                     position))
            return removed
        return await self.db.run_interaction("upsert_pusher", txn_fn)

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> None:
        await self.db.execute(
            "delete_pusher",
            "DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
            (user_id, app_id, pushkey))

    @staticmethod
    def delete_pushers_for_devices_txn(txn: Txn, user_id: str, device_ids: list[str]) -> None:
        """The devices are going: so are the pushers their tokens created."""
        for device_id in device_ids:
            txn.execute("DELETE FROM pushers WHERE user_id = ? AND device_id = ?",
                        (user_id, device_id))

    @staticmethod
    def delete_pushers_for_user_txn(txn: Txn, user_id: str,
                                    except_device_id: str | None = None) -> None:
        """Every device of the user but ``except_device_id`` is going."""
        if except_device_id is None:
            txn.execute("DELETE FROM pushers WHERE user_id = ?", (user_id,))
        else:
            # a pusher of no device (none such are made here) goes too
            txn.execute("DELETE FROM pushers WHERE user_id = ?"
                        " AND (device_id IS NULL OR device_id <> ?)",
                        (user_id, except_device_id))

    async def set_progress(self, user_id: str, app_id: str, pushkey: str,
                           last_stream_ordering: int, failing_since_ts: int | None) -> None:
        """Record how far the pusher got (never backwards)."""
        await self.db.execute(
            "set_pusher_progress",
            "UPDATE pushers SET last_stream_ordering = ?, failing_since_ts = ?"
            " WHERE user_id = ? AND app_id = ? AND pushkey = ? AND last_stream_ordering <= ?",
            (last_stream_ordering, failing_since_ts, user_id, app_id, pushkey,
             last_stream_ordering))

    # -- what to push ---------------------------------------------------------

    async def get_users_with_pushers_and_actions(self, after: int, upto: int) -> list[str]:
        """Users with a pusher and a notifying action in (after, upto]."""
        rows = await self.db.execute(
            "get_users_with_pushers_and_actions",
            "SELECT DISTINCT a.user_id FROM event_push_actions a"
            " WHERE a.stream_ordering > ? AND a.stream_ordering <= ? AND a.notify = 1"
            " AND EXISTS (SELECT 1 FROM pushers p WHERE p.user_id = a.user_id)",
            (after, upto))
        return [str(r[0]) for r in rows]

    async def get_push_actions(self, user_id: str, after: int, upto: int,
                               limit: int) -> list[PushAction]:
        """The user's unread notifying actions in (after, upto], oldest first."""
        rows = await self.db.execute(
            "get_push_actions_for_pusher",
            "SELECT a.stream_ordering, ev.event_id, ro.room_id, a.highlight, a.actions"
            " FROM event_push_actions a"
            " JOIN events ev ON ev.event_nid = a.event_nid"
            " JOIN rooms ro ON ro.room_nid = a.room_nid"
            " WHERE a.user_id = ? AND a.stream_ordering > ? AND a.stream_ordering <= ?"
            f" AND a.notify = 1 AND {_UNREAD}"
            " ORDER BY a.stream_ordering LIMIT ?",
            (user_id, after, upto, limit))
        return [PushAction(int(r[0]), str(r[1]), str(r[2]), bool(r[3]), _tweaks(r[4], bool(r[3])))
                for r in rows]

    async def get_unread_count(self, user_id: str) -> int:
        """The user's unread notifications over every room they are joined to."""
        rows = await self.db.execute(
            "get_unread_notification_count",
            "SELECT COUNT(*) FROM event_push_actions a"
            " JOIN room_memberships m ON m.user_id = a.user_id AND m.room_nid = a.room_nid"
            " WHERE a.user_id = ? AND a.notify = 1 AND m.membership = 'join'"
            f" AND {_UNREAD}",
            (user_id,))
        return int(rows[0][0]) if rows else 0

    async def get_room_context(self, room_id: str, sender: str) -> RoomContext:
        """The room's current name and canonical alias and the sender's
        current display name in it."""
        def txn_fn(txn: Txn) -> list[tuple[Any, ...]]:
            return txn.select_all(
                "SELECT sk.event_type, ev.json FROM rooms ro"
                " JOIN current_state cs ON cs.room_nid = ro.room_nid"
                " JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
                " JOIN events ev ON ev.event_nid = cs.event_nid"
                " WHERE ro.room_id = ? AND ((sk.event_type = 'm.room.name' AND sk.state_key = '')"
                " OR (sk.event_type = 'm.room.canonical_alias' AND sk.state_key = '')"
                " OR (sk.event_type = 'm.room.member' AND sk.state_key = ?))",
                (room_id, sender))
        rows = await self.db.run_interaction("get_push_room_context", txn_fn)
        found: dict[str, Any] = {}
        for event_type, raw in rows:
            content = json.loads(raw).get("content")
            value = None
            if isinstance(content, dict):
                field = {"m.room.name": "name", "m.room.canonical_alias": "alias",
                         "m.room.member": "displayname"}[str(event_type)]
                value = content.get(field)
            if isinstance(value, str) and value:
                found[str(event_type)] = value
        return RoomContext(found.get("m.room.name"), found.get("m.room.canonical_alias"),
                           found.get("m.room.member"))
