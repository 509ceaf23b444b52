"""Push actions: which local users an event notifies, computed as it is stored.

``PushActions`` evaluates every local user's push rules against each new
timeline event, **inside the event's persist transaction**: the server
registers its ``persist_hook_txn`` / ``batch_hook_txn`` as persist hooks
(``storage/event_hooks.py``). For every local user joined to the room except
the sender (and a local invitee of an invite), with that user's ruleset,
through the pure evaluator (``push/evaluator.py``). Why in the transaction
rather than after commit: the counts in /sync and the event become visible
at the same instant (a sync woken by the event can never see it without its
notification), and a crash cannot lose them. The cost is small: one query
for the local members and their rule versions, rulesets compiled once per
(user, rules version), and the room facts (member count, power levels,
display names) read only when a rule asks for them; the evaluation is a few
dict lookups per rule. Rows are written only where the actions notify;
``event_push_actions`` (the pushers read it too) then answers unread counts
and GET /notifications with one indexed range query. The SQL is the push
rule store's (``storage/push_rules.py``); this module decides.

A chain of plain messages persisted together (``MessageBatch``) is
evaluated as a whole: the members, their compiled rules and the room's
facts are read once for the batch (bench send depends on it); the batches
of several rooms committed together (``EventStore.persist_event_groups``)
read the members of all of them in one query.

Members who never changed a rule share one verdict per event
(``_names_user``): in a room of 1,000 members, one evaluation per message
plus one per member the message names, instead of 1,000.

The actions computed are also kept in memory per event ID
(``recent_actions``) so the sync fast path (``sync/handler.py``) carries
unread counts forward without the database, in agreement with the full
builder, which reads the table. The hook fills that memory before the
commit, so it is complete for every event the fast path can see.

Events that never notify: outliers (but the invite of a local user to a
room we do not hold), rejected events, backfilled history (stream position
at or below zero), events of a room where no other local user is joined.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from homeserver.glob import fold
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
from homeserver.push.rules import localpart_of
from homeserver.storage.cache import LruCache
from homeserver.storage.push_rules import MAX_CACHED_RULESETS, PushRuleStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from homeserver.events.model import Event
    from homeserver.storage.database import Txn
    from homeserver.storage.event_hooks import MessageBatch

logger = logging.getLogger(__name__)

MAX_RECENT_EVENTS = 50_000

# a local member as the evaluation sees them: (user ID, member event ID,
# rules version or None, ignore list JSON or None)
Member = tuple[Any, ...]


def thread_of(event: "Event") -> str | None:
    relates = event.content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return root
    return None


def _is_invite(event: "Event") -> bool:
    return (event.type == "m.room.member" and event.content.get("membership") == "invite"
            and isinstance(event.state_key, str) and event.state_key != event.sender)


def _ignores(ignore_list: str, sender: str) -> bool:
    """Whether an ``m.ignored_user_list`` content (JSON text) names ``sender``."""
    if sender not in ignore_list:
        return False
    try:
        ignored = json.loads(ignore_list).get("ignored_users")
    except (ValueError, AttributeError):
        return False
    return isinstance(ignored, dict) and sender in ignored


def _recipients(members: list[Member], sender: str) -> list[Member]:
    # not the sender; and nothing from a user somebody ignores notifies them
    # (their client hides it: a count it could not clear would stay unread)
    return [m for m in members
            if m[0] != sender and (m[3] is None or not _ignores(m[3], sender))]


def _mentioned(event: PushEvent) -> frozenset[Any]:
    """The values of the event's ``m.mentions.user_ids`` (the hashable ones)."""
    found = event.flat.get("content.m\\.mentions.user_ids")
    if not isinstance(found, list):
        return frozenset()
    return frozenset(v for v in found if isinstance(v, str | int | bool | None))


def _names_user(event: "Event", push_event: PushEvent, mentions: frozenset[Any],
                body: str | None, user_id: str, display_name: Callable[[], str | None]) -> bool:
    """Whether a rule of the server's defaults that is the user's own could
    match ``event`` for ``user_id`` (a superset: a substring where the rule
    wants a word). The defaults of two users differ only in those rules
    (``push/rules.py``: ``USER_ID``, ``LOCALPART``, and the display name), so
    the users with the default rules whom an event does not name share
    one verdict: a room of 1,000 members costs one evaluation per message,
    and one more per user it mentions."""
    if event.state_key == user_id:  # .m.rule.invite_for_me and the like
        return True
    if user_id in mentions:  # .m.rule.is_user_mention
        return True
    if push_event.has_mentions or body is None:
        return False  # the legacy body rules are skipped, or have nothing to match
    # .m.rule.contains_user_name: the localpart as a glob (a * or ? in it: be safe)
    localpart = localpart_of(user_id)
    if "*" in localpart or "?" in localpart or fold(localpart) in body:
        return True
    # .m.rule.contains_display_name
    name = display_name()
    return name is not None and name != "" and fold(name) in body


