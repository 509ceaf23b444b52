"""The push rule evaluator: which actions a user's rules give an event. Pure.

``PushEvent`` prepares what every user's evaluation reads of one event once
(the event flattened to dot-separated keys, with ``.`` and ``\\`` in a key
escaped as the spec's appendix says; the body; whether it has ``m.mentions``),
so evaluating a room of many users costs a few dict lookups per rule.
``RoomContext`` carries what depends on the room and the user (member count,
display name, power levels); the caller may compute those lazily.

Semantics, per the spec's push module:
- ``event_match``: case-insensitive glob (``*``, ``?``) on a string value,
  over the whole value, except ``content.body``, where it may match any
  substring that starts and ends at a word boundary (anything outside
  ``[A-Za-z0-9_]``, or the ends). Absent or non-string: no match.
- ``event_property_is`` / ``event_property_contains``: exact, typed equality
  (``true`` is not ``1``) on non-compound values.
- ``contains_display_name``: the user's display name in the room, as a word
  in ``content.body``.
- ``room_member_count``: ``is`` = ``[==|<|>|<=|>=]N`` over joined members.
- ``sender_notification_permission``: the sender's power level reaches
  ``notifications.<key>`` (default 50) of ``m.room.power_levels``.
- Unknown or malformed conditions never match (the rule is as if disabled).
- An event with ``m.mentions`` skips the legacy body-mention rules (MSC3952).
- ``dont_notify`` and ``coalesce`` are stripped from actions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeserver.glob import compile_glob, contains_word
from homeserver.push.rules import KINDS, LEGACY_MENTION_RULES

MAX_SAFE_INT = 2**53 - 1
_ABSENT = object()
_COUNT_RE = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")
_HISTORICAL_ACTIONS = ("dont_notify", "coalesce")


def escape_key(key: str) -> str:
    return key.replace("\\", "\\\\").replace(".", "\\.")


def flatten(obj: dict[str, Any], prefix: str = "",
            out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Dot-separated path -> value for every leaf (non-object) of ``obj``."""
    if out is None:
        out = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            continue
        path = prefix + escape_key(key)
        if isinstance(value, dict):
            flatten(value, path + ".", out)
        else:
            out[path] = value
    return out


def _is_simple(value: Any) -> bool:
    """A non-compound canonical JSON value."""
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -MAX_SAFE_INT <= value <= MAX_SAFE_INT


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def glob_matches(pattern: str, value: str, words: bool = False) -> bool:
    """The push glob (case-insensitive ``*`` and ``?``) on the whole value, or
    (``words``) on any substring bounded by word boundaries. Rules are the
    user's to write and bodies the sender's, so the matcher is one that
    cannot backtrack (``homeserver/glob.py``)."""
    return compile_glob(pattern, True, True).matches(value, words=words)


class PushEvent:
    """One event as every user's evaluation reads it."""

    def __init__(self, event_json: dict[str, Any]) -> None:
        self.flat = flatten(event_json)
        content = event_json.get("content")
        self.content: dict[str, Any] = content if isinstance(content, dict) else {}
        body = self.content.get("body")
        self.body: str | None = body if isinstance(body, str) else None
        self.has_mentions = "m.mentions" in self.content
        room_id = event_json.get("room_id")
        sender = event_json.get("sender")
        self.room_id = room_id if isinstance(room_id, str) else ""
        self.sender = sender if isinstance(sender, str) else ""
        # condition -> answer, for conditions that do not depend on the user
        # (condition_matches); a PushEvent serves the users of one room state
        self.memo: dict[tuple[Any, ...], bool] = {}
        # the same for whole rules (evaluate_compiled)
        self.rule_memo: dict[tuple[Any, ...], bool] = {}


def user_power_level(power_levels: dict[str, Any] | None, user_id: str,
                     creators: frozenset[str] = frozenset()) -> int:
    """The user's power level (no power levels event: creators 100, others 0)."""
    if power_levels is None:
        return 100 if user_id in creators else 0
    users = power_levels.get("users")
    if isinstance(users, dict) and user_id in users:
        return _as_int(users[user_id], 0)
    return _as_int(power_levels.get("users_default"), 0)


def notification_level(power_levels: dict[str, Any] | None, key: str) -> int:
    notifications = (power_levels or {}).get("notifications")
    if isinstance(notifications, dict) and key in notifications:
        return _as_int(notifications[key], 50)
    return 50


def _as_int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):  # older room versions allow stringy levels
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


@dataclass
class RoomContext:
    """What the rules read of the room for one user. The callables let the
    caller read the database only when a rule needs the answer."""

    user_id: str
    member_count: Callable[[], int] = lambda: 0
    display_name: Callable[[], str | None] = lambda: None
    # the sender's power level, and the level a notification kind needs
    sender_power: Callable[[], int] = lambda: 0
    notification_power: Callable[[str], int] = lambda key: 50


def member_count_matches(spec: Any, count: int) -> bool:
    if not isinstance(spec, str):
        return False
    m = _COUNT_RE.match(spec)
    if m is None:
        return False
    op, n = m.group(1) or "==", int(m.group(2))
    if op == "==":
        return count == n
    if op == "<":
        return count < n
    if op == ">":
        return count > n
    if op == "<=":
        return count <= n
    return count >= n


