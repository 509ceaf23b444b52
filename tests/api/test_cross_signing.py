"""Cross-signing: a user uploads master, self-signing and user-signing keys,
signs their devices and other users, and everyone sees it in /keys/query."""

from __future__ import annotations

import copy
from typing import Any

import pytest_twisted
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from signedjson.types import SigningKey

from tests.harness import Client, Response, TestServer

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery"


def new_key() -> SigningKey:
    """An ed25519 key whose key ID is its own public key, as cross-signing keys are."""
    key = generate_signing_key("tmp")
    key.version = encode_verify_key_base64(get_verify_key(key))
    return key


def pub(key: SigningKey) -> str:
    return encode_verify_key_base64(get_verify_key(key))


def cs_key(user_id: str, usage: str, key: SigningKey,
           signed_by: SigningKey | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"user_id": user_id, "usage": [usage],
                           "keys": {f"ed25519:{pub(key)}": pub(key)}}
    if signed_by is not None:
        obj = sign_json(obj, user_id, signed_by)
    return obj


class CrossSigner:
    """A user's three cross-signing keys and the upload body for them."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.master, self.ssk, self.usk = new_key(), new_key(), new_key()

    def body(self) -> dict[str, Any]:
        return {"master_key": cs_key(self.user_id, "master", self.master),
                "self_signing_key": cs_key(self.user_id, "self_signing", self.ssk, self.master),
                "user_signing_key": cs_key(self.user_id, "user_signing", self.usk, self.master)}


async def upload_device_keys(client: Client) -> tuple[SigningKey, dict[str, Any]]:
    """Upload signed device keys for ``client``'s device; returns its key and object."""
    assert client.user_id is not None and client.device_id is not None
    key = generate_signing_key(client.device_id)
    keys = {"user_id": client.user_id, "device_id": client.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{client.device_id}": pub(key),
                     f"curve25519:{client.device_id}": pub(generate_signing_key("c"))}}
    keys = sign_json(keys, client.user_id, key)
    resp = await client.post(f"{V3}/keys/upload", {"device_keys": keys})
    assert resp.code == 200, resp.body
    return key, keys


async def query(client: Client, *user_ids: str) -> dict[str, Any]:
    resp = await client.post(f"{V3}/keys/query", {"device_keys": {u: [] for u in user_ids}})
    assert resp.code == 200, resp.body
    body: dict[str, Any] = resp.body
    return body


async def upload_cs(client: Client, body: dict[str, Any]) -> Response:
    """device_signing/upload, completing user-interactive auth if asked."""
    first = await client.post(f"{V3}/keys/device_signing/upload", body)
    if first.code != 401:
        return first
    return await client.post(f"{V3}/keys/device_signing/upload", {
        **body, "auth": {"type": "m.login.password",
                         "identifier": {"type": "m.id.user", "user": client.user_id},
                         "password": PASSWORD, "session": first.body["session"]}})


