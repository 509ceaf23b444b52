"""Push rules per user, and the push actions of each event for each local user.

Rules (migration 0023): ``push_rules`` holds a user's own rules (priority
orders a kind: higher first; a new rule without ``before``/``after`` goes
first, as in Synapse), ``push_rules_defaults`` what the user changed of a
server-default rule (enabled, actions), ``push_rules_versions`` a random
token replaced with every change. Each change also rewrites the user's
``m.push_rules`` global account data (the whole ruleset, as the spec says
clients get it in /sync), in the same transaction.

Rulesets are cached in memory per (user, version token), compiled once
(``push/rules.py``'s merge with the defaults); a change makes a new token,
so nothing is ever invalidated by hand, and the cache is safe when several
homeservers (tests) share a process: a token is random, never reused.

Push actions are computed **inside the event's persist transaction** by a
persist hook (``storage/event_hooks.py``): for every local user joined to
the room except the sender (and a local invitee of an invite), with that
user's ruleset, through the pure evaluator (``push/evaluator.py``). Why in
the transaction rather than after commit: the counts in /sync and the
event become visible at the same instant (a sync woken by the event can
never see it without its notification), and a crash cannot lose them.
The cost is small: one query for the local members and their rule
versions, cached rulesets, and the room facts (member count, power levels,
display names) read only when a rule asks for them; the evaluation is a
few dict lookups per rule. Rows are written only where the actions
notify; ``event_push_actions`` (H15's pushers read it too) then answers
unread counts and GET /notifications with one indexed range query.

The actions computed are also kept in memory per event ID
(``recent_actions``) so the sync fast path (``sync/handler.py``) carries
unread counts forward without the database, in agreement with the full
builder, which reads the table. The hook fills that memory before the
commit, so it is complete for every event the fast path can see.

Events that never notify: outliers, rejected events, backfilled history
(stream position at or below zero), events of a room where no other local
user is joined.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeserver.events.model import Event
from homeserver.push.evaluator import (
    CompiledRule,
    PushEvent,
    RoomContext,
    compile_ruleset,
    evaluate_compiled,
    highlights,
    notification_level,
    notifies,
    user_power_level,
)
from homeserver.push.rules import DEFAULT_KIND_OF, build_ruleset, client_ruleset
from homeserver.storage.account_data import GLOBAL_ROOM, AccountDataStore
from homeserver.storage.database import Database, Txn
from homeserver.storage.event_hooks import MessageBatch, register_persist_hook

logger = logging.getLogger(__name__)

PUSH_RULES_TYPE = "m.push_rules"
IGNORED_USER_LIST = "m.ignored_user_list"
# rows per multi-row INSERT (8 parameters each: SQLite allows 32,766)
_INSERT_CHUNK = 500
MAX_CACHED_RULESETS = 20_000
MAX_RECENT_EVENTS = 50_000
_CHUNK = 500

Ruleset = dict[str, list[dict[str, Any]]]


class RuleNotFound(Exception):
    """The rule (or the one named by before/after) does not exist."""


class _Lru:
    """A small thread-safe LRU map (the persist hook runs on database threads)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def merge(self, key: Any, value: dict[str, Any]) -> None:
        with self._lock:
            old = self._data.get(key)
            self._data[key] = {**old, **value} if old else value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


# (user ID, version token or "") -> the user's ruleset in evaluation order
_RULESETS = _Lru(MAX_CACHED_RULESETS)
# event ID -> {local user ID: (notify, highlight)} for the sync fast path
_RECENT = _Lru(MAX_RECENT_EVENTS)
# member event ID -> display name ("" for none)
_NAMES = _Lru(MAX_CACHED_RULESETS)
# (user, rules version) -> the ruleset compiled for evaluation
_COMPILED = _Lru(MAX_CACHED_RULESETS)


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


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


