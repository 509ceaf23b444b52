"""End-to-end encryption keys as clients use them: upload, query, claim,
/keys/changes, and the key counts and device list changes /sync reports."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"


def device_keys(user_id: str, device_id: str, signing_key: Any = None) -> dict[str, Any]:
    """Device keys as a client makes them, signed by the device's ed25519 key."""
    key = signing_key or generate_signing_key(device_id)
    keys = {"user_id": user_id, "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{device_id}": "Y3VydmUyNTUxOWtleQ",
                     f"ed25519:{device_id}": encode_verify_key_base64(get_verify_key(key))}}
    return sign_json(keys, user_id, key)


def otks(user_id: str, device_id: str, ids: list[str]) -> dict[str, Any]:
    key = generate_signing_key(device_id)
    return {f"signed_curve25519:{i}": sign_json({"key": f"otk{i}"}, user_id, key)
            for i in ids}


async def upload(client: Client, body: dict[str, Any]) -> Any:
    return await client.post(f"{V3}/keys/upload", body)


async def sync(client: Client, since: str | None = None) -> dict[str, Any]:
    path = f"{V3}/sync?timeout=0" + (f"&since={since}" if since else "")
    resp = await client.get(path)
    assert resp.code == 200, resp.body
    body: dict[str, Any] = resp.body
    return body