class _Room:
    """The room facts the rules may ask for, each read at most once per
    event, or per batch of plain messages (which change no state)."""

    def __init__(self, txn: "Txn", room_nid: int, count: int | None = None) -> None:
        self.txn = txn
        self.room_nid = room_nid
        self._count = count
        self._levels: tuple[dict[str, Any] | None, frozenset[str]] | None = None

    def member_count(self) -> int:
        if self._count is None:
            self._count = PushRuleStore.joined_count_txn(self.txn, self.room_nid)
        return self._count

    def _power(self) -> tuple[dict[str, Any] | None, frozenset[str]]:
        if self._levels is None:
            self._levels = PushRuleStore.power_state_txn(self.txn, self.room_nid)
        return self._levels

    def power_of(self, user_id: str) -> int:
        levels, creators = self._power()
        return user_power_level(levels, user_id, creators)

    def notification_power(self, key: str) -> int:
        return notification_level(self._power()[0], key)


class PushActions:
    """Evaluates push rules for new events and remembers recent verdicts.

    Its caches are touched by the persist hooks on database threads, hence
    the locked LRUs.
    """

    def __init__(self, push_rules: PushRuleStore) -> None:
        self.push_rules = push_rules
        # (user, rules version) -> the ruleset compiled for evaluation
        self._compiled: LruCache[tuple[str, str], Any] = LruCache(MAX_CACHED_RULESETS)
        # event ID -> {local user ID: (notify, highlight)} for the sync fast path
        self._recent: LruCache[str, dict[str, tuple[int, int]]] = LruCache(MAX_RECENT_EVENTS)
        # member event ID -> display name ("" for none)
        self._names: LruCache[str, str] = LruCache(MAX_CACHED_RULESETS)

    def recent_actions(self, event_id: str) -> dict[str, tuple[int, int]] | None:
        """{local user: (notify, highlight)} computed for the event when it was
        persisted by this process (None: not known here; read the table)."""
        found: dict[str, tuple[int, int]] | None = self._recent.get(event_id)
        return found

    def remember_actions(self, event_id: str, found: dict[str, tuple[int, int]]) -> None:
        """The verdicts another process computed for the event (replication)."""
        self._recent.merge(event_id, found)

    # -- the persist hooks ---------------------------------------------------

    def persist_hook_txn(self, txn: "Txn", event: "Event", event_nid: int) -> None:
        """One event just inserted: its push actions."""
        row = PushRuleStore.event_row_txn(txn, event_nid)
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
            PushRuleStore.delete_actions_of_txn(txn, event.redacts, int(room_nid))
        members = PushRuleStore.local_members_txn(txn, int(room_nid))
        if _is_invite(event):
            assert event.state_key is not None
            invitee = PushRuleStore.local_invitee_txn(txn, event.state_key)
            if invitee is not None:
                members = [m for m in members if m[0] != invitee[0]]
                members.append((invitee[0], event.event_id, invitee[1], invitee[2]))
        self._evaluate_and_record_txn(txn, _Room(txn, int(room_nid)),
                                      [(event, event_nid, int(stream))], members)

    def batch_hook_txn(self, txn: "Txn", batches: "Sequence[MessageBatch]") -> None:
        """Plain messages of one room or several (one batch per room): the
        members of all the rooms and their member counts are read in one
        query each, their rules and the room's other facts once per batch,
        and the rows written in one statement."""
        todo = [(batch.room_nid, events) for batch in batches
                if (events := [(e, nid, stream) for e, nid, stream in batch.events
                               if e.rejected_reason is None and stream > 0])]
        if not todo:
            return
        room_nids = [room_nid for room_nid, _ in todo]
        members = PushRuleStore.local_members_many_txn(txn, room_nids)
        # the one-to-one rule asks for it in nearly every room with members
        counts = PushRuleStore.joined_counts_txn(
            txn, [r for r in room_nids if len(members[r]) > 1])
        rows: list[tuple[Any, ...]] = []
        for room_nid, events in todo:
            rows += self._evaluate_txn_rows(txn, _Room(txn, room_nid, counts.get(room_nid)),
                                            events, members[room_nid])
        PushRuleStore.insert_actions_txn(txn, rows)

    def remote_invite_txn(self, txn: "Txn", event: "Event", event_nid: int) -> None:
        """The invite of a local user to a room we do not hold (stored as an
        outlier, so the other persist hooks do not run for it)."""
        self.persist_hook_txn(txn, event, event_nid)

    # -- evaluation -----------------------------------------------------------

    def _evaluate_and_record_txn(self, txn: "Txn", room: _Room,
                                 events: list[tuple["Event", int, int]],
                                 members: list[Member]) -> None:
        PushRuleStore.insert_actions_txn(
            txn, self._evaluate_txn_rows(txn, room, events, members))

    def _evaluate_txn_rows(self, txn: "Txn", room: _Room,
                           events: list[tuple["Event", int, int]],
                           members: list[Member]) -> list[tuple[Any, ...]]:
        """The ``event_push_actions`` rows of ``events`` (remembered in
        ``recent_actions`` too)."""
        rows: list[tuple[Any, ...]] = []
        for event, event_nid, stream in events:
            recipients = _recipients(members, event.sender)
            if not recipients:
                self._recent.merge(event.event_id, {})
                continue
            try:
                found, computed = self._evaluate_txn(txn, event, event_nid, room, stream,
                                                     recipients)
            except Exception:  # odd content must never fail the persist
                logger.exception("push rule evaluation failed for %s", event.event_id)
                continue
            rows += found
            self._recent.merge(event.event_id, computed)
        return rows

    def _compiled_txn(self, txn: "Txn", user_id: str,
                      version: str | None) -> tuple[CompiledRule, ...]:
        key = (user_id, version or "")
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_ruleset(self.push_rules.ruleset_txn(txn, user_id, version))
            self._compiled.put(key, compiled)
        result: tuple[CompiledRule, ...] = compiled
        return result

    def _display_names_txn(self, txn: "Txn", member_events: dict[str, str]) -> dict[str, str]:
        """User -> display name from their member events (cached by event ID)."""
        out: dict[str, str] = {}
        missing: list[str] = []
        for user_id, event_id in member_events.items():
            name = self._names.get(event_id)
            if name is None:
                missing.append(event_id)
            else:
                out[user_id] = name
        for event_id, state_key, name in PushRuleStore.member_names_txn(txn, missing):
            self._names.put(event_id, name)
            if state_key is not None:
                out[state_key] = name
        return out

    def _evaluate_txn(self, txn: "Txn", event: "Event", event_nid: int, room: _Room,
                      stream: int, members: list[Member],
                      ) -> tuple[list[tuple[Any, ...]], dict[str, tuple[int, int]]]:
        room_nid = room.room_nid
        push_event = PushEvent(event.json)
        member_events = {str(m[0]): str(m[1]) for m in members}
        names: dict[str, str] | None = None

        def name_of(user_id: str) -> Callable[[], str | None]:
            def get() -> str | None:
                nonlocal names
                if names is None:
                    names = self._display_names_txn(txn, member_events)
                return names.get(user_id) or None
            return get

        def sender_power() -> int:
            return room.power_of(event.sender)

        # an edit, reaction or reference counts in the thread of the event
        # it points at, not in the main timeline (spec, threading)
        thread_id = thread_of(event) or PushRuleStore.target_thread_txn(txn, event, room_nid)
        rows: list[tuple[Any, ...]] = []
        computed: dict[str, tuple[int, int]] = {}
        # the verdict of every user with the default rules whom the event
        # does not name (see _names_user): computed once, for the first
        shared: tuple[tuple[int, int], str | None] | None = None
        mentions = _mentioned(push_event)
        body = fold(push_event.body) if push_event.body is not None else None
        for user_id, _, version, _ in members:
            if version is None and shared is not None and not _names_user(
                    event, push_event, mentions, body, user_id, name_of(user_id)):
                verdict, text = shared
            else:
                rules = self._compiled_txn(txn, user_id, version)
                ctx = RoomContext(user_id=user_id, member_count=room.member_count,
                                  display_name=name_of(user_id), sender_power=sender_power,
                                  notification_power=room.notification_power)
                _, actions = evaluate_compiled(rules, push_event, ctx)
                notify = notifies(actions)
                verdict = (int(notify), int(notify and highlights(actions)))
                text = json.dumps(actions) if notify else None
                if version is None and shared is None and not _names_user(
                        event, push_event, mentions, body, user_id, name_of(user_id)):
                    shared = verdict, text
            computed[user_id] = verdict
            if verdict[0]:
                rows.append((event_nid, room_nid, user_id, stream, 1, verdict[1], thread_id,
                             text))
        return rows, computed
