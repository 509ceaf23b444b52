"""Push rules per user, and the push actions of each event for each local user.

Rules (migration 0023): ``push_rules`` holds a user's own rules (priority
orders a kind: higher first; a new rule without ``before``/``after`` goes
first, as in Synapse), ``push_rules_defaults`` what the user changed of a
server-default rule (enabled, actions), ``push_rules_versions`` a random
token replaced with every change. Each change also rewrites the user's
``m.push_rules`` global account data (the whole ruleset, as the spec says
clients get it in /sync), in the same transaction.

Rulesets are cached in memory per (user, version token) by each store
(``ruleset_txn``, merged with the defaults by ``push/rules.py``); a change
makes a new token, so nothing is ever invalidated by hand.

Push actions (``event_push_actions``: which local users an event notifies)
are decided by ``push/actions.py`` inside the event's persist transaction;
this module holds the SQL it reads and writes there, and the queries that
answer unread counts and GET /notifications from the table.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.events.model import Event
from homeserver.push.rules import DEFAULT_KIND_OF, build_ruleset, client_ruleset
from homeserver.storage.account_data import GLOBAL_ROOM, AccountDataStore
from homeserver.storage.cache import LruCache
from homeserver.storage.database import Database, Txn
from homeserver.storage.sql import chunks, placeholders, select_in_txn

PUSH_RULES_TYPE = "m.push_rules"
IGNORED_USER_LIST = "m.ignored_user_list"
# rows per multi-row INSERT (8 parameters each: SQLite allows 32,766)
_INSERT_CHUNK = 500
MAX_CACHED_RULESETS = 20_000
_CHUNK = 500

Ruleset = dict[str, list[dict[str, Any]]]


class RuleNotFound(Exception):
    """The rule (or the one named by before/after) does not exist."""


# -- rulesets -----------------------------------------------------------------

def _load_ruleset_txn(txn: Txn, user_id: str) -> Ruleset:
    own: Ruleset = {}
    for kind, rule_id, conditions, pattern, actions, enabled in txn.select_all(
            "SELECT kind, rule_id, conditions, pattern, actions, enabled FROM push_rules"
            " WHERE user_id = ? ORDER BY priority DESC", (user_id,)):
        rule: dict[str, Any] = {"rule_id": rule_id, "enabled": bool(enabled),
                                "actions": json.loads(actions)}
        if kind == "content":
            rule["pattern"] = pattern or ""
        elif kind in ("override", "underride"):
            rule["conditions"] = json.loads(conditions)
        own.setdefault(kind, []).append(rule)
    overrides: dict[str, tuple[bool | None, list[Any] | None]] = {}
    for rule_id, enabled, actions in txn.select_all(
            "SELECT rule_id, enabled, actions FROM push_rules_defaults WHERE user_id = ?",
            (user_id,)):
        overrides[rule_id] = (None if enabled is None else bool(enabled),
                              None if actions is None else json.loads(actions))
    return build_ruleset(user_id, own, overrides)


def _version_txn(txn: Txn, user_id: str) -> str | None:
    row = txn.select_one("SELECT version FROM push_rules_versions WHERE user_id = ?",
                         (user_id,))
    return None if row is None else str(row[0])


# -- rows for the API ---------------------------------------------------------

@dataclass(frozen=True)
class NotificationRow:
    stream_ordering: int
    event_id: str
    room_id: str
    ts: int
    actions: list[Any]
    highlight: bool


class PushRuleStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # (user ID, version token or "") -> the user's ruleset in evaluation order
        self._rulesets: LruCache[tuple[str, str], Ruleset] = LruCache(MAX_CACHED_RULESETS)

    def ruleset_txn(self, txn: Txn, user_id: str, version: str | None) -> Ruleset:
        """The user's ruleset at rules ``version`` (None: never changed)."""
        key = (user_id, version or "")
        ruleset = self._rulesets.get(key)
        if ruleset is None:
            ruleset = build_ruleset(user_id, {}, {}) if version is None \
                else _load_ruleset_txn(txn, user_id)
            self._rulesets.put(key, ruleset)
        result: Ruleset = ruleset
        return result

    def _changed_txn(self, txn: Txn, user_id: str) -> None:
        """A new version token, and the new ruleset as m.push_rules account data."""
        version = uuid.uuid4().hex
        txn.execute("INSERT INTO push_rules_versions (user_id, version) VALUES (?, ?)"
                    " ON CONFLICT (user_id) DO UPDATE SET version = excluded.version",
                    (user_id, version))
        ruleset = self.ruleset_txn(txn, user_id, version)
        AccountDataStore.put_account_data_txn(txn, user_id, GLOBAL_ROOM, PUSH_RULES_TYPE,
                                              {"global": client_ruleset(ruleset)})

    # -- rules ------------------------------------------------------------

    async def get_ruleset(self, user_id: str) -> Ruleset:
        """The user's rules of every kind, in evaluation order."""
        def txn_fn(txn: Txn) -> Ruleset:
            return self.ruleset_txn(txn, user_id, _version_txn(txn, user_id))

        return await self.db.run_interaction("get_push_ruleset", txn_fn)

    async def add_rule(self, user_id: str, kind: str, rule_id: str,
                       conditions: list[Any], pattern: str | None, actions: list[Any],
                       before: str | None = None, after: str | None = None) -> None:
        """Create or replace a user rule. Without before/after, a new rule
        goes first of its kind and a replaced one keeps its place; with one,
        the rule goes just before / after that user rule (RuleNotFound if it
        does not exist)."""
        def txn_fn(txn: Txn) -> None:
            existing = txn.select_one(
                "SELECT priority, enabled FROM push_rules WHERE user_id = ? AND kind = ?"
                " AND rule_id = ?", (user_id, kind, rule_id))
            enabled = 1 if existing is None else int(existing[1])
            relative = before if before is not None else after
            if relative is not None:
                anchor = txn.select_one(
                    "SELECT priority FROM push_rules WHERE user_id = ? AND kind = ?"
                    " AND rule_id = ?", (user_id, kind, relative))
                if anchor is None or relative == rule_id:
                    raise RuleNotFound(relative)
                txn.execute("DELETE FROM push_rules WHERE user_id = ? AND kind = ?"
                            " AND rule_id = ?", (user_id, kind, rule_id))
                # make room: "before" means more important (a higher priority)
                if before is not None:
                    priority = int(anchor[0]) + 1
                    txn.execute("UPDATE push_rules SET priority = priority + 1"
                                " WHERE user_id = ? AND kind = ? AND priority >= ?",
                                (user_id, kind, priority))
                else:
                    priority = int(anchor[0])
                    txn.execute("UPDATE push_rules SET priority = priority + 1"
                                " WHERE user_id = ? AND kind = ? AND priority >= ?",
                                (user_id, kind, priority))
            elif existing is not None:
                priority = int(existing[0])
            else:
                top = txn.select_value(
                    "SELECT MAX(priority) FROM push_rules WHERE user_id = ? AND kind = ?",
                    (user_id, kind))
                priority = 0 if top is None else int(top) + 1
            txn.execute(
                "INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions,"
                " pattern, actions, enabled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET"
                " priority = excluded.priority, conditions = excluded.conditions,"
                " pattern = excluded.pattern, actions = excluded.actions",
                (user_id, kind, rule_id, priority, json.dumps(conditions), pattern,
                 json.dumps(actions), enabled))
            self._changed_txn(txn, user_id)

        await self.db.run_interaction("add_push_rule", txn_fn)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute("DELETE FROM push_rules WHERE user_id = ? AND kind = ?"
                        " AND rule_id = ?", (user_id, kind, rule_id))
            if txn.rowcount == 0:
                return False
            self._changed_txn(txn, user_id)
            return True

        return await self.db.run_interaction("delete_push_rule", txn_fn)

    async def set_rule_attribute(self, user_id: str, kind: str, rule_id: str,
                                 enabled: bool | None = None,
                                 actions: list[Any] | None = None) -> bool:
        """Set enabled or actions of a user rule or a server-default one;
        False when no such rule exists."""
        def txn_fn(txn: Txn) -> bool:
            if DEFAULT_KIND_OF.get(rule_id) == kind:
                txn.execute(
                    "INSERT INTO push_rules_defaults (user_id, kind, rule_id, enabled, actions)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET"
                    " enabled = COALESCE(excluded.enabled, push_rules_defaults.enabled),"
                    " actions = COALESCE(excluded.actions, push_rules_defaults.actions)",
                    (user_id, kind, rule_id, None if enabled is None else int(enabled),
                     None if actions is None else json.dumps(actions)))
            elif enabled is not None:
                txn.execute("UPDATE push_rules SET enabled = ? WHERE user_id = ? AND kind = ?"
                            " AND rule_id = ?", (int(enabled), user_id, kind, rule_id))
                if txn.rowcount == 0:
                    return False
            else:
                txn.execute("UPDATE push_rules SET actions = ? WHERE user_id = ? AND kind = ?"
                            " AND rule_id = ?", (json.dumps(actions), user_id, kind, rule_id))
                if txn.rowcount == 0:
                    return False
            self._changed_txn(txn, user_id)
            return True

        return await self.db.run_interaction("set_push_rule_attribute", txn_fn)

    # -- what push/actions.py reads and writes in the persist transaction --

    @staticmethod
    def event_row_txn(txn: Txn, event_nid: int) -> tuple[Any, ...] | None:
        """(room NID, stream position, outlier, rejected reason) of a stored event."""
        return txn.select_one(
            "SELECT room_nid, stream_ordering, outlier, rejected_reason FROM events"
            " WHERE event_nid = ?", (event_nid,))

    @staticmethod
    def delete_actions_of_txn(txn: Txn, event_id: str, room_nid: int) -> None:
        """Forget the push actions of a redacted event."""
        txn.execute(
            "DELETE FROM event_push_actions WHERE event_nid IN ("
            " SELECT event_nid FROM events WHERE event_id = ? AND room_nid = ?)",
            (event_id, room_nid))

    @staticmethod
    def local_members_txn(txn: Txn, room_nid: int) -> list[tuple[Any, ...]]:
        """The room's joined local users: (user ID, member event ID, rules
        version, ignore list JSON)."""
        return txn.select_all(
            "SELECT m.user_id, e.event_id, v.version, ig.content FROM room_memberships m"
            " JOIN users u ON u.user_id = m.user_id"
            " JOIN events e ON e.event_nid = m.event_nid"
            " LEFT JOIN push_rules_versions v ON v.user_id = m.user_id"
            " LEFT JOIN account_data ig ON ig.user_id = m.user_id AND ig.room_id = ?"
            "  AND ig.data_type = ?"
            " WHERE m.room_nid = ? AND m.membership = ? AND u.deactivated = 0",
            (GLOBAL_ROOM, IGNORED_USER_LIST, room_nid, "join"))

    @staticmethod
    def local_members_many_txn(txn: Txn, room_nids: Sequence[int],
                               ) -> dict[int, list[tuple[Any, ...]]]:
        """``local_members_txn`` of several rooms: room NID -> its members."""
        out: dict[int, list[tuple[Any, ...]]] = {r: [] for r in room_nids}
        for room_nid, *member in select_in_txn(
                txn, "SELECT m.room_nid, m.user_id, e.event_id, v.version, ig.content"
                " FROM room_memberships m"
                " JOIN users u ON u.user_id = m.user_id"
                " JOIN events e ON e.event_nid = m.event_nid"
                " LEFT JOIN push_rules_versions v ON v.user_id = m.user_id"
                " LEFT JOIN account_data ig ON ig.user_id = m.user_id AND ig.room_id = ?"
                "  AND ig.data_type = ?"
                " WHERE m.membership = ? AND u.deactivated = 0 AND m.room_nid IN ({})",
                list(out), before=(GLOBAL_ROOM, IGNORED_USER_LIST, "join")):
            out[int(room_nid)].append(tuple(member))
        return out

    @staticmethod
    def joined_counts_txn(txn: Txn, room_nids: Sequence[int]) -> dict[int, int]:
        """``joined_count_txn`` of several rooms."""
        out = dict.fromkeys(room_nids, 0)
        for room_nid, count in select_in_txn(
                txn, "SELECT room_nid, COUNT(*) FROM room_memberships"
                " WHERE membership = ? AND room_nid IN ({}) GROUP BY room_nid",
                list(out), before=("join",)):
            out[int(room_nid)] = int(count)
        return out

    @staticmethod
    def local_invitee_txn(txn: Txn, user_id: str) -> tuple[Any, ...] | None:
        """(user ID, rules version, ignore list JSON) of an active local user."""
        return txn.select_one(
            "SELECT u.user_id, v.version, ig.content FROM users u"
            " LEFT JOIN push_rules_versions v ON v.user_id = u.user_id"
            " LEFT JOIN account_data ig ON ig.user_id = u.user_id AND ig.room_id = ?"
            "  AND ig.data_type = ?"
            " WHERE u.user_id = ? AND u.deactivated = 0",
            (GLOBAL_ROOM, IGNORED_USER_LIST, user_id))

    @staticmethod
    def insert_actions_txn(txn: Txn, rows: list[tuple[Any, ...]]) -> None:
        """``event_push_actions`` rows (event NID, room NID, user, position,
        notify, highlight, thread, actions JSON); an existing one is kept."""
        # multi-row statements: one parse and one round trip per 500 rows
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start:start + _INSERT_CHUNK]
            txn.execute(
                "INSERT INTO event_push_actions (event_nid, room_nid, user_id, stream_ordering,"
                " notify, highlight, thread_id, actions) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                + " ON CONFLICT (event_nid, user_id) DO NOTHING",
                [value for row in chunk for value in row])

    @staticmethod
    def joined_count_txn(txn: Txn, room_nid: int) -> int:
        return int(txn.select_value(
            "SELECT COUNT(*) FROM room_memberships WHERE room_nid = ? AND membership = ?",
            (room_nid, "join")))

    @staticmethod
    def power_state_txn(txn: Txn, room_nid: int) -> tuple[dict[str, Any] | None, frozenset[str]]:
        """The room's power levels content (None: no such event) and its creators."""
        rows = txn.select_all(
            "SELECT sk.event_type, e.sender, e.json FROM current_state cs"
            " JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
            " JOIN events e ON e.event_nid = cs.event_nid"
            " WHERE cs.room_nid = ? AND sk.state_key = ? AND sk.event_type IN (?, ?)",
            (room_nid, "", "m.room.power_levels", "m.room.create"))
        levels: dict[str, Any] | None = None
        creators: set[str] = set()
        for event_type, sender, text in rows:
            if event_type == "m.room.create":
                creators.add(sender)
            else:
                content = json.loads(text).get("content")
                levels = content if isinstance(content, dict) else {}
        return levels, frozenset(creators)

    @staticmethod
    def member_names_txn(txn: Txn, event_ids: list[str]) -> list[tuple[str, str | None, str]]:
        """(event ID, state key, display name or "") of member events."""
        out: list[tuple[str, str | None, str]] = []
        for start in range(0, len(event_ids), _CHUNK):
            chunk = event_ids[start:start + _CHUNK]
            for event_id, state_key, text in txn.select_all(
                    "SELECT event_id, state_key, json FROM events"
                    f" WHERE event_id IN ({placeholders(len(chunk))})", chunk):
                content = json.loads(text).get("content")
                name = content.get("displayname") if isinstance(content, dict) else None
                out.append((event_id, state_key, name if isinstance(name, str) else ""))
        return out

    @staticmethod
    def target_thread_txn(txn: Txn, event: Event, room_nid: int) -> str | None:
        """The thread of the event an edit, reaction or reference points at."""
        relates = event.content.get("m.relates_to")
        if not isinstance(relates, dict) or not isinstance(relates.get("event_id"), str):
            return None
        row = txn.select_one(
            "SELECT r.relates_to FROM events t"
            " JOIN event_relations r ON r.event_nid = t.event_nid"
            " WHERE t.event_id = ? AND t.room_nid = ? AND r.rel_type = ?",
            (relates["event_id"], room_nid, "m.thread"))
        return None if row is None else str(row[0])

    # -- push actions -----------------------------------------------------

    async def get_unread_actions(self, room_nid: int, user_id: str, after: int, until: int,
                                 limit: int) -> list[tuple[int, bool, str | None]]:
        """(stream position, highlight, thread root or None) of the newest
        ``limit`` notifying events for the user in (after, until], newest first."""
        rows = await self.db.execute(
            "get_unread_push_actions",
            "SELECT stream_ordering, highlight, thread_id FROM event_push_actions"
            " WHERE user_id = ? AND room_nid = ? AND stream_ordering > ?"
            " AND stream_ordering <= ? AND notify = 1"
            " ORDER BY stream_ordering DESC LIMIT ?",
            (user_id, room_nid, after, until, limit))
        return [(int(p), bool(h), t) for p, h, t in rows]

    async def get_unread_actions_many(self, after: dict[int, int], user_id: str, until: int,
                                      limit: int,
                                      ) -> dict[int, list[tuple[int, bool, str | None]]]:
        """``get_unread_actions`` of many rooms in one transaction (an
        initial sync): room NID (each after its own position) -> rows."""
        def txn_fn(txn: Txn) -> dict[int, list[tuple[int, bool, str | None]]]:
            out: dict[int, list[tuple[int, bool, str | None]]] = {n: [] for n in after}
            for part in chunks(list(after.items()), 200):
                rows = txn.select_all(
                    "WITH wanted(room_nid, after_pos) AS (VALUES "
                    + ", ".join(["(?, ?)"] * len(part)) + ")"
                    " SELECT room_nid, stream_ordering, highlight, thread_id FROM ("
                    " SELECT pa.room_nid, pa.stream_ordering, pa.highlight, pa.thread_id,"
                    " ROW_NUMBER() OVER (PARTITION BY pa.room_nid"
                    " ORDER BY pa.stream_ordering DESC) AS n"
                    " FROM event_push_actions pa JOIN wanted w ON w.room_nid = pa.room_nid"
                    " WHERE pa.user_id = ? AND pa.stream_ordering > w.after_pos"
                    " AND pa.stream_ordering <= ? AND pa.notify = 1) ranked"
                    " WHERE n <= ? ORDER BY room_nid, stream_ordering DESC",
                    [v for pair in part for v in pair] + [user_id, until, limit])
                for nid, pos, highlight, thread in rows:
                    out[int(nid)].append((int(pos), bool(highlight), thread))
            return out
        if not after:
            return {}
        return await self.db.run_interaction("get_unread_push_actions_many", txn_fn)

    async def get_notifications(self, user_id: str, before: int | None, limit: int,
                                only_highlight: bool) -> list[NotificationRow]:
        """The user's notifications, newest first, below ``before``."""
        rows = await self.db.execute(
            "get_notifications",
            "SELECT pa.stream_ordering, e.event_id, r.room_id, e.origin_server_ts,"
            " pa.actions, pa.highlight FROM event_push_actions pa"
            " JOIN events e ON e.event_nid = pa.event_nid"
            " JOIN rooms r ON r.room_nid = pa.room_nid"
            " WHERE pa.user_id = ? AND pa.notify = 1 AND pa.stream_ordering < ?"
            " AND pa.highlight >= ?"
            " ORDER BY pa.stream_ordering DESC LIMIT ?",
            (user_id, before if before is not None else 2**62, 1 if only_highlight else 0,
             limit))
        return [NotificationRow(int(p), e, r, int(ts), json.loads(a) if a else ["notify"],
                                bool(h)) for p, e, r, ts, a, h in rows]
