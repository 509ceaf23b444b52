"""Server keys: what we publish, what we serve as a notary, and fetching peers' keys."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import pytest_twisted
from signedjson.key import (
    decode_verify_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
)
from signedjson.sign import sign_json, verify_signed_json
from twisted.internet import defer

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import SignatureError, sign_event
from tests.federation.harness import take_down
from tests.harness import SERVER_NAME, TestServer

KEY_V2 = "/_matrix/key/v2"
OLD_KEY = generate_signing_key("old1")
OLD_KEY_ID = "ed25519:old1"
OLD_KEY_B64 = encode_verify_key_base64(get_verify_key(OLD_KEY))
OLD_EXPIRED_TS = 1_600_000_000_000

FEDERATION_LISTENER = [{"port": 0, "bind_addresses": ["127.0.0.1"],
                        "resources": [{"names": ["client", "federation"]}]}]


def now_ms() -> int:
    return int(time.time() * 1000)


def key_id_of(srv: TestServer) -> str:
    key = srv.hs.signing_key
    return f"{key.alg}:{key.version}"


def assert_self_signed(response: dict[str, Any], server_name: str) -> None:
    """The response is signed by every key it lists in verify_keys."""
    assert response["server_name"] == server_name
    assert response["verify_keys"]
    for key_id, entry in response["verify_keys"].items():
        alg, _, version = key_id.partition(":")
        verify_signed_json(response, server_name,
                           decode_verify_key_base64(alg, version, entry["key"]))


@pytest_twisted.ensureDeferred
async def test_server_publishes_its_key_self_signed(make_server: Any) -> None:
    srv = await make_server(
        listeners=FEDERATION_LISTENER,
        old_signing_keys={OLD_KEY_ID: {"key": OLD_KEY_B64, "expired_ts": OLD_EXPIRED_TS}})

    resp = await srv.client().get(f"{KEY_V2}/server")

    assert resp.code == 200
    body = resp.body
    assert_self_signed(body, SERVER_NAME)
    served = body["verify_keys"][key_id_of(srv)]["key"]
    assert served == encode_verify_key_base64(get_verify_key(srv.hs.signing_key))
    assert body["valid_until_ts"] > now_ms()
    assert body["old_verify_keys"] == {
        OLD_KEY_ID: {"key": OLD_KEY_B64, "expired_ts": OLD_EXPIRED_TS}}
    # the deprecated form with a key ID answers the same
    by_id = await srv.client().get(f"{KEY_V2}/server/{key_id_of(srv)}")
    assert by_id.code == 200
    assert by_id.body["verify_keys"] == body["verify_keys"]


@pytest_twisted.ensureDeferred
async def test_key_routes_need_a_federation_listener(server: TestServer) -> None:
    resp = await server.client().get(f"{KEY_V2}/server")
    assert (resp.code, resp.body["errcode"]) == (404, "M_UNRECOGNIZED")


@pytest_twisted.ensureDeferred
async def test_notary_answers_for_its_own_name(make_server: Any) -> None:
    srv = await make_server(listeners=FEDERATION_LISTENER)
    key_id = key_id_of(srv)

    post = await srv.client().post(f"{KEY_V2}/query", {
        "server_keys": {SERVER_NAME: {key_id: {"minimum_valid_until_ts": now_ms()}}}})
    get = await srv.client().get(f"{KEY_V2}/query/{SERVER_NAME}",
                                 params={"minimum_valid_until_ts": str(now_ms())})

    for resp in (post, get):
        assert resp.code == 200
        [entry] = resp.body["server_keys"]
        assert_self_signed(entry, SERVER_NAME)
        assert key_id in entry["verify_keys"]
    empty = await srv.client().post(f"{KEY_V2}/query", {"server_keys": {}})
    assert (empty.code, empty.body) == (200, {"server_keys": []})


@pytest.mark.parametrize("body", [
    {},
    {"server_keys": []},
    {"server_keys": {SERVER_NAME: []}},
    {"server_keys": {SERVER_NAME: {"ed25519:a": "soon"}}},
    {"server_keys": {SERVER_NAME: {"ed25519:a": {"minimum_valid_until_ts": "1"}}}},
])
@pytest_twisted.ensureDeferred
async def test_malformed_key_query_is_refused(make_server: Any, body: Any) -> None:
    srv = await make_server(listeners=FEDERATION_LISTENER)
    resp = await srv.client().post(f"{KEY_V2}/query", body)
    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")


@pytest_twisted.ensureDeferred
async def test_key_query_with_bad_server_name_or_timestamp_is_refused(make_server: Any) -> None:
    srv = await make_server(listeners=FEDERATION_LISTENER)
    client = srv.client()

    bad_name = await client.post(f"{KEY_V2}/query", {"server_keys": {"bad name!": {}}})
    bad_path = await client.get(f"{KEY_V2}/query/bad%20name")
    bad_ts = await client.get(f"{KEY_V2}/query/{SERVER_NAME}",
                              params={"minimum_valid_until_ts": "tomorrow"})
    not_json = await client.post(f"{KEY_V2}/query", raw=b"{nope")

    for resp in (bad_name, bad_path, bad_ts):
        assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")
    assert (not_json.code, not_json.body["errcode"]) == (400, "M_NOT_JSON")


# -- between servers (tests/federation/harness.py) --

@pytest_twisted.ensureDeferred
async def test_server_fetches_and_caches_a_peers_key(federation: Any) -> None:
    a = await federation()
    b = await federation()
    b_name, b_key_id = b.server_name, key_id_of(b)
    signed_by_b = sign_json({"hello": "world"}, b_name, b.hs.signing_key)

    keys = await a.hs.keyring.get_verify_keys(b_name, [b_key_id], now_ms())

    assert bytes(keys[b_key_id]) == bytes(get_verify_key(b.hs.signing_key))
    await a.hs.keyring.verify_json_for_server(b_name, signed_by_b, now_ms())
    [row] = await a.hs.stores.server_keys.get_keys(b_name)
    assert row.key_id == b_key_id and row.valid_until_ts > now_ms()
    # with b gone, the cached key still checks b's signatures
    await take_down(b)
    again = await a.hs.keyring.get_verify_keys(b_name, [b_key_id], now_ms())
    assert bytes(again[b_key_id]) == bytes(keys[b_key_id])
    with pytest.raises(SignatureError):
        await a.hs.keyring.verify_json_for_server(
            b_name, {**signed_by_b, "hello": "tampered"}, now_ms())


@pytest_twisted.ensureDeferred
async def test_unknown_key_of_unreachable_server_is_not_found(federation: Any) -> None:
    a = await federation()
    b = await federation()
    b_name = b.server_name
    await take_down(b)

    keys = await a.hs.keyring.get_verify_keys(b_name, ["ed25519:nope"], now_ms())

    assert keys == {}
    forged = sign_json({"x": 1}, b_name, generate_signing_key("nope"))
    with pytest.raises(SignatureError):
        await a.hs.keyring.verify_json_for_server(b_name, forged, now_ms())


@pytest_twisted.ensureDeferred
async def test_keys_fetched_through_a_trusted_notary(federation: Any) -> None:
    c = await federation()
    b = await federation()
    b_key_b64 = encode_verify_key_base64(get_verify_key(b.hs.signing_key))
    # a may not contact c (its whitelist names only b): c's key must come via b
    a = await federation(
        federation_domain_whitelist=[b.server_name],
        trusted_key_servers=[{"server_name": b.server_name,
                              "verify_keys": {key_id_of(b): b_key_b64}}])
    forger = await federation(
        federation_domain_whitelist=[b.server_name],
        trusted_key_servers=[{"server_name": b.server_name, "verify_keys": {
            key_id_of(b): encode_verify_key_base64(get_verify_key(generate_signing_key("x")))}}])

    keys = await a.hs.keyring.get_verify_keys(c.server_name, [key_id_of(c)], now_ms())
    not_trusted = await forger.hs.keyring.get_verify_keys(c.server_name, [key_id_of(c)],
                                                          now_ms())

    assert bytes(keys[key_id_of(c)]) == bytes(get_verify_key(c.hs.signing_key))
    # b's answer is not signed by the key forger was told b has
    assert not_trusted == {}
    # b kept c's response and serves it, signed by b, while c is down
    await take_down(c)
    served = await b.hs.keyring.notary_key_responses(c.server_name, [key_id_of(c)], now_ms())
    [entry] = served
    assert_self_signed(entry, c.server_name)
    verify_signed_json(entry, b.server_name, get_verify_key(b.hs.signing_key))


def _event_from(srv: TestServer, origin_server_ts: int) -> dict[str, Any]:
    name = srv.server_name  # type: ignore[attr-defined]
    return {"type": "m.room.message", "room_id": f"!r:{name}", "sender": f"@u:{name}",
            "content": {"body": "hi"}, "depth": 2, "origin_server_ts": origin_server_ts,
            "prev_events": [], "auth_events": [], "hashes": {}}


@pytest_twisted.ensureDeferred
async def test_event_signatures_checked_with_fetched_keys(federation: Any) -> None:
    a = await federation()
    b = await federation()
    v10 = KNOWN_ROOM_VERSIONS["10"]
    event = sign_event(_event_from(b, now_ms()), v10, b.server_name, b.hs.signing_key)
    # sent long after b's key response says the key expires
    late = sign_event(_event_from(b, now_ms() + 30 * 86_400_000), v10, b.server_name,
                      b.hs.signing_key)
    forged = sign_event(_event_from(b, now_ms()), v10, b.server_name,
                        generate_signing_key(b.hs.signing_key.version))

    await a.hs.keyring.verify_event_signatures(event, v10)
    for bad in (late, forged):
        with pytest.raises(SignatureError):
            await a.hs.keyring.verify_event_signatures(bad, v10)
    # rooms before v5 do not enforce key validity
    v4 = KNOWN_ROOM_VERSIONS["4"]
    old_rules = sign_event(_event_from(b, now_ms() + 30 * 86_400_000), v4, b.server_name,
                           b.hs.signing_key)
    await a.hs.keyring.verify_event_signatures(old_rules, v4)


def key_fetches(caplog: pytest.LogCaptureFixture) -> int:
    """GET /_matrix/key/v2/server requests served, by the access log."""
    return sum(1 for r in caplog.records
               if r.name == "homeserver.access" and "GET /_matrix/key/v2/server" in r.getMessage())


@pytest_twisted.ensureDeferred
async def test_concurrent_and_failed_lookups_fetch_once(
        federation: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="homeserver.access")
    a = await federation()
    b = await federation()
    b_name, b_key_id = b.server_name, key_id_of(b)

    results = await defer.gatherResults([
        defer.ensureDeferred(a.hs.keyring.get_verify_keys(b_name, [b_key_id], now_ms()))
        for _ in range(5)])
    assert all(b_key_id in r for r in results)
    assert key_fetches(caplog) == 1
    # a key b does not have: asked once, then not again for a while
    for _ in range(3):
        assert await a.hs.keyring.get_verify_keys(b_name, ["ed25519:gone"], now_ms()) == {}
    assert key_fetches(caplog) == 2