@pytest_twisted.ensureDeferred
async def test_first_upload_needs_no_password_and_is_served(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    assert alice.user_id is not None and bob.user_id is not None
    signer = CrossSigner(alice.user_id)

    resp = await alice.post(f"{V3}/keys/device_signing/upload", signer.body())
    assert (resp.code, resp.body) == (200, {})

    own = await query(alice, alice.user_id)
    assert own["master_keys"][alice.user_id]["keys"] == {f"ed25519:{pub(signer.master)}":
                                                         pub(signer.master)}
    assert alice.user_id in own["self_signing_keys"]
    assert own["user_signing_keys"][alice.user_id]["usage"] == ["user_signing"]
    # others see the master and self-signing keys, never the user-signing key
    seen_by_bob = await query(bob, alice.user_id)
    assert seen_by_bob["master_keys"][alice.user_id] == own["master_keys"][alice.user_id]
    assert alice.user_id in seen_by_bob["self_signing_keys"]
    assert alice.user_id not in seen_by_bob.get("user_signing_keys", {})


@pytest_twisted.ensureDeferred
async def test_replacing_keys_asks_for_the_password(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id is not None
    first = CrossSigner(alice.user_id)
    assert (await alice.post(f"{V3}/keys/device_signing/upload", first.body())).code == 200
    # the same keys again (a client retrying): no password needed
    again = await alice.post(f"{V3}/keys/device_signing/upload", first.body())
    assert again.code == 200

    second = CrossSigner(alice.user_id)
    resp = await alice.post(f"{V3}/keys/device_signing/upload", second.body())
    assert resp.code == 401
    assert {"stages": ["m.login.password"]} in resp.body["flows"]
    still = await query(alice, alice.user_id)
    assert pub(first.master) in still["master_keys"][alice.user_id]["keys"].values()

    done = await upload_cs(alice, second.body())
    assert done.code == 200, done.body
    now = await query(alice, alice.user_id)
    assert pub(second.master) in now["master_keys"][alice.user_id]["keys"].values()


@pytest_twisted.ensureDeferred
async def test_malformed_or_badly_signed_keys_are_refused(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id is not None
    user = alice.user_id
    signer = CrossSigner(user)
    good = signer.body()
    other = new_key()
    two_keys = cs_key(user, "master", signer.master)
    two_keys["keys"][f"ed25519:{pub(other)}"] = pub(other)
    misnamed = cs_key(user, "master", signer.master)
    misnamed["keys"] = {"ed25519:nope": pub(signer.master)}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "master_key": cs_key(user, "self_signing", signer.master)},
         "M_INVALID_PARAM"),
        ({**good, "master_key": cs_key("@bob:test.local", "master", signer.master)},
         "M_INVALID_PARAM"),
        ({**good, "master_key": two_keys}, "M_INVALID_PARAM"),
        ({**good, "master_key": misnamed}, "M_INVALID_PARAM"),
        ({**good, "master_key": "not a key"}, "M_INVALID_PARAM"),
        # self-signing key signed by some other key, not the master key
        ({**good, "self_signing_key": cs_key(user, "self_signing", signer.ssk, other)},
         "M_INVALID_SIGNATURE"),
        ({**good, "user_signing_key": cs_key(user, "user_signing", signer.usk)},
         "M_INVALID_SIGNATURE"),
        # no master key to check the self-signing key against
        ({"self_signing_key": good["self_signing_key"]}, "M_INVALID_PARAM"),
    ]
    for body, errcode in cases:
        resp = await alice.post(f"{V3}/keys/device_signing/upload", body)
        assert (resp.code, resp.body.get("errcode")) == (400, errcode), body
    # a tampered signature of the master key
    tampered = copy.deepcopy(good)
    sigs = tampered["self_signing_key"]["signatures"][user]
    sig_id = next(iter(sigs))
    sigs[sig_id] = sigs[sig_id][:-4] + ("AAAA" if not sigs[sig_id].endswith("AAAA") else "BBBB")
    resp = await alice.post(f"{V3}/keys/device_signing/upload", tampered)
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_SIGNATURE")

    nothing = await query(alice, user)
    assert user not in nothing.get("master_keys", {})


