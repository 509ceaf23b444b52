"""Our server as a key notary for an origin whose answers we script: an
expired key is served when nothing newer can be had, a key the origin forgot
is never forgotten, and each query that wants something newer asks again."""

from __future__ import annotations

import time
from typing import Any

import pytest_twisted
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from homeserver.federation.client import FederationError
from tests.harness import SERVER_NAME

KEY_V2 = "/_matrix/key/v2"
ORIGIN = "origin.example:8448"
FEDERATION_LISTENER = [{"port": 0, "bind_addresses": ["127.0.0.1"],
                        "resources": [{"names": ["client", "federation"]}]}]
DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def key_response(version: str, valid_until_ts: int) -> dict[str, Any]:
    key = generate_signing_key(version)
    return sign_json({"server_name": ORIGIN, "valid_until_ts": valid_until_ts,
                      "verify_keys": {f"ed25519:{version}": {
                          "key": encode_verify_key_base64(get_verify_key(key))}},
                      "old_verify_keys": {}}, ORIGIN, key)


class ScriptedOrigin:
    """Stands in for the notary's federation client: each GET of the
    origin's keys takes the next answer (a dict, or an HTTP error code)."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.asked = 0

    async def get_json(self, destination: str, path: str, *args: Any, **kwargs: Any) -> Any:
        assert (destination, path) == (ORIGIN, f"{KEY_V2}/server")
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, int):
            raise FederationError(answer, None, {})
        return answer


async def notary_with_scripted_origin(make_server: Any) -> tuple[Any, ScriptedOrigin]:
    srv = await make_server(listeners=FEDERATION_LISTENER)
    origin = ScriptedOrigin()
    srv.hs.keyring.client = origin
    return srv, origin


async def query(srv: Any, key_id: str, minimum: int) -> dict[str, Any]:
    resp = await srv.client().post(f"{KEY_V2}/query", {
        "server_keys": {ORIGIN: {key_id: {"minimum_valid_until_ts": minimum}}}})
    assert resp.code == 200, resp.body
    return resp.body  # type: ignore[no-any-return]


@pytest_twisted.ensureDeferred
async def test_notary_serves_an_expired_key_when_nothing_newer_can_be_had(
        make_server: Any) -> None:
    srv, origin = await notary_with_scripted_origin(make_server)
    expiry = now_ms() - DAY_MS
    stale = key_response("key_0", expiry)
    origin.answers = [stale, stale, 400]

    first = await query(srv, "ed25519:key_0", 0)
    # wanting newer: the origin is asked again, twice, though its last
    # answer was no better and the one after that an error
    again = await query(srv, "ed25519:key_0", expiry + 1000)
    failed = await query(srv, "ed25519:key_0", expiry + 1000)

    assert origin.asked == 3
    for body in (first, again, failed):
        [entry] = body["server_keys"]
        assert entry["server_name"] == ORIGIN
        assert "ed25519:key_0" in entry["verify_keys"]
        assert entry["valid_until_ts"] == expiry
        assert SERVER_NAME in entry["signatures"]


@pytest_twisted.ensureDeferred
async def test_notary_keeps_a_key_the_origin_forgot(make_server: Any) -> None:
    srv, origin = await notary_with_scripted_origin(make_server)
    expiry = now_ms() - DAY_MS
    origin.answers = [key_response("key_1", expiry), key_response("key_2", expiry + 1000)]

    await query(srv, "ed25519:key_1", 0)
    # the origin now only knows key_2
    await query(srv, "ed25519:key_1", now_ms())
    body = await query(srv, "ed25519:key_1", expiry)

    assert origin.asked == 2
    [entry] = body["server_keys"]
    assert list(entry["verify_keys"]) == ["ed25519:key_1"]


@pytest_twisted.ensureDeferred
async def test_notary_answers_a_get_naming_a_key(make_server: Any) -> None:
    srv, origin = await notary_with_scripted_origin(make_server)
    origin.answers = [key_response("k", now_ms() + DAY_MS)]

    resp = await srv.client().get(f"{KEY_V2}/query/{ORIGIN}/ed25519:k")

    assert resp.code == 200
    [entry] = resp.body["server_keys"]
    assert "ed25519:k" in entry["verify_keys"] and SERVER_NAME in entry["signatures"]