@pytest_twisted.ensureDeferred
async def test_uploaded_keys_are_queried_claimed_and_counted(server: TestServer) -> None:
    alice = await server.register("alice", device_id="ALICEPHONE")
    bob = await server.register("bob")
    a, dev = alice.user_id, "ALICEPHONE"
    assert a is not None
    await alice.put(f"{V3}/devices/{dev}", {"display_name": "Alice's phone"})
    keys = device_keys(a, dev)
    resp = await upload(alice, {"device_keys": keys, "one_time_keys": otks(a, dev, ["A1", "A2"]),
                                "fallback_keys": {"signed_curve25519:F1": {
                                    "key": "fb1", "fallback": True}}})
    assert resp.code == 200, resp.body
    assert resp.body == {"one_time_key_counts": {"signed_curve25519": 2}}
    first = await sync(alice)
    assert first["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert first["device_unused_fallback_key_types"] == ["signed_curve25519"]

    # bob sees alice's device keys as uploaded, with the device's name
    resp = await bob.post(f"{V3}/keys/query", {"device_keys": {a: []}})
    assert resp.code == 200, resp.body
    got = resp.body["device_keys"][a][dev]
    assert got["keys"] == keys["keys"] and got["signatures"] == keys["signatures"]
    assert got["unsigned"]["device_display_name"] == "Alice's phone"
    assert resp.body["failures"] == {}
    # a device list naming another device gets nothing of this one
    resp = await bob.post(f"{V3}/keys/query", {"device_keys": {a: ["OTHER"]}})
    assert resp.body["device_keys"] == {a: {}}

    # claims hand out each one-time key once, then the fallback key
    claimed = []
    for _ in range(3):
        resp = await bob.post(f"{V3}/keys/claim",
                              {"one_time_keys": {a: {dev: "signed_curve25519"}}})
        assert resp.code == 200, resp.body
        claimed.append(next(iter(resp.body["one_time_keys"][a][dev])))
    assert sorted(claimed[:2]) == ["signed_curve25519:A1", "signed_curve25519:A2"]
    assert claimed[2] == "signed_curve25519:F1"
    after = await sync(alice, first["next_batch"])
    assert after["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert after["device_unused_fallback_key_types"] == []
    # a new fallback key is unused again
    await upload(alice, {"fallback_keys": {"signed_curve25519:F2": {"key": "fb2"}}})
    assert (await sync(alice))["device_unused_fallback_key_types"] == ["signed_curve25519"]

    # claims for unknown devices and users: an empty answer, not an error
    resp = await bob.post(f"{V3}/keys/claim", {"one_time_keys": {
        a: {"NOSUCH": "signed_curve25519"}, "@nobody:test.local": {"X": "signed_curve25519"}}})
    assert (resp.code, resp.body) == (200, {"one_time_keys": {}, "failures": {}})


@pytest_twisted.ensureDeferred
async def test_bad_uploads_are_refused(server: TestServer) -> None:
    alice = await server.register("alice", device_id="DEV")
    a = alice.user_id
    assert a is not None
    good = device_keys(a, "DEV")

    async def refused(body: dict[str, Any], errcode: str | None = None) -> None:
        resp = await upload(alice, body)
        assert resp.code == 400, (body, resp.body)
        if errcode is not None:
            assert resp.body["errcode"] == errcode

    await refused({"device_keys": device_keys("@mallory:test.local", "DEV")})
    await refused({"device_keys": device_keys(a, "OTHERDEV")})
    await refused({"device_keys": {k: v for k, v in good.items() if k != "signatures"}},
                  "M_BAD_JSON")
    await refused({"device_keys": {k: v for k, v in good.items() if k != "algorithms"}},
                  "M_BAD_JSON")
    await refused({"device_keys": good | {"keys": {"ed25519:DEV": 5}}}, "M_BAD_JSON")
    await refused({"device_keys": good | {"signatures": {a: "sig"}}}, "M_BAD_JSON")
    await refused({"device_keys": "not an object"}, "M_BAD_JSON")
    await refused({"one_time_keys": {"no-algorithm": {"key": "x"}}})
    await refused({"one_time_keys": {"signed_curve25519:A": 5}})
    await refused({"one_time_keys": otks(a, "DEV", [str(i) for i in range(201)])},
                  "M_TOO_LARGE")
    resp = await alice.post(f"{V3}/keys/upload", raw=b'{"x":"' + b"y" * 2_000_000 + b'"}')
    assert resp.code == 413
    # nothing of those was stored
    resp = await alice.post(f"{V3}/keys/query", {"device_keys": {a: []}})
    assert resp.body["device_keys"] == {a: {}}

    # a one-time key ID may be sent again, but not with other content
    assert (await upload(alice, {"one_time_keys": {"signed_curve25519:K": {"key": "1"}}})
            ).code == 200
    assert (await upload(alice, {"one_time_keys": {"signed_curve25519:K": {"key": "1"}}})
            ).body == {"one_time_key_counts": {"signed_curve25519": 1}}
    await refused({"one_time_keys": {"signed_curve25519:K": {"key": "2"},
                                     "signed_curve25519:L": {"key": "3"}}}, "M_INVALID_PARAM")
    assert (await upload(alice, {})).body == {"one_time_key_counts": {"signed_curve25519": 1}}
    # malformed queries and claims
    for path, body in ((f"{V3}/keys/query", {"device_keys": {a: "DEV"}}),
                       (f"{V3}/keys/query", {}),
                       (f"{V3}/keys/claim", {"one_time_keys": {a: ["DEV"]}}),
                       (f"{V3}/keys/claim", {"one_time_keys": {a: {}}, "timeout": -1})):
        resp = await alice.post(path, body)
        assert resp.code == 400, (path, body, resp.body)


@pytest_twisted.ensureDeferred
async def test_device_keys_are_stored_as_the_device_signed_them_or_not(
        server: TestServer) -> None:
    """The server does not judge the keys or their signatures (clients
    verify them), as Synapse does not: keys under other IDs than
    ``ed25519:<device>``, unsigned, or with a signature that does not verify
    are stored and served as uploaded."""
    alice = await server.register("alice", device_id="DEV")
    bob = await server.register("bob")
    a = alice.user_id
    assert a is not None
    good = device_keys(a, "DEV")
    uploads = [
        good | {"algorithms": ["m.olm.v1.curve25519-aes-sha2"]},  # signature now wrong
        good | {"keys": {"ed25519:test": "c3op6BJi8aUnDGA541Q6TbTPmbiy1GqGv"}},
        good | {"keys": {"curve25519:DEV": "curve25519+key", "ed25519:DEV": "ed25519+key"},
                "signatures": {a: {"ed25519:DEV": "self+signature"}}},
        good | {"signatures": {}},
    ]
    for keys in uploads:
        resp = await upload(alice, {"device_keys": keys})
        assert resp.code == 200, (keys, resp.body)
        got = (await bob.post(f"{V3}/keys/query", {"device_keys": {a: ["DEV"]}})).body
        served = got["device_keys"][a]["DEV"]
        # with an unsigned object, and no display name when the device has none
        assert served == keys | {"unsigned": {}}


@pytest_twisted.ensureDeferred
async def test_room_mates_see_new_device_keys(server: TestServer) -> None:
    alice = await server.register("alice", device_id="ADEV")
    bob = await server.register("bob")
    carol = await server.register("carol")
    a = alice.user_id
    assert a is not None and bob.user_id is not None and carol.user_id is not None
    room = (await alice.post(f"{V3}/createRoom", {"invite": [bob.user_id]})).body["room_id"]
    assert (await bob.post(f"{V3}/join/{room}", {})).code == 200
    bob_since = (await sync(bob))["next_batch"]
    carol_since = (await sync(carol))["next_batch"]

    assert (await upload(alice, {"device_keys": device_keys(a, "ADEV")})).code == 200

    got = await sync(bob, bob_since)
    assert a in got["device_lists"].get("changed", [])
    resp = await bob.get(f"{V3}/keys/changes?from={bob_since}&to={got['next_batch']}")
    assert resp.code == 200, resp.body
    assert a in resp.body["changed"]
    # carol shares no room with alice: she hears nothing
    assert a not in (await sync(carol, carol_since))["device_lists"].get("changed", [])

    # alice leaves: bob's /keys/changes lists her as left
    assert (await alice.post(f"{V3}/rooms/{room}/leave", {})).code == 200
    now = (await sync(bob))["next_batch"]
    resp = await bob.get(f"{V3}/keys/changes?from={got['next_batch']}&to={now}")
    assert resp.body["left"] == [a]
    assert (await bob.get(f"{V3}/keys/changes?from={now}")).code == 400


@pytest_twisted.ensureDeferred
async def test_sync_fast_path_reports_the_devices_own_counts(server: TestServer) -> None:
    alice = await server.register("alice", device_id="ADEV")
    bob = await server.register("bob")
    assert alice.user_id is not None and bob.user_id is not None
    room = (await alice.post(f"{V3}/createRoom", {"invite": [bob.user_id]})).body["room_id"]
    assert (await bob.post(f"{V3}/join/{room}", {})).code == 200
    await upload(alice, {"one_time_keys": otks(alice.user_id, "ADEV", ["1", "2", "3"]),
                         "fallback_keys": {"signed_curve25519:F": {"key": "f"}}})
    since = (await sync(alice))["next_batch"]
    before = server.hs.sync_handler.fast_answers
    for i in range(2):
        resp = await bob.put(f"{V3}/rooms/{room}/send/m.room.message/t{i}",
                             {"msgtype": "m.text", "body": f"hi {i}"})
        assert resp.code == 200, resp.body
        got = await sync(alice, since)
        since = got["next_batch"]
        assert room in got["rooms"]["join"]
        assert got["device_one_time_keys_count"] == {"signed_curve25519": 3}
        assert got["device_unused_fallback_key_types"] == ["signed_curve25519"]
        # a claim changes the counts the next answer carries
        await bob.post(f"{V3}/keys/claim",
                       {"one_time_keys": {alice.user_id: {"ADEV": "signed_curve25519"}}})
        await upload(alice, {"one_time_keys": otks(alice.user_id, "ADEV", [f"n{i}"])})
    assert server.hs.sync_handler.fast_answers > before
    # and a device without keys still sees signed_curve25519: 0
    assert (await sync(bob))["device_one_time_keys_count"] == {"signed_curve25519": 0}


@pytest_twisted.ensureDeferred
async def test_an_invited_user_is_someone_new_to_track_in_device_lists(
        server: TestServer) -> None:
    """As on Synapse, a member invited (not yet joined) shows in
    ``device_lists.changed``: a client encrypting for the room needs the
    invitee's keys too."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    assert bob.user_id is not None
    room = (await alice.post(f"{V3}/createRoom", {})).body["room_id"]
    since = (await sync(alice))["next_batch"]
    assert (await alice.post(f"{V3}/rooms/{room}/invite", {"user_id": bob.user_id})).code == 200
    assert bob.user_id in (await sync(alice, since))["device_lists"].get("changed", [])


@pytest_twisted.ensureDeferred
async def test_leaving_and_rejoining_between_syncs_is_a_new_join(server: TestServer) -> None:
    """As on Synapse: the room comes down as newly joined (full state), and
    its members as changed in device_lists, since their devices may have
    changed unheard while the user was out."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    assert alice.user_id is not None
    room = (await alice.post(f"{V3}/createRoom", {"preset": "public_chat"})).body["room_id"]
    assert (await bob.post(f"{V3}/join/{room}", {})).code == 200
    since = (await sync(bob))["next_batch"]
    assert (await bob.post(f"{V3}/rooms/{room}/leave", {})).code == 200
    assert (await bob.post(f"{V3}/join/{room}", {})).code == 200
    got = await sync(bob, since)
    assert alice.user_id in got["device_lists"].get("changed", [])
    state_types = {e["type"] for e in got["rooms"]["join"][room]["state"]["events"]} | {
        e["type"] for e in got["rooms"]["join"][room]["timeline"]["events"]}
    assert "m.room.create" in state_types
