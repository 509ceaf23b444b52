"""Shared fixtures for the events tests: the spec's test key and version lookup."""

from __future__ import annotations

from signedjson.key import decode_signing_key_base64, generate_signing_key, get_verify_key
from signedjson.types import SigningKey, VerifyKey

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

# appendices.md "Cryptographic Test Vectors": server "domain", key "ed25519:1"
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_KEY: SigningKey = decode_signing_key_base64("ed25519", "1", SPEC_SEED)
SPEC_VERIFY_KEY: VerifyKey = get_verify_key(SPEC_KEY)

ALL_VERSIONS = sorted(KNOWN_ROOM_VERSIONS, key=int)


def rv(identifier: str) -> RoomVersion:
    return KNOWN_ROOM_VERSIONS[identifier]


def new_key(version: str = "k1") -> tuple[SigningKey, VerifyKey]:
    sk = generate_signing_key(version)
    return sk, get_verify_key(sk)