def _ruleset_txn(txn: Txn, user_id: str, version: str | None) -> Ruleset:
    key = (user_id, version or "")
    ruleset = _RULESETS.get(key)
    if ruleset is None:
        ruleset = build_ruleset(user_id, {}, {}) if version is None \
            else _load_ruleset_txn(txn, user_id)
        _RULESETS.put(key, ruleset)
    result: Ruleset = ruleset
    return result


def _compiled_txn(txn: Txn, user_id: str, version: str | None) -> tuple[CompiledRule, ...]:
    key = (user_id, version or "")
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = compile_ruleset(_ruleset_txn(txn, user_id, version))
        _COMPILED.put(key, compiled)
    result: tuple[CompiledRule, ...] = compiled
    return result


def _version_txn(txn: Txn, user_id: str) -> str | None:
    row = txn.select_one("SELECT version FROM push_rules_versions WHERE user_id = ?",
                         (user_id,))
    return None if row is None else str(row[0])


def _changed_txn(txn: Txn, user_id: str) -> None:
    """A new version token, and the new ruleset as m.push_rules account data."""
    version = uuid.uuid4().hex
    txn.execute("INSERT INTO push_rules_versions (user_id, version) VALUES (?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET version = excluded.version",
                (user_id, version))
    ruleset = _ruleset_txn(txn, user_id, version)
    AccountDataStore.put_account_data_txn(txn, user_id, GLOBAL_ROOM, PUSH_RULES_TYPE,
                                          {"global": client_ruleset(ruleset)})


# -- the persist hook -----------------------------------------------------------

def thread_of(event: Event) -> str | None:
    relates = event.content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return root
    return None


def _target_thread_txn(txn: Txn, event: Event, room_nid: int) -> str | None:
    """The thread of the event an edit, reaction or reference points at: it
    counts in that thread, not in the main timeline (spec, threading)."""
    relates = event.content.get("m.relates_to")
    if not isinstance(relates, dict) or not isinstance(relates.get("event_id"), str):
        return None
    row = txn.select_one(
        "SELECT r.relates_to FROM events t JOIN event_relations r ON r.event_nid = t.event_nid"
        " WHERE t.event_id = ? AND t.room_nid = ? AND r.rel_type = ?",
        (relates["event_id"], room_nid, "m.thread"))
    return None if row is None else str(row[0])


class _Room:
    """The room facts the rules may ask for, each read at most once per
    event, or per batch of plain messages (which change no state)."""

    def __init__(self, txn: Txn, room_nid: int) -> None:
        self.txn = txn
        self.room_nid = room_nid
        self._count: int | None = None
        self._levels: tuple[dict[str, Any] | None, frozenset[str]] | None = None

    def member_count(self) -> int:
        if self._count is None:
            self._count = int(self.txn.select_value(
                "SELECT COUNT(*) FROM room_memberships WHERE room_nid = ? AND membership = ?",
                (self.room_nid, "join")))
        return self._count

    def _power(self) -> tuple[dict[str, Any] | None, frozenset[str]]:
        if self._levels is None:
            rows = self.txn.select_all(
                "SELECT sk.event_type, e.sender, e.json FROM current_state cs"
                " JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
                " JOIN events e ON e.event_nid = cs.event_nid"
                " WHERE cs.room_nid = ? AND sk.state_key = ? AND sk.event_type IN (?, ?)",
                (self.room_nid, "", "m.room.power_levels", "m.room.create"))
            levels: dict[str, Any] | None = None
            creators: set[str] = set()
            for event_type, sender, text in rows:
                if event_type == "m.room.create":
                    creators.add(sender)
                else:
                    content = json.loads(text).get("content")
                    levels = content if isinstance(content, dict) else {}
            self._levels = (levels, frozenset(creators))
        return self._levels

    def power_of(self, user_id: str) -> int:
        levels, creators = self._power()
        return user_power_level(levels, user_id, creators)

    def notification_power(self, key: str) -> int:
        return notification_level(self._power()[0], key)


