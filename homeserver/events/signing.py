"""Signing our events and checking the signatures on received ones.

server-server-api.md "Adding hashes and signatures to outgoing events" and
"Validating hashes and signatures on received events"; appendices.md
"Signing JSON" / "Checking for a Signature". Signatures cover the *redacted*
event (so they survive redaction) and, through ``hashes``, the full content.

Which servers must have signed (``required_signature_servers``):
- the sender's server, unless the event is an invite made via a third-party
  invite: that event may be sent by another server, and the auth rules check
  the ``signed`` block instead (Synapse's ``_is_invite_via_3pid``);
- v1/v2: also the server in the ``event_id``;
- v8+: for a join with ``join_authorised_via_users_server``, that user's server.

Key lookup (network, caches, notaries) is the caller's: it passes the keys it
has, ``{(server_name, key_id): VerifyKey}``, already filtered for validity
(``key_valid_for_event`` applies the v5+ rule). For every required server, each
of its signatures made with a supplied key must verify, and there must be at
least one; signatures with unknown keys are skipped, as the spec says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from signedjson.types import SigningKey, VerifyKey

from homeserver.events.hashes import add_content_hash
from homeserver.events.identifiers import server_name_of
from homeserver.events.redaction import redact
from homeserver.events.room_versions import RoomVersion

# v5+: a key's valid_until_ts counts for at most this long after we fetched it
# (rooms/fragments/v5-signing-requirements.md).
MAX_KEY_VALIDITY_MS = 7 * 24 * 60 * 60 * 1000


class SignatureError(Exception):
    """A required signature is missing or does not verify."""


def sign_event(event: dict[str, Any], room_version: RoomVersion, server_name: str,
               signing_key: SigningKey) -> dict[str, Any]:
    """``event`` with its content hash set and our signature added (a new dict).

    ``signing_key`` is a signedjson signing key (it carries ``alg`` and ``version``,
    e.g. from ``signedjson.key.decode_signing_key_base64``). Existing signatures
    by other servers are kept.
    """
    hashed = add_content_hash(event)
    redacted = redact(hashed, room_version)
    signed = sign_json(redacted, server_name, signing_key)
    out = dict(hashed)
    out["signatures"] = signed["signatures"]
    return out


def _domain(identifier: Any) -> str | None:
    if not isinstance(identifier, str):
        return None
    try:
        return server_name_of(identifier)
    except ValueError:
        return None


def is_invite_via_third_party(event: Mapping[str, Any]) -> bool:
    content = event.get("content")
    return (event.get("type") == "m.room.member" and isinstance(content, dict)
            and content.get("membership") == "invite" and "third_party_invite" in content)


def required_signature_servers(event: Mapping[str, Any], room_version: RoomVersion) -> set[str]:
    """The servers whose signatures a received PDU must carry.

    Raises ``SignatureError`` if one of the identifiers that name them is malformed.
    """
    required: set[str] = set()
    if not is_invite_via_third_party(event):
        sender_domain = _domain(event.get("sender"))
        if sender_domain is None:
            raise SignatureError(f"malformed sender {event.get('sender')!r}")
        required.add(sender_domain)
    if not room_version.event_ids_are_hashes:
        event_domain = _domain(event.get("event_id"))
        if event_domain is None:
            raise SignatureError(f"malformed event_id {event.get('event_id')!r}")
        required.add(event_domain)
    content = event.get("content")
    if (room_version.restricted_join_rule and event.get("type") == "m.room.member"
            and isinstance(content, dict) and content.get("membership") == "join"
            and "join_authorised_via_users_server" in content):
        authoriser = _domain(content["join_authorised_via_users_server"])
        if authoriser is None:
            raise SignatureError("malformed join_authorised_via_users_server")
        required.add(authoriser)
    return required


def verify_server_signature(event: dict[str, Any], room_version: RoomVersion,
                            server_name: str,
                            verify_keys: Mapping[tuple[str, str], VerifyKey]) -> None:
    """Check ``server_name``'s signatures on ``event`` with the keys supplied.

    Raises ``SignatureError`` if none of its signatures has a supplied key, or if
    any signature with a supplied key fails.
    """
    redacted = redact(event, room_version)
    sigs = redacted.get("signatures")
    server_sigs = sigs.get(server_name) if isinstance(sigs, dict) else None
    if not isinstance(server_sigs, dict) or not server_sigs:
        raise SignatureError(f"event not signed by {server_name}")
    checked = 0
    for key_id in server_sigs:
        if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
            continue  # algorithms we do not understand are skipped
        key = verify_keys.get((server_name, key_id))
        if key is None:
            continue
        # Rebuild the key so its alg/version match key_id whatever the caller passed.
        vk = decode_verify_key_bytes(key_id, bytes(key))
        try:
            verify_signed_json(redacted, server_name, vk)
        except SignatureVerifyException as e:
            raise SignatureError(f"bad signature by {server_name} {key_id}: {e}") from e
        checked += 1
    if not checked:
        raise SignatureError(
            f"no known key for any signature by {server_name}: {sorted(server_sigs)}")


def verify_event_signatures(event: dict[str, Any], room_version: RoomVersion,
                            verify_keys: Mapping[tuple[str, str], VerifyKey]) -> set[str]:
    """Check the signatures of every required server; return the servers checked.

    Raises ``SignatureError`` on the first failure. Content hashes are checked
    separately (``hashes.check_content_hash``): a mismatch there means "use the
    redacted form", not "drop".
    """
    required = required_signature_servers(event, room_version)
    for server in sorted(required):
        verify_server_signature(event, room_version, server, verify_keys)
    return required


def key_valid_for_event(room_version: RoomVersion, origin_server_ts: int,
                        valid_until_ts: int, fetched_at_ts: int | None = None) -> bool:
    """Whether a key with ``valid_until_ts`` may verify an event sent at ``origin_server_ts``.

    v1-v4 do not enforce key validity. v5+ require valid_until_ts >=
    origin_server_ts, where valid_until_ts is capped at 7 days after the key
    was fetched (pass ``fetched_at_ts`` to apply the cap).
    """
    if not room_version.enforce_key_validity:
        return True
    effective = valid_until_ts
    if fetched_at_ts is not None:
        effective = min(effective, fetched_at_ts + MAX_KEY_VALIDITY_MS)
    return effective >= origin_server_ts
