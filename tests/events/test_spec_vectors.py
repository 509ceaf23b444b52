"""The worked examples of appendices.md "Cryptographic Test Vectors"."""

from __future__ import annotations

import copy

import pytest
from signedjson.sign import sign_json

from homeserver.events.hashes import check_content_hash
from homeserver.events.signing import sign_event, verify_event_signatures
from tests.events.helpers import SPEC_KEY, SPEC_VERIFY_KEY, rv

KEYS = {("domain", "ed25519:1"): SPEC_VERIFY_KEY}


@pytest.mark.parametrize("obj, signature", [
    ({}, "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"),
    ({"one": 1, "two": "Two"},
     "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"),
])
def test_json_signing_matches_the_spec(obj: dict, signature: str) -> None:
    signed = sign_json(copy.deepcopy(obj), "domain", SPEC_KEY)
    assert signed == {**obj, "signatures": {"domain": {"ed25519:1": signature}}}


MINIMAL_EVENT = {
    "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
    "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X",
    "content": {}, "prev_events": [], "auth_events": [], "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
MINIMAL_SIGNED = {
    "auth_events": [], "content": {}, "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain", "origin_server_ts": 1000000, "prev_events": [],
    "room_id": "!x:domain", "sender": "@a:domain",
    "signatures": {"domain": {"ed25519:1":
        "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
    "type": "X", "unsigned": {"age_ts": 1000000},
}
MESSAGE_EVENT = {
    "content": {"body": "Here is the message content"}, "event_id": "$0:domain",
    "origin": "domain", "origin_server_ts": 1000000, "type": "m.room.message",
    "room_id": "!r:domain", "sender": "@u:domain", "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
MESSAGE_SIGNED = {
    **{k: v for k, v in MESSAGE_EVENT.items() if k != "signatures"},
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "signatures": {"domain": {"ed25519:1":
        "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"}},
}


# The vectors keep the top-level "origin", so they are signed under the
# redaction rules of v1-v10; v11 would strip "origin" before signing.
@pytest.mark.parametrize("version", ["1", "2", "6", "10"])
@pytest.mark.parametrize("event, expected", [
    (MINIMAL_EVENT, MINIMAL_SIGNED), (MESSAGE_EVENT, MESSAGE_SIGNED),
], ids=["minimal", "message"])
def test_event_signing_matches_the_spec(version: str, event: dict, expected: dict) -> None:
    original = copy.deepcopy(event)
    assert sign_event(event, rv(version), "domain", SPEC_KEY) == expected
    assert event == original  # the input is not modified


@pytest.mark.parametrize("expected", [MINIMAL_SIGNED, MESSAGE_SIGNED], ids=["minimal", "message"])
def test_spec_signed_events_verify_and_hash(expected: dict) -> None:
    # v3 rules: only the sender's server is required ("domain")
    assert verify_event_signatures(expected, rv("3"), KEYS) == {"domain"}
    assert check_content_hash(expected)


def test_v11_signature_differs_because_origin_is_redacted() -> None:
    signed = sign_event(MESSAGE_EVENT, rv("11"), "domain", SPEC_KEY)
    assert signed["hashes"] == MESSAGE_SIGNED["hashes"]  # content hash: version-independent
    assert signed["signatures"] != MESSAGE_SIGNED["signatures"]
