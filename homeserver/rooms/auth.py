"""The authorisation rules of room versions 1-12, and auth events selection.

Spec: content/rooms/v1.md ... v12.md (fragments v1-, v3-, v8-auth-rules; v6,
v7, v10, v11 and v12 spell out their own lists) and server-server-api.md
("Auth events selection"). Every version difference is a field of
``RoomVersion``; nothing here compares version strings.

Three entry points, all pure:

- ``auth_types_for_event`` - which ``(type, state_key)`` pairs an event's
  ``auth_events`` should reference;
- ``check_auth_events_list`` - the rules about the ``auth_events`` list itself
  (duplicates, unexpected entries, rejected entries, wrong room): needs the
  list, so it is separate;
- ``check_auth_rules`` - everything else, against a state map. Pass either the
  event's auth events keyed by ``(type, state_key)`` or the room state at the
  event: the rules only look up the pairs ``auth_types_for_event`` names.

In v12 the create event is not among an event's ``auth_events`` (the room ID
names it), but the rules still need it: callers put it in the map under
``("m.room.create", "")`` all the same.

Not checked here, because they need keys or fetched events: signatures
(including v8+ "If the event is not validly signed by the homeserver of the
user ID denoted by [join_authorised_via_users_server], reject", which belongs
to signature verification), and the redaction itself in v3+ (handled when a
redaction is applied). Third-party invite signatures are checked here: the
public keys sit in the ``m.room.third_party_invite`` event, so it is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.errors import Codes, MatrixError
from homeserver.events.identifiers import is_valid_user_id, room_id_from_create_event_id
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.rooms.power_levels import (
    CREATE,
    NAMED_LEVEL_DEFAULTS,
    POWER_LEVELS,
    PowerLevel,
    StateMap,
    creators,
    get_named_level,
    get_send_level,
    get_user_power_level,
    parse_level,
)

__all__ = [
    "AuthError",
    "auth_types_for_event",
    "check_auth_events_list",
    "check_auth_rules",
    "get_send_level",
    "get_user_power_level",
]

MEMBER: Final = "m.room.member"
JOIN_RULES: Final = ("m.room.join_rules", "")
THIRD_PARTY_INVITE: Final = "m.room.third_party_invite"
AUTHORISING_USER: Final = "join_authorised_via_users_server"


class AuthError(MatrixError):
    """The event is not allowed by the authorisation rules (403 M_FORBIDDEN)."""

    def __init__(self, msg: str) -> None:
        super().__init__(403, Codes.FORBIDDEN, msg)


def _domain(identifier: str) -> str:
    """The server part of a user/room/v1-v2 event ID ("" if there is none).

    Unlike ``identifiers.server_name_of`` it does not validate: the rules only
    compare servers, and IDs were validated with the PDU.
    """
    return identifier.split(":", 1)[1] if ":" in identifier else ""


# ---------------------------------------------------------------------------
# Auth events selection


def auth_types_for_event(room_version: RoomVersion,
                         event: Event | Mapping[str, Any]) -> set[tuple[str, str]]:
    """The ``(type, state_key)`` pairs an event's auth events are chosen from
    (server-server API, "Auth events selection"). Takes an ``Event`` or the
    JSON of one still being built."""
    ev = event.json if isinstance(event, Event) else event
    etype = ev.get("type")
    if etype == "m.room.create":
        return set()
    sender = ev.get("sender")
    types: set[tuple[str, str]] = {POWER_LEVELS}
    if isinstance(sender, str):
        types.add((MEMBER, sender))
    if not room_version.room_id_from_create_event:
        types.add(CREATE)
    if etype != MEMBER:
        return types
    content = ev.get("content")
    if not isinstance(content, dict):
        content = {}
    state_key = ev.get("state_key")
    if isinstance(state_key, str):
        types.add((MEMBER, state_key))
    membership = content.get("membership")
    if membership in ("join", "invite", "knock"):
        types.add(JOIN_RULES)
    if membership == "invite":
        tpi = content.get("third_party_invite")
        signed = tpi.get("signed") if isinstance(tpi, dict) else None
        token = signed.get("token") if isinstance(signed, dict) else None
        if isinstance(token, str):
            types.add((THIRD_PARTY_INVITE, token))
    if membership == "join" and room_version.restricted_join_rule:
        authoriser = content.get(AUTHORISING_USER)
        if isinstance(authoriser, str):
            types.add((MEMBER, authoriser))
    return types


def check_auth_events_list(event: Event, auth_events: Iterable[Event]) -> None:
    """The rules on the ``auth_events`` list itself ("Considering the event's
    auth_events", rule 2, or 3 in v12). ``auth_events`` are the events the
    event's ``auth_events`` field references, fetched."""
    rv = event.room_version
    if event.type == "m.room.create":
        return
    expected = auth_types_for_event(rv, event)
    seen: set[tuple[str, str]] = set()
    for ae in auth_events:
        if not ae.is_state():
            raise AuthError(f"auth event {ae.event_id} is not a state event")
        key = ae.state_pair()
        if key in seen:
            raise AuthError(f"auth_events has more than one {key}")
        seen.add(key)
        if key not in expected:
            # v12: "m.room.create MUST NOT be selected" lands here too
            raise AuthError(f"auth event {ae.event_id} {key} is not one the event needs")
        if ae.rejected_reason is not None:
            raise AuthError(f"auth event {ae.event_id} was rejected")
        if ae.room_id != event.room_id:
            raise AuthError(f"auth event {ae.event_id} is from another room")
    if not rv.room_id_from_create_event and CREATE not in seen:
        raise AuthError("auth_events has no m.room.create event")


# ---------------------------------------------------------------------------
# The rules


def check_auth_rules(event: Event, auth_events: StateMap) -> None:
    """Raise ``AuthError`` unless ``event`` passes the authorisation rules of
    its room version against the state ``auth_events``."""
    rv = event.room_version
    if event.type == "m.room.create":
        _check_create(event)
        return

    create = auth_events.get(CREATE)
    if create is None:
        raise AuthError("no m.room.create event in auth events")
    if create.rejected_reason is not None:
        raise AuthError("the m.room.create event was rejected")
    if rv.room_id_from_create_event:
        # v12 rule 2: the room ID is the create event's ID with "!" for "$"
        if not create.event_id.startswith("$") or (
                event.room_id != room_id_from_create_event_id(create.event_id)):
            raise AuthError("room_id is not the ID of the room's m.room.create event")
    # Only the pairs the rules consult: the map may be the whole room state.
    for key in auth_types_for_event(rv, event) | {CREATE}:
        ae = auth_events.get(key)
        if ae is None:
            continue
        if ae.rejected_reason is not None:
            raise AuthError(f"auth event {ae.event_id} was rejected")
        if key != CREATE or not rv.room_id_from_create_event:
            if ae.room_id != event.room_id:
                raise AuthError(f"auth event {ae.event_id} is from another room")

    if create.content.get("m.federate", True) is False:
        if _domain(event.sender) != _domain(create.sender):
            raise AuthError("room is not federated and the sender is on another server")

    if event.type == "m.room.aliases" and rv.special_case_aliases_auth:
        # v1-v5: a server may always set its own aliases, joined or not
        if event.state_key is None:
            raise AuthError("m.room.aliases has no state_key")
        if event.state_key != _domain(event.sender):
            raise AuthError("m.room.aliases state_key is not the sender's server")
        return

    if event.type == MEMBER:
        _check_membership(event, auth_events)
        return

    _require_joined(event.sender, auth_events, "sender")
    sender_level = get_user_power_level(event.sender, auth_events, rv)

    if event.type == THIRD_PARTY_INVITE:
        if sender_level < get_named_level("invite", auth_events, rv):
            raise AuthError("sender's power level is below the invite level")
        return

    required = get_send_level(event.type, event.state_key, auth_events, rv)
    if sender_level < required:
        raise AuthError(f"sending {event.type} needs power level {required}")

    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != event.sender:
        raise AuthError("only the user named by an @-state_key may set it")

    if event.type == "m.room.power_levels":
        _check_power_levels(event, auth_events, sender_level)
        return

    if event.type == "m.room.redaction" and rv.redaction_auth_rule:
        _check_redaction_v1(event, auth_events, sender_level)


def _check_create(event: Event) -> None:
    rv = event.room_version
    if event.json.get("prev_events"):
        raise AuthError("m.room.create has prev_events")
    if rv.room_id_from_create_event:
        if "room_id" in event.json:
            raise AuthError("m.room.create must not have a room_id in this room version")
    elif _domain(event.room_id) != _domain(event.sender) or not _domain(event.sender):
        raise AuthError("m.room.create room_id is not on the sender's server")
    if "room_version" in event.content:
        version = event.content["room_version"]
        if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
            raise AuthError(f"m.room.create has unknown room_version {version!r}")
    if not rv.implicit_room_creator and "creator" not in event.content:
        raise AuthError("m.room.create has no creator")
    if rv.privileged_creators and "additional_creators" in event.content:
        extra = event.content["additional_creators"]
        if not isinstance(extra, list) or not all(
                isinstance(u, str) and is_valid_user_id(u) for u in extra):
            raise AuthError("additional_creators is not a list of valid user IDs")


# --- membership


def _membership_of(user_id: str, auth_events: StateMap) -> str:
    ev = auth_events.get((MEMBER, user_id))
    m = ev.membership if ev is not None else None
    return m if m is not None else "leave"


def _require_joined(user_id: str, auth_events: StateMap, who: str) -> None:
    if _membership_of(user_id, auth_events) != "join":
        raise AuthError(f"{who} {user_id} is not in the room")


def _check_membership(event: Event, auth_events: StateMap) -> None:
    rv = event.room_version
    target = event.state_key
    membership = event.membership
    if target is None or membership is None:
        raise AuthError("m.room.member needs a state_key and content.membership")
    sender = event.sender
    sender_membership = _membership_of(sender, auth_events)
    target_membership = _membership_of(target, auth_events)
    join_rules = auth_events.get(JOIN_RULES)
    # No join rules event: treated as "invite", as Synapse does (the spec's
    # rule list leaves the case to "Otherwise, reject" for a join).
    join_rule = join_rules.content.get("join_rule", "invite") if join_rules else "invite"

    def level(user_id: str) -> PowerLevel:
        return get_user_power_level(user_id, auth_events, rv)

    def named(name: str) -> int:
        return get_named_level(name, auth_events, rv)

    if membership == "join":
        create = auth_events[CREATE]
        prevs = event.prev_event_ids
        if len(prevs) == 1 and prevs[0] == create.event_id:
            # v1-v10 "the creator" (content.creator), v11+ the create sender
            first = create.sender if rv.implicit_room_creator else create.content.get("creator")
            if target == first:
                return
        if sender != target:
            raise AuthError("cannot join on behalf of another user")
        if target_membership == "ban":
            raise AuthError("user is banned from the room")
        if join_rule == "invite" or (rv.knock_join_rule and join_rule == "knock"):
            if target_membership in ("invite", "join"):
                return
            raise AuthError("room is invite-only and the user is not invited")
        if (rv.restricted_join_rule and join_rule == "restricted") or (
                rv.knock_restricted_join_rule and join_rule == "knock_restricted"):
            if target_membership in ("invite", "join"):
                return
            authoriser = event.content.get(AUTHORISING_USER)
            if not isinstance(authoriser, str):
                raise AuthError("restricted join has no join_authorised_via_users_server")
            if _membership_of(authoriser, auth_events) != "join":
                raise AuthError("the authorising user is not in the room")
            if level(authoriser) < named("invite"):
                raise AuthError("the authorising user cannot invite")
            return
        if join_rule == "public":
            return
        raise AuthError(f"join rule {join_rule!r} does not allow joining")

    if membership == "invite":
        if "third_party_invite" in event.content:
            if target_membership == "ban":
                raise AuthError("invitee is banned from the room")
            _check_third_party_invite(event, auth_events)
            return
        if sender_membership != "join":
            raise AuthError("inviter is not in the room")
        if target_membership in ("join", "ban"):
            raise AuthError(f"invitee's membership is already {target_membership!r}")
        if level(sender) >= named("invite"):
            return
        raise AuthError("inviter's power level is below the invite level")

    if membership == "leave":
        if sender == target:
            allowed = {"invite", "join"} | ({"knock"} if rv.knock_join_rule else set())
            if target_membership in allowed:
                return
            raise AuthError(f"cannot leave a room with membership {target_membership!r}")
        if sender_membership != "join":
            raise AuthError("kicker is not in the room")
        sender_level = level(sender)
        if target_membership == "ban" and sender_level < named("ban"):
            raise AuthError("unbanning needs the ban level")
        if sender_level >= named("kick") and level(target) < sender_level:
            return
        raise AuthError("kicking needs the kick level and more power than the target")

    if membership == "ban":
        if sender_membership != "join":
            raise AuthError("banner is not in the room")
        sender_level = level(sender)
        if sender_level >= named("ban") and level(target) < sender_level:
            return
        raise AuthError("banning needs the ban level and more power than the target")

    if membership == "knock" and rv.knock_join_rule:
        if not (join_rule == "knock"
                or (rv.knock_restricted_join_rule and join_rule == "knock_restricted")):
            raise AuthError(f"join rule {join_rule!r} does not allow knocking")
        if sender != target:
            raise AuthError("cannot knock on behalf of another user")
        if sender_membership not in ("ban", "invite", "join"):
            return
        raise AuthError(f"cannot knock with membership {sender_membership!r}")

    raise AuthError(f"unknown membership {membership!r}")


def _check_third_party_invite(event: Event, auth_events: StateMap) -> None:
    tpi = event.content.get("third_party_invite")
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict):
        raise AuthError("third_party_invite has no signed block")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third_party_invite.signed needs mxid and token")
    if mxid != event.state_key:
        raise AuthError("third_party_invite mxid is not the invitee")
    invite = auth_events.get((THIRD_PARTY_INVITE, token))
    if invite is None:
        raise AuthError("no m.room.third_party_invite for this token")
    if invite.sender != event.sender:
        raise AuthError("third-party invite sent by someone other than the inviter")
    if not _signed_by_any(signed, _public_keys(invite)):
        raise AuthError("third_party_invite signature matches none of the invite's keys")