@pytest_twisted.ensureDeferred
async def test_device_signed_by_self_signing_key_shows_the_signature(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    assert alice.user_id is not None and alice.device_id is not None
    user, device = alice.user_id, alice.device_id
    signer = CrossSigner(user)
    await alice.post(f"{V3}/keys/device_signing/upload", signer.body())
    _, device_keys = await upload_device_keys(alice)

    signed = sign_json({k: v for k, v in device_keys.items() if k != "signatures"},
                       user, signer.ssk)
    resp = await alice.post(f"{V3}/keys/signatures/upload", {user: {device: signed}})
    assert (resp.code, resp.body) == (200, {"failures": {}})

    got = (await query(bob, user))["device_keys"][user][device]
    assert got["signatures"][user][f"ed25519:{pub(signer.ssk)}"] == \
        signed["signatures"][user][f"ed25519:{pub(signer.ssk)}"]
    # the device's own signature is still there
    assert f"ed25519:{device}" in got["signatures"][user]


@pytest_twisted.ensureDeferred
async def test_bad_signatures_are_reported_and_not_stored(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id is not None and alice.device_id is not None
    user, device = alice.user_id, alice.device_id
    signer = CrossSigner(user)
    await alice.post(f"{V3}/keys/device_signing/upload", signer.body())
    _, device_keys = await upload_device_keys(alice)
    unsigned = {k: v for k, v in device_keys.items() if k != "signatures"}

    wrong_key = sign_json(dict(unsigned), user, new_key())
    changed = sign_json({**unsigned, "algorithms": ["m.megolm.v1.aes-sha2"]}, user, signer.ssk)
    resp = await alice.post(f"{V3}/keys/signatures/upload", {user: {
        device: wrong_key, "NOSUCHDEVICE": sign_json(dict(unsigned), user, signer.ssk)}})
    assert resp.code == 200
    assert resp.body["failures"][user][device]["errcode"] == "M_INVALID_SIGNATURE"
    assert "NOSUCHDEVICE" in resp.body["failures"][user]
    resp = await alice.post(f"{V3}/keys/signatures/upload", {user: {device: changed}})
    assert resp.body["failures"][user][device]["errcode"] == "M_INVALID_SIGNATURE"

    got = (await query(alice, user))["device_keys"][user][device]
    assert set(got["signatures"][user]) == {f"ed25519:{device}"}


@pytest_twisted.ensureDeferred
async def test_user_signs_another_users_master_key(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    assert alice.user_id and bob.user_id and carol.user_id
    a, b = CrossSigner(alice.user_id), CrossSigner(bob.user_id)
    await alice.post(f"{V3}/keys/device_signing/upload", a.body())
    await bob.post(f"{V3}/keys/device_signing/upload", b.body())
    bob_master = (await query(alice, bob.user_id))["master_keys"][bob.user_id]

    signed = sign_json({k: v for k, v in bob_master.items() if k != "signatures"},
                       alice.user_id, a.usk)
    resp = await alice.post(f"{V3}/keys/signatures/upload",
                            {bob.user_id: {pub(b.master): signed}})
    assert (resp.code, resp.body) == (200, {"failures": {}})

    sig_id = f"ed25519:{pub(a.usk)}"
    seen_by_alice = (await query(alice, bob.user_id))["master_keys"][bob.user_id]
    assert sig_id in seen_by_alice["signatures"][alice.user_id]
    # only the signer sees their user-signing key's signature
    seen_by_carol = (await query(carol, bob.user_id))["master_keys"][bob.user_id]
    assert alice.user_id not in seen_by_carol.get("signatures", {})

    forged = sign_json({k: v for k, v in bob_master.items() if k != "signatures"},
                       alice.user_id, a.ssk)
    forged["signatures"][alice.user_id][sig_id] = \
        forged["signatures"][alice.user_id].pop(f"ed25519:{pub(a.ssk)}")
    resp = await carol.post(f"{V3}/keys/signatures/upload",
                            {bob.user_id: {pub(b.master): forged}})
    assert resp.body["failures"][bob.user_id][pub(b.master)]["errcode"] == \
        "M_INVALID_SIGNATURE"


@pytest_twisted.ensureDeferred
async def test_device_signs_its_users_master_key(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id is not None and alice.device_id is not None
    user, device = alice.user_id, alice.device_id
    signer = CrossSigner(user)
    await alice.post(f"{V3}/keys/device_signing/upload", signer.body())
    device_key, _ = await upload_device_keys(alice)
    master = (await query(alice, user))["master_keys"][user]

    signed = sign_json({k: v for k, v in master.items() if k != "signatures"}, user,
                       device_key)
    resp = await alice.post(f"{V3}/keys/signatures/upload",
                            {user: {pub(signer.master): signed}})
    assert (resp.code, resp.body) == (200, {"failures": {}})
    bob = await server.register("bob")
    seen = (await query(bob, user))["master_keys"][user]
    assert f"ed25519:{device}" in seen["signatures"][user]

    bad = sign_json({k: v for k, v in master.items() if k != "signatures"}, user,
                    generate_signing_key(device))
    resp = await alice.post(f"{V3}/keys/signatures/upload", {user: {pub(signer.master): bad}})
    assert resp.body["failures"][user][pub(signer.master)]["errcode"] == "M_INVALID_SIGNATURE"


@pytest_twisted.ensureDeferred
async def test_room_mates_hear_of_new_cross_signing_keys(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    assert alice.user_id is not None
    room = await alice.post(f"{V3}/createRoom", {"preset": "public_chat"})
    room_id = room.body["room_id"]
    assert (await bob.post(f"{V3}/join/{room_id}", {})).code == 200
    since = (await bob.get(f"{V3}/sync")).body["next_batch"]

    await alice.post(f"{V3}/keys/device_signing/upload", CrossSigner(alice.user_id).body())

    resp = await bob.get(f"{V3}/sync", params={"since": since, "timeout": "5000"})
    assert alice.user_id in resp.body.get("device_lists", {}).get("changed", [])


async def changed_since(client: Client, since: str) -> tuple[list[str], str]:
    resp = await client.get(f"{V3}/sync", params={"since": since, "timeout": "0"})
    assert resp.code == 200, resp.body
    changed: list[str] = resp.body.get("device_lists", {}).get("changed", [])
    return changed, resp.body["next_batch"]


@pytest_twisted.ensureDeferred
async def test_user_signing_key_and_its_signatures_are_news_to_the_signer_alone(
        server: TestServer) -> None:
    """As Synapse's user signature stream: a new user-signing key shows the
    user as changed to themself only; their signature of bob's master key
    shows bob as changed to them only (bob and room mates hear nothing)."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    a, b = alice.user_id, bob.user_id
    assert a is not None and b is not None
    room_id = (await alice.post(f"{V3}/createRoom", {"preset": "public_chat"})).body["room_id"]
    assert (await bob.post(f"{V3}/join/{room_id}", {})).code == 200
    signer, bob_signer = CrossSigner(a), CrossSigner(b)
    body = signer.body()
    usk = body.pop("user_signing_key")
    # the unstable prefix, where cross-signing was first served, works too
    resp = await alice.post("/_matrix/client/unstable/keys/device_signing/upload", body)
    assert resp.code == 200, resp.body
    assert (await bob.post(f"{V3}/keys/device_signing/upload", bob_signer.body())).code == 200
    alice_since = (await alice.get(f"{V3}/sync")).body["next_batch"]
    bob_since = (await bob.get(f"{V3}/sync")).body["next_batch"]

    resp = await alice.post(f"{V3}/keys/device_signing/upload", {
        "user_signing_key": usk,
        "auth": {"type": "m.login.password", "user": a, "password": PASSWORD}})
    assert resp.code == 200, resp.body
    changed, alice_since = await changed_since(alice, alice_since)
    assert a in changed
    changed, bob_since = await changed_since(bob, bob_since)
    assert a not in changed

    before = alice_since
    bob_master = (await query(alice, b))["master_keys"][b]
    signed = sign_json({k: v for k, v in bob_master.items() if k != "signatures"}, a,
                       signer.usk)
    resp = await alice.post("/_matrix/client/unstable/keys/signatures/upload",
                            {b: {pub(bob_signer.master): signed}})
    assert (resp.code, resp.body) == (200, {"failures": {}})
    changed, alice_since = await changed_since(alice, alice_since)
    assert b in changed and a not in changed
    changed, bob_since = await changed_since(bob, bob_since)
    assert changed == []
    keys_changes = await alice.get(f"{V3}/keys/changes",
                                   params={"from": before, "to": alice_since})
    assert keys_changes.code == 200, keys_changes.body
    assert b in keys_changes.body["changed"]