def _display_names_txn(txn: Txn, member_events: dict[str, str]) -> dict[str, str]:
    """User -> display name from their member events (cached by event ID)."""
    out: dict[str, str] = {}
    missing: list[str] = []
    for user_id, event_id in member_events.items():
        name = _NAMES.get(event_id)
        if name is None:
            missing.append(event_id)
        else:
            out[user_id] = name
    for start in range(0, len(missing), _CHUNK):
        chunk = missing[start:start + _CHUNK]
        for event_id, state_key, text in txn.select_all(
                "SELECT event_id, state_key, json FROM events"
                f" WHERE event_id IN ({_placeholders(len(chunk))})", chunk):
            content = json.loads(text).get("content")
            name = content.get("displayname") if isinstance(content, dict) else None
            name = name if isinstance(name, str) else ""
            _NAMES.put(event_id, name)
            if state_key is not None:
                out[state_key] = name
    return out


def _members_txn(txn: Txn, room_nid: int) -> list[tuple[Any, ...]]:
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


def _recipients(members: list[tuple[Any, ...]], sender: str) -> list[tuple[Any, ...]]:
    # not the sender; and nothing from a user somebody ignores notifies them
    # (their client hides it: a count it could not clear would stay unread)
    return [m for m in members
            if m[0] != sender and (m[3] is None or not _ignores(m[3], sender))]


def _evaluate_and_record_txn(txn: Txn, room: _Room, events: list[tuple[Event, int, int]],
                             members: list[tuple[Any, ...]]) -> None:
    rows: list[tuple[Any, ...]] = []
    for event, event_nid, stream in events:
        recipients = _recipients(members, event.sender)
        if not recipients:
            _RECENT.merge(event.event_id, {})
            continue
        try:
            found, computed = _evaluate_txn(txn, event, event_nid, room, stream, recipients)
        except Exception:  # odd content must never fail the persist
            logger.exception("push rule evaluation failed for %s", event.event_id)
            continue
        rows += found
        _RECENT.merge(event.event_id, computed)
    # multi-row statements: one parse and one round trip per 500 rows
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start:start + _INSERT_CHUNK]
        txn.execute(
            "INSERT INTO event_push_actions (event_nid, room_nid, user_id, stream_ordering,"
            " notify, highlight, thread_id, actions) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            + " ON CONFLICT (event_nid, user_id) DO NOTHING",
            [value for row in chunk for value in row])


def _persist_hook(txn: Txn, event: Event, event_nid: int) -> None:
    row = txn.select_one(
        "SELECT room_nid, stream_ordering, outlier, rejected_reason FROM events"
        " WHERE event_nid = ?", (event_nid,))
    if row is None:
        return
    room_nid, stream, outlier, rejected = row
    if stream is None or int(stream) <= 0 or rejected is not None:
        return
    if outlier and not _is_invite(event):
        # only the invite of a local user to a room we do not hold is an
        # outlier with a place in the stream (it notifies the invitee)
        return
    if event.type == "m.room.redaction" and isinstance(event.redacts, str):
        # a redacted message no longer notifies anybody
        txn.execute(
            "DELETE FROM event_push_actions WHERE event_nid IN ("
            " SELECT event_nid FROM events WHERE event_id = ? AND room_nid = ?)",
            (event.redacts, room_nid))
    members = _members_txn(txn, int(room_nid))
    if _is_invite(event):
        assert event.state_key is not None
        invitee = txn.select_one(
            "SELECT u.user_id, v.version, ig.content FROM users u"
            " LEFT JOIN push_rules_versions v ON v.user_id = u.user_id"
            " LEFT JOIN account_data ig ON ig.user_id = u.user_id AND ig.room_id = ?"
            "  AND ig.data_type = ?"
            " WHERE u.user_id = ? AND u.deactivated = 0",
            (GLOBAL_ROOM, IGNORED_USER_LIST, event.state_key))
        if invitee is not None:
            members = [m for m in members if m[0] != invitee[0]]
            members.append((invitee[0], event.event_id, invitee[1], invitee[2]))
    _evaluate_and_record_txn(txn, _Room(txn, int(room_nid)), [(event, event_nid, int(stream))],
                             members)


