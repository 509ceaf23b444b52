"""The properties of every room version, in one table.

Everything that differs between room versions is a field of ``RoomVersion``;
code asks the version (``if rv.knock_join_rule: ...``) and never compares
version strings. Spec: content/rooms/v1.md ... v12.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum


class EventIdFormat(Enum):
    # v1, v2: "$localpart:origin", chosen by the sending server
    ASSIGNED = 1
    # v3: "$" + unpadded standard base64 of the reference hash
    REFERENCE_HASH_BASE64 = 2
    # v4+: "$" + unpadded URL-safe base64 of the reference hash
    REFERENCE_HASH_URLSAFE = 3


class StateResAlgorithm(Enum):
    V1 = 1
    V2 = 2
    # v12: state resolution v2 with the changes of MSC4297 (the conflicted
    # state subgraph joins the full conflicted set, and the first iterative
    # auth checks start from an empty state)
    V2_1 = 3


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    event_id_format: EventIdFormat
    state_res: StateResAlgorithm
    # which version's redaction algorithm applies: 1, 6, 8, 9 or 11
    redaction_rules: int
    # v5+: signing keys must be valid (valid_until_ts) when the event was sent
    enforce_key_validity: bool = False
    # v1-v5: m.room.aliases has its own auth rule
    special_case_aliases_auth: bool = True
    # v1-v2: the auth rules check m.room.redaction against the "redact" level
    # (or a matching event ID domain); v3+ defer that to handling redactions
    redaction_auth_rule: bool = True
    # v6+: canonical JSON is strict (integers only, in [-(2**53)+1, 2**53-1])
    strict_canonicaljson: bool = False
    # v6+: the "notifications" key of power levels is checked like the others
    limit_notifications_power_levels: bool = False
    # v7+: the "knock" join rule and membership
    knock_join_rule: bool = False
    # v8+: the "restricted" join rule (join_authorised_via_users_server)
    restricted_join_rule: bool = False
    # v10+: the "knock_restricted" join rule
    knock_restricted_join_rule: bool = False
    # v10+: power-level values must be integers, not strings
    enforce_int_power_levels: bool = False
    # v11+: m.room.create has no "creator"; the sender is the creator
    implicit_room_creator: bool = False
    # v12+: the creators (sender + additional_creators) have infinite power
    privileged_creators: bool = False
    # v12+: the room ID is "!" + the create event's reference hash, and the
    # create event carries no room_id
    room_id_from_create_event: bool = False
    # v11+: the 255-byte limits on type/state_key/sender/room_id/event_id are
    # strict. Before, Synapse kept events within 255 code points but over 255
    # bytes as rejected rather than dropping them (so rooms do not split).
    strict_event_byte_limits: bool = False

    @property
    def event_ids_are_hashes(self) -> bool:
        return self.event_id_format is not EventIdFormat.ASSIGNED


_V1 = RoomVersion("1", EventIdFormat.ASSIGNED, StateResAlgorithm.V1, redaction_rules=1)
_V2 = replace(_V1, identifier="2", state_res=StateResAlgorithm.V2)
_V3 = replace(_V2, identifier="3", event_id_format=EventIdFormat.REFERENCE_HASH_BASE64,
              redaction_auth_rule=False)
_V4 = replace(_V3, identifier="4", event_id_format=EventIdFormat.REFERENCE_HASH_URLSAFE)
_V5 = replace(_V4, identifier="5", enforce_key_validity=True)
_V6 = replace(_V5, identifier="6", redaction_rules=6, special_case_aliases_auth=False,
              strict_canonicaljson=True, limit_notifications_power_levels=True)
_V7 = replace(_V6, identifier="7", knock_join_rule=True)
_V8 = replace(_V7, identifier="8", redaction_rules=8, restricted_join_rule=True)
_V9 = replace(_V8, identifier="9", redaction_rules=9)
_V10 = replace(_V9, identifier="10", knock_restricted_join_rule=True,
               enforce_int_power_levels=True)
_V11 = replace(_V10, identifier="11", redaction_rules=11, implicit_room_creator=True,
               strict_event_byte_limits=True)
_V12 = replace(_V11, identifier="12", state_res=StateResAlgorithm.V2_1,
               privileged_creators=True, room_id_from_create_event=True)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    rv.identifier: rv for rv in (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12)
}

# What Synapse creates rooms with today; configurable (default_room_version).
DEFAULT_ROOM_VERSION = "12"
