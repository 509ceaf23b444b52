"""Push rules: the spec's server-default rule set and how a user's own rules merge with it.

A user's ruleset is five kinds checked in order (override, content, room,
sender, underride). Server-default rules (IDs starting with ``.``) are the
spec's list below, in the spec's order, plus the legacy body-mention rules
(``.m.rule.contains_display_name``, ``.m.rule.roomnotif``,
``.m.rule.contains_user_name``) that clients still expect and Synapse still
serves; the evaluator skips those for an event that carries ``m.mentions``.

Merging (as Synapse does): ``.m.rule.master`` comes before every user
override rule; the user's rules of a kind come before the other defaults of
that kind. A user may change a default rule's ``enabled`` flag and its
``actions``, never delete it.

Rules here are plain dicts in the client's JSON shape. Placeholders
``[the user's Matrix ID]`` / ``[the user's localpart]`` are filled per user
by ``user_defaults``.

A glob a user writes (a content rule's ``pattern``, an ``event_match``
condition's ``pattern``) is refused when ``pattern_problem`` says so: over
``MAX_PATTERN_LENGTH`` characters or more than ``MAX_PATTERN_STARS`` ``*``.
The evaluator's matcher is polynomial regardless (``homeserver/glob.py``),
so rules stored before the cap are harmless; the cap bounds what one rule
costs on every message in the user's rooms.
"""

from __future__ import annotations

import copy
from typing import Any

from homeserver.glob import glob_problem

KINDS = ("override", "content", "room", "sender", "underride")

USER_ID = "[the user's Matrix ID]"
LOCALPART = "[the user's localpart]"

# rules skipped for an event that has an m.mentions property (MSC3952)
LEGACY_MENTION_RULES = frozenset({".m.rule.contains_display_name", ".m.rule.roomnotif",
                                  ".m.rule.contains_user_name"})

MAX_PATTERN_LENGTH = 1000
MAX_PATTERN_STARS = 20


def pattern_problem(pattern: str) -> str | None:
    """Why a push rule glob should be refused; None if it may be stored."""
    return glob_problem(pattern, max_length=MAX_PATTERN_LENGTH, max_stars=MAX_PATTERN_STARS)


_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _rule(rule_id: str, conditions: list[dict[str, Any]], actions: list[Any],
          enabled: bool = True) -> dict[str, Any]:
    return {"rule_id": rule_id, "default": True, "enabled": enabled,
            "conditions": conditions, "actions": actions}


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


MASTER = _rule(".m.rule.master", [], [], enabled=False)

DEFAULT_OVERRIDE: list[dict[str, Any]] = [
    _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
    _rule(".m.rule.invite_for_me",
          [_match("type", "m.room.member"), _match("content.membership", "invite"),
           _match("state_key", USER_ID)],
          ["notify", _SOUND_DEFAULT]),
    _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
    _rule(".m.rule.is_user_mention",
          [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
            "value": USER_ID}],
          ["notify", _SOUND_DEFAULT, _HIGHLIGHT]),
    _rule(".m.rule.contains_display_name", [{"kind": "contains_display_name"}],
          ["notify", _SOUND_DEFAULT, _HIGHLIGHT]),
    _rule(".m.rule.is_room_mention",
          [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
           {"kind": "sender_notification_permission", "key": "room"}],
          ["notify", _HIGHLIGHT]),
    _rule(".m.rule.roomnotif",
          [{"kind": "sender_notification_permission", "key": "room"},
           _match("content.body", "@room")],
          ["notify", _HIGHLIGHT]),
    _rule(".m.rule.tombstone", [_match("type", "m.room.tombstone"), _match("state_key", "")],
          ["notify", _HIGHLIGHT]),
    _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
    _rule(".m.rule.room.server_acl",
          [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
    _rule(".m.rule.suppress_edits",
          [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type",
            "value": "m.replace"}], []),
]

DEFAULT_CONTENT: list[dict[str, Any]] = [
    {"rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True,
     "pattern": LOCALPART, "actions": ["notify", _SOUND_DEFAULT, _HIGHLIGHT]},
]

DEFAULT_UNDERRIDE: list[dict[str, Any]] = [
    _rule(".m.rule.call", [_match("type", "m.call.invite")],
          ["notify", {"set_tweak": "sound", "value": "ring"}]),
    _rule(".m.rule.encrypted_room_one_to_one",
          [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted")],
          ["notify", _SOUND_DEFAULT]),
    _rule(".m.rule.room_one_to_one",
          [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message")],
          ["notify", _SOUND_DEFAULT]),
    _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
    _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
]

# kind -> server-default rules of that kind (master included in override)
DEFAULT_RULES: dict[str, list[dict[str, Any]]] = {
    "override": [MASTER, *DEFAULT_OVERRIDE],
    "content": DEFAULT_CONTENT,
    "room": [],
    "sender": [],
    "underride": DEFAULT_UNDERRIDE,
}
DEFAULT_KIND_OF = {r["rule_id"]: kind for kind, rules in DEFAULT_RULES.items() for r in rules}


def _fill(value: Any, user_id: str, localpart: str) -> Any:
    if isinstance(value, str):
        return value.replace(USER_ID, user_id).replace(LOCALPART, localpart)
    if isinstance(value, list):
        return [_fill(v, user_id, localpart) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, user_id, localpart) for k, v in value.items()}
    return value


def localpart_of(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def user_defaults(user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The server-default rules with the user's ID and localpart filled in."""
    return {kind: [_fill(copy.deepcopy(r), user_id, localpart_of(user_id)) for r in rules]
            for kind, rules in DEFAULT_RULES.items()}


def build_ruleset(user_id: str, user_rules: dict[str, list[dict[str, Any]]],
                  default_overrides: dict[str, tuple[bool | None, list[Any] | None]],
                  ) -> dict[str, list[dict[str, Any]]]:
    """The user's whole ruleset in evaluation order.

    ``user_rules``: kind -> the user's own rules, most important first (dicts
    with rule_id, enabled, actions, and conditions or pattern).
    ``default_overrides``: default rule ID -> (enabled, actions) the user set
    (None: unchanged)."""
    defaults = user_defaults(user_id)
    for rules in defaults.values():
        for rule in rules:
            enabled, actions = default_overrides.get(rule["rule_id"], (None, None))
            if enabled is not None:
                rule["enabled"] = enabled
            if actions is not None:
                rule["actions"] = actions
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        own = [dict(r, default=False) for r in user_rules.get(kind, [])]
        if kind == "override":
            out[kind] = defaults[kind][:1] + own + defaults[kind][1:]
        else:
            out[kind] = own + defaults[kind]
    return out


def client_rule(kind: str, rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as GET /pushrules shows it: only the keys its kind has."""
    out = {"rule_id": rule["rule_id"], "default": rule["default"],
           "enabled": rule["enabled"], "actions": rule["actions"]}
    if kind in ("override", "underride"):
        out["conditions"] = rule.get("conditions", [])
    elif kind == "content":
        out["pattern"] = rule.get("pattern", "")
    return out


def client_ruleset(ruleset: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {kind: [client_rule(kind, r) for r in ruleset.get(kind, [])] for kind in KINDS}
