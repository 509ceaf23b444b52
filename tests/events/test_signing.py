"""Which servers must sign a PDU, signature checks, and the v5+ key validity rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from homeserver.events.signing import (
    SignatureError,
    key_valid_for_event,
    required_signature_servers,
    sign_event,
    verify_event_signatures,
)
from tests.events.helpers import ALL_VERSIONS, new_key, rv

SK_A, VK_A = new_key("a1")
SK_B, VK_B = new_key("b1")
SK_C, VK_C = new_key("c1")
KEYS = {("a.org", "ed25519:a1"): VK_A, ("b.org", "ed25519:b1"): VK_B,
        ("c.org", "ed25519:c1"): VK_C}


def _pdu(**overrides: Any) -> dict[str, Any]:
    pdu = {"type": "m.room.message", "room_id": "!r:a.org", "sender": "@u:a.org",
           "content": {"body": "hi"}, "depth": 2, "origin_server_ts": 1000,
           "prev_events": [], "auth_events": [], "event_id": "$e:a.org"}
    pdu.update(overrides)
    return pdu


def _join(authoriser: str) -> dict[str, Any]:
    return _pdu(type="m.room.member", state_key="@u:a.org",
                content={"membership": "join", "join_authorised_via_users_server": authoriser})


@pytest.mark.parametrize("version, pdu, expected", [
    ("3", _pdu(), {"a.org"}),
    ("12", _pdu(), {"a.org"}),
    ("1", _pdu(), {"a.org"}),
    ("1", _pdu(event_id="$e:b.org"), {"a.org", "b.org"}),
    ("2", _pdu(event_id="$e:b.org"), {"a.org", "b.org"}),
    ("3", _pdu(event_id="$e:b.org"), {"a.org"}),  # v3+: event_id has no meaning
    ("8", _join("@admin:c.org"), {"a.org", "c.org"}),
    ("12", _join("@admin:c.org"), {"a.org", "c.org"}),
    ("7", _join("@admin:c.org"), {"a.org"}),  # no restricted joins before v8
    ("8", _pdu(type="m.room.member", state_key="@u:a.org",
               content={"membership": "leave", "join_authorised_via_users_server": "@x:c.org"}),
     {"a.org"}),
    # an invite via a third-party invite may be sent by another server
    ("10", _pdu(type="m.room.member", state_key="@v:b.org",
                content={"membership": "invite", "third_party_invite": {"signed": {}}}), set()),
    ("1", _pdu(type="m.room.member", state_key="@v:b.org", event_id="$e:b.org",
               content={"membership": "invite", "third_party_invite": {"signed": {}}}),
     {"b.org"}),
])
def test_required_signature_servers(version: str, pdu: dict, expected: set[str]) -> None:
    assert required_signature_servers(pdu, rv(version)) == expected


@pytest.mark.parametrize("pdu", [_pdu(sender="nobody"), _pdu(sender=5), _join("@nodomain")])
def test_malformed_identifiers_cannot_name_a_signer(pdu: dict) -> None:
    with pytest.raises(SignatureError):
        required_signature_servers(pdu, rv("10"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_signed_event_verifies(version: str) -> None:
    signed = sign_event(_pdu(), rv(version), "a.org", SK_A)
    assert verify_event_signatures(signed, rv(version), KEYS) == {"a.org"}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_signature_survives_redaction(version: str) -> None:
    from homeserver.events.redaction import redact
    signed = sign_event(_pdu(), rv(version), "a.org", SK_A)
    verify_event_signatures(redact(signed, rv(version)), rv(version), KEYS)


def _tamper_signature(pdu: dict) -> None:
    sig = pdu["signatures"]["a.org"]["ed25519:a1"]
    pdu["signatures"]["a.org"]["ed25519:a1"] = ("A" if sig[0] != "A" else "B") + sig[1:]


def _tamper_sender(pdu: dict) -> None:
    pdu["sender"] = "@mallory:a.org"


def _tamper_hashes(pdu: dict) -> None:
    pdu["hashes"]["sha256"] = "A" * 43


def _drop_signature(pdu: dict) -> None:
    pdu["signatures"] = {}


def _garbage_signature(pdu: dict) -> None:
    pdu["signatures"]["a.org"]["ed25519:a1"] = "***"


@pytest.mark.parametrize("tamper", [_tamper_signature, _tamper_sender, _tamper_hashes,
                                    _drop_signature, _garbage_signature])
def test_tampering_with_signed_fields_fails_verification(tamper: Any) -> None:
    signed = sign_event(_pdu(), rv("10"), "a.org", SK_A)
    tampered = copy.deepcopy(signed)
    tamper(tampered)
    with pytest.raises(SignatureError):
        verify_event_signatures(tampered, rv("10"), KEYS)


def test_changing_redactable_content_keeps_the_signature_but_not_the_hash() -> None:
    from homeserver.events.hashes import check_content_hash
    signed = sign_event(_pdu(), rv("10"), "a.org", SK_A)
    tampered = {**signed, "content": {"body": "evil"}}
    verify_event_signatures(tampered, rv("10"), KEYS)
    assert check_content_hash(signed)
    assert not check_content_hash(tampered)


def test_signature_by_the_wrong_key_fails() -> None:
    signed = sign_event(_pdu(), rv("10"), "a.org", SK_A)
    with pytest.raises(SignatureError):
        verify_event_signatures(signed, rv("10"), {("a.org", "ed25519:a1"): VK_B})


def test_unknown_key_ids_are_skipped_but_one_known_is_needed() -> None:
    signed = sign_event(_pdu(), rv("10"), "a.org", SK_A)
    signed["signatures"]["a.org"]["ed25519:unknown"] = "AAAA"
    signed["signatures"]["a.org"]["curve9:x"] = "AAAA"
    verify_event_signatures(signed, rv("10"), KEYS)
    with pytest.raises(SignatureError, match="no known key"):
        verify_event_signatures(signed, rv("10"), {})


def test_v1_needs_the_event_id_server_too() -> None:
    pdu = _pdu(event_id="$e:b.org")
    signed = sign_event(pdu, rv("1"), "a.org", SK_A)
    with pytest.raises(SignatureError, match="b.org"):
        verify_event_signatures(signed, rv("1"), KEYS)
    both = sign_event(signed, rv("1"), "b.org", SK_B)
    assert verify_event_signatures(both, rv("1"), KEYS) == {"a.org", "b.org"}


def test_restricted_join_needs_the_authorising_server() -> None:
    signed = sign_event(_join("@admin:c.org"), rv("9"), "a.org", SK_A)
    with pytest.raises(SignatureError, match="c.org"):
        verify_event_signatures(signed, rv("9"), KEYS)
    cosigned = sign_event(signed, rv("9"), "c.org", SK_C)
    assert verify_event_signatures(cosigned, rv("9"), KEYS) == {"a.org", "c.org"}
    assert cosigned["hashes"] == signed["hashes"]  # co-signing does not rehash differently


DAY = 24 * 3600 * 1000


@pytest.mark.parametrize("version, ts, valid_until, fetched_at, ok", [
    ("4", 1000, 0, None, True),  # not enforced before v5
    ("5", 1000, 999, None, False),
    ("5", 1000, 1000, None, True),
    ("10", 1000, 5000, None, True),
    ("12", 10 * DAY, 100 * DAY, 0, False),  # capped at 7 days after fetching
    ("12", 6 * DAY, 100 * DAY, 0, True),
])
def test_key_validity(version: str, ts: int, valid_until: int, fetched_at: int | None,
                      ok: bool) -> None:
    assert key_valid_for_event(rv(version), ts, valid_until, fetched_at) is ok