def signed_by_key(signed: dict[str, Any], public_key: str) -> bool:
    """Whether a third-party invite's ``signed`` block verifies under
    ``public_key`` (unpadded base64 ed25519), as the auth rule checks it."""
    return _signed_by_any(signed, [public_key])


def _public_keys(invite: Event) -> list[str]:
    """The keys of an m.room.third_party_invite: ``public_key`` and each
    ``public_keys[].public_key``."""
    keys = []
    single = invite.content.get("public_key")
    if isinstance(single, str):
        keys.append(single)
    many = invite.content.get("public_keys")
    if isinstance(many, list):
        for entry in many:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


def _signed_by_any(signed: dict[str, Any], public_keys: list[str]) -> bool:
    """Whether any ed25519 signature in ``signed`` verifies under any key."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    for public_key in public_keys:
        try:
            key_bytes = decode_base64(public_key)
        except (ValueError, UnicodeEncodeError):
            continue
        for server, by_key in signatures.items():
            if not isinstance(by_key, dict):
                continue
            for key_id in by_key:
                if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                    continue
                try:
                    verify_key = decode_verify_key_bytes(key_id, key_bytes)
                    verify_signed_json(signed, server, verify_key)
                except (SignatureVerifyException, ValueError, TypeError):
                    continue
                return True
    return False


# --- power levels


def _check_power_levels(event: Event, auth_events: StateMap, sender_level: PowerLevel) -> None:
    rv = event.room_version
    new = event.content

    if rv.enforce_int_power_levels:
        for name in NAMED_LEVEL_DEFAULTS:
            if name in new and (type(new[name]) is not int):
                raise AuthError(f"power level {name!r} is not an integer")
        for name in ("events", "notifications"):
            if name in new:
                sub = new[name]
                if not isinstance(sub, dict) or any(type(v) is not int for v in sub.values()):
                    raise AuthError(f"power levels {name!r} is not a map of integers")

    users = new.get("users", {})
    if not isinstance(users, dict):
        raise AuthError("power levels 'users' is not an object")
    for user_id, value in users.items():
        if not isinstance(user_id, str) or not is_valid_user_id(user_id):
            raise AuthError(f"power levels 'users' has an invalid user ID {user_id!r}")
        if parse_level(value, rv) is None:
            raise AuthError(f"power level of {user_id} is not an integer")

    if rv.privileged_creators:
        named_creators = creators(auth_events, rv) & users.keys()
        if named_creators:
            raise AuthError(f"room creators may not be listed in users: {sorted(named_creators)}")

    current = auth_events.get(POWER_LEVELS)
    if current is None:
        return
    old = current.content

    def check(old_map: Mapping[str, Any], new_map: Mapping[str, Any], key: str,
              users_entry: bool) -> None:
        old_level = parse_level(old_map[key], rv) if key in old_map else None
        if key in new_map:
            new_level = parse_level(new_map[key], rv)
            if new_level is None:
                raise AuthError(f"power level {key!r} is not an integer")
        else:
            new_level = None
        if key in old_map and key in new_map and old_level == new_level:
            return
        if old_level is not None:
            if users_entry and key != event.sender and old_level >= sender_level:
                raise AuthError(f"cannot change the level of {key}, who has at least yours")
            if old_level > sender_level:
                raise AuthError(f"cannot change {key!r} from a level above yours")
        if new_level is not None and new_level > sender_level:
            raise AuthError(f"cannot set {key!r} to a level above yours")

    for name in NAMED_LEVEL_DEFAULTS:
        check(old, new, name, users_entry=False)
    nested = ("events", "notifications") if rv.limit_notifications_power_levels else ("events",)
    for name in (*nested, "users"):
        old_map, new_map = _as_map(old.get(name)), _as_map(new.get(name))
        for key in old_map.keys() | new_map.keys():
            check(old_map, new_map, key, users_entry=name == "users")


def _as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _check_redaction_v1(event: Event, auth_events: StateMap, sender_level: PowerLevel) -> None:
    """v1-v2 rule 11: the redact level, or a redaction from the server that
    sent the redacted event (judged by the domains of the event IDs)."""
    if sender_level >= get_named_level("redact", auth_events, event.room_version):
        return
    redacts = event.redacts
    if redacts is not None and _domain(redacts) == _domain(event.event_id) != "":
        return
    raise AuthError("redacting another server's event needs the redact level")