def _batch_hook(txn: Txn, batch: MessageBatch) -> None:
    """Plain messages of one room: the members, their rules and the room's
    facts are read once for the whole batch."""
    events = [(e, nid, stream) for e, nid, stream in batch.events
              if e.rejected_reason is None and stream > 0]
    if events:
        _evaluate_and_record_txn(txn, _Room(txn, batch.room_nid), events,
                                 _members_txn(txn, batch.room_nid))


def _is_invite(event: Event) -> bool:
    return (event.type == "m.room.member" and event.content.get("membership") == "invite"
            and isinstance(event.state_key, str) and event.state_key != event.sender)


def notify_remote_invite_txn(txn: Txn, event: Event, event_nid: int) -> None:
    """Push actions for the invite of a local user to a room we do not hold
    (stored as an outlier, so the persist hooks do not run for it)."""
    _persist_hook(txn, event, event_nid)


def _ignores(ignore_list: str, sender: str) -> bool:
    """Whether an ``m.ignored_user_list`` content (JSON text) names ``sender``."""
    if sender not in ignore_list:
        return False
    try:
        ignored = json.loads(ignore_list).get("ignored_users")
    except (ValueError, AttributeError):
        return False
    return isinstance(ignored, dict) and sender in ignored


def _evaluate_txn(txn: Txn, event: Event, event_nid: int, room: _Room, stream: int,
                  members: list[tuple[Any, ...]],
                  ) -> tuple[list[tuple[Any, ...]], dict[str, tuple[int, int]]]:
    room_nid = room.room_nid
    push_event = PushEvent(event.json)
    member_events = {str(m[0]): str(m[1]) for m in members}
    names: dict[str, str] | None = None

    def name_of(user_id: str) -> Callable[[], str | None]:
        def get() -> str | None:
            nonlocal names
            if names is None:
                names = _display_names_txn(txn, member_events)
            return names.get(user_id) or None
        return get

    def sender_power() -> int:
        return room.power_of(event.sender)

    thread_id = thread_of(event) or _target_thread_txn(txn, event, room_nid)
    rows: list[tuple[Any, ...]] = []
    computed: dict[str, tuple[int, int]] = {}
    for user_id, _, version, _ in members:
        rules = _compiled_txn(txn, user_id, version)
        ctx = RoomContext(user_id=user_id, member_count=room.member_count,
                          display_name=name_of(user_id), sender_power=sender_power,
                          notification_power=room.notification_power)
        _, actions = evaluate_compiled(rules, push_event, ctx)
        notify = notifies(actions)
        highlight = notify and highlights(actions)
        computed[user_id] = (int(notify), int(highlight))
        if notify:
            rows.append((event_nid, room_nid, user_id, stream, 1, int(highlight), thread_id,
                         json.dumps(actions)))
    return rows, computed


register_persist_hook(_persist_hook, _batch_hook)


def recent_actions(event_id: str) -> dict[str, tuple[int, int]] | None:
    """{local user: (notify, highlight)} computed for the event when it was
    persisted by this process (None: not known here; read the table)."""
    found: dict[str, tuple[int, int]] | None = _RECENT.get(event_id)
    return found


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

    # -- rules ------------------------------------------------------------

    async def get_ruleset(self, user_id: str) -> Ruleset:
        """The user's rules of every kind, in evaluation order."""
        def txn_fn(txn: Txn) -> Ruleset:
            return _ruleset_txn(txn, user_id, _version_txn(txn, user_id))

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
            _changed_txn(txn, user_id)

        await self.db.run_interaction("add_push_rule", txn_fn)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute("DELETE FROM push_rules WHERE user_id = ? AND kind = ?"
                        " AND rule_id = ?", (user_id, kind, rule_id))
            if txn.rowcount == 0:
                return False
            _changed_txn(txn, user_id)
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
            _changed_txn(txn, user_id)
            return True

        return await self.db.run_interaction("set_push_rule_attribute", txn_fn)

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