def condition_matches(cond: Any, event: PushEvent, ctx: RoomContext) -> bool:
    """Whether ``cond`` holds. Every condition but ``contains_display_name``
    gives the same answer for every user of the event (the room facts are
    the same for all of them), so its answer is kept on the ``PushEvent``:
    a room of many users with similar rules costs one dict lookup per
    condition per user."""
    if not isinstance(cond, dict):
        return False
    kind = cond.get("kind")
    if kind == "contains_display_name":
        return _condition(kind, cond, event, ctx)
    value = cond.get("value")
    try:
        memo_key = (kind, cond.get("key"), cond.get("pattern"), cond.get("is"),
                    type(value).__name__, value)
        found = event.memo.get(memo_key)
    except TypeError:  # an unhashable value: no memo
        return _condition(kind, cond, event, ctx)
    if found is None:
        found = event.memo[memo_key] = _condition(kind, cond, event, ctx)
    return found


def _condition(kind: Any, cond: dict[str, Any], event: PushEvent, ctx: RoomContext) -> bool:
    if kind == "event_match":
        key, pattern = cond.get("key"), cond.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = event.flat.get(key)
        if not isinstance(value, str):
            return False
        return glob_matches(pattern, value, words=key == "content.body")
    if kind == "event_property_is":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return False
        value = event.flat.get(key, _ABSENT)
        return value is not _ABSENT and _is_simple(value) and _same(value, cond["value"])
    if kind == "event_property_contains":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return False
        values = event.flat.get(key)
        if not isinstance(values, list):
            return False
        wanted = cond["value"]
        return any(_is_simple(v) and _same(v, wanted) for v in values)
    if kind == "contains_display_name":
        if event.body is None:
            return False
        name = ctx.display_name()
        if not name:
            return False
        return contains_word(name, event.body)
    if kind == "room_member_count":
        return member_count_matches(cond.get("is"), ctx.member_count())
    if kind == "sender_notification_permission":
        key = cond.get("key")
        if not isinstance(key, str):
            return False
        return ctx.sender_power() >= ctx.notification_power(key)
    return False


def rule_matches(kind: str, rule: dict[str, Any], event: PushEvent, ctx: RoomContext) -> bool:
    if kind == "content":
        pattern = rule.get("pattern")
        return isinstance(pattern, str) and event.body is not None \
            and glob_matches(pattern, event.body, words=True)
    if kind == "room":
        return rule.get("rule_id") == event.room_id
    if kind == "sender":
        return rule.get("rule_id") == event.sender
    conditions = rule.get("conditions") or []
    if not isinstance(conditions, list):
        return False
    return all(condition_matches(c, event, ctx) for c in conditions)


def clean_actions(actions: Any) -> list[Any]:
    if not isinstance(actions, list):
        return []
    return [a for a in actions if a not in _HISTORICAL_ACTIONS]


@dataclass(frozen=True)
class CompiledRule:
    """An enabled rule, ready for ``evaluate_compiled``. ``memo_key`` names
    everything its answer depends on when that is the same for every user
    of an event (all but ``contains_display_name``): users whose rules
    share a rule (the defaults, mostly) share its answer for an event."""

    rule_id: Any
    kind: str
    rule: dict[str, Any]
    actions: list[Any]
    legacy_mention: bool
    memo_key: tuple[Any, ...] | None


def _condition_key(cond: Any) -> tuple[Any, ...] | None:
    if not isinstance(cond, dict) or cond.get("kind") == "contains_display_name":
        return None
    value = cond.get("value")
    key = (cond.get("kind"), cond.get("key"), cond.get("pattern"), cond.get("is"),
           type(value).__name__, value)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _rule_key(kind: str, rule: dict[str, Any]) -> tuple[Any, ...] | None:
    if kind == "content":
        pattern = rule.get("pattern")
        return ("content", pattern) if isinstance(pattern, str) else None
    if kind in ("room", "sender"):
        return (kind, rule.get("rule_id"))
    conditions = rule.get("conditions") or []
    if not isinstance(conditions, list):
        return None
    keys = [_condition_key(c) for c in conditions]
    if any(k is None for k in keys):
        return None
    return ("conditions", *keys)


def compile_ruleset(ruleset: dict[str, list[dict[str, Any]]]) -> tuple[CompiledRule, ...]:
    """The enabled rules in evaluation order (kinds in the spec's order)."""
    out = []
    for kind in KINDS:
        for rule in ruleset.get(kind, ()):
            if not rule.get("enabled", True):
                continue
            rule_id = rule.get("rule_id")
            out.append(CompiledRule(rule_id, kind, rule, clean_actions(rule.get("actions")),
                                    rule_id in LEGACY_MENTION_RULES, _rule_key(kind, rule)))
    return tuple(out)


def evaluate_compiled(rules: tuple[CompiledRule, ...], event: PushEvent,
                      ctx: RoomContext) -> tuple[str | None, list[Any]]:
    """``evaluate`` over a compiled ruleset: a rule another user of the event
    already tried costs one dict lookup."""
    memo = event.rule_memo
    for compiled in rules:
        if compiled.legacy_mention and event.has_mentions:
            continue
        key = compiled.memo_key
        if key is None:
            matched = rule_matches(compiled.kind, compiled.rule, event, ctx)
        else:
            found = memo.get(key)
            if found is None:
                found = memo[key] = rule_matches(compiled.kind, compiled.rule, event, ctx)
            matched = found
        if matched:
            return compiled.rule_id, list(compiled.actions)
    return None, []


def evaluate(ruleset: dict[str, list[dict[str, Any]]], event: PushEvent,
             ctx: RoomContext) -> tuple[str | None, list[Any]]:
    """(ID of the first enabled rule that matches, its actions); (None, [])
    when none does."""
    return evaluate_compiled(compile_ruleset(ruleset), event, ctx)


def notifies(actions: list[Any]) -> bool:
    return "notify" in actions


def highlights(actions: list[Any]) -> bool:
    for action in actions:
        if isinstance(action, dict) and action.get("set_tweak") == "highlight":
            return action.get("value", True) is True
    return False
