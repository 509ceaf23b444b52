"""The redaction algorithm of every room version.

A redacted event keeps only the keys that the protocol needs (the DAG, the
hashes and signatures, the auth-relevant content); signatures and reference
hashes are computed over this form, so a single wrong key here changes event
IDs and breaks federation. ``RoomVersion.redaction_rules`` names the version
whose rules apply; the rules are, from content/rooms/:

- 1 (v1-v5, fragments/v1-redactions.md): the base rules, including
  ``m.room.aliases`` keeping ``aliases``.
- 6 (v6, v7, fragments/v6-redactions.md): ``m.room.aliases`` loses its special case.
- 8 (v8, rooms/v8.md): ``m.room.join_rules`` also keeps ``allow``.
- 9 (v9, v10, fragments/v9-redactions.md): ``m.room.member`` also keeps
  ``join_authorised_via_users_server``.
- 11 (v11+, fragments/v11-redactions.md): top-level ``origin``, ``membership``
  and ``prev_state`` are no longer kept; ``m.room.create`` keeps all its content;
  power levels keep ``invite``; ``m.room.redaction`` keeps ``content.redacts``;
  ``m.room.member`` keeps ``third_party_invite.signed``.

The result has no ``unsigned``: the spec strips every key not listed (callers
that serve redacted events to clients add their own ``unsigned`` back).
"""

from __future__ import annotations

import copy
from typing import Any

from homeserver.events.room_versions import RoomVersion

_TOP_LEVEL_V11 = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
})
_TOP_LEVEL_V1 = _TOP_LEVEL_V11 | {"prev_state", "origin", "membership"}

_POWER_LEVELS_V1 = (
    "ban", "events", "events_default", "kick", "redact", "state_default", "users",
    "users_default",
)

# rules -> event type -> content keys kept. m.room.create in v11 (all keys) and
# m.room.member's nested third_party_invite.signed are handled in code.
_CONTENT_KEYS: dict[int, dict[str, tuple[str, ...]]] = {
    1: {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule",),
        "m.room.power_levels": _POWER_LEVELS_V1,
        "m.room.aliases": ("aliases",),
        "m.room.history_visibility": ("history_visibility",),
    },
    6: {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule",),
        "m.room.power_levels": _POWER_LEVELS_V1,
        "m.room.history_visibility": ("history_visibility",),
    },
    8: {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": _POWER_LEVELS_V1,
        "m.room.history_visibility": ("history_visibility",),
    },
    9: {
        "m.room.member": ("membership", "join_authorised_via_users_server"),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": _POWER_LEVELS_V1,
        "m.room.history_visibility": ("history_visibility",),
    },
    11: {
        "m.room.member": ("membership", "join_authorised_via_users_server"),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": _POWER_LEVELS_V1 + ("invite",),
        "m.room.history_visibility": ("history_visibility",),
        "m.room.redaction": ("redacts",),
    },
}


def redact(event: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """The redacted form of the PDU ``event`` (a new dict; the input is not touched)."""
    rules = room_version.redaction_rules
    if rules not in _CONTENT_KEYS:
        raise ValueError(f"unknown redaction rules {rules!r}")
    top_level = _TOP_LEVEL_V11 if rules >= 11 else _TOP_LEVEL_V1
    out = {k: copy.deepcopy(v) for k, v in event.items() if k in top_level}

    event_type = event.get("type")
    content = event.get("content")
    if not isinstance(content, dict):
        content = {}
    new_content: dict[str, Any] = {}
    if rules >= 11 and event_type == "m.room.create":
        new_content = copy.deepcopy(content)
    else:
        kept = _CONTENT_KEYS[rules].get(event_type) if isinstance(event_type, str) else None
        for key in kept or ():
            if key in content:
                new_content[key] = copy.deepcopy(content[key])
        if rules >= 11 and event_type == "m.room.member":
            # Only `signed` survives, but the (possibly empty) object stays, as
            # Synapse and Conduit do: the reference hash must agree with theirs.
            tpi = content.get("third_party_invite")
            if isinstance(tpi, dict):
                new_content["third_party_invite"] = (
                    {"signed": copy.deepcopy(tpi["signed"])} if "signed" in tpi else {})
    out["content"] = new_content
    return out
