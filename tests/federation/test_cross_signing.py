"""Cross-signing across servers: a user's master and self-signing keys reach
the servers of their room mates (m.signing_key_update) and are served in
/keys/query there; the user-signing key never leaves its server."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest_twisted
from signedjson.sign import sign_json

from tests.api.test_cross_signing import (
    CrossSigner,
    cs_key,
    new_key,
    pub,
    query,
    upload_device_keys,
)
from tests.federation.harness import server_name
from tests.federation.test_rooms import wait_for
from tests.harness import Client, TestServer
from tests.helpers import create_public_room as create_room

V3 = "/_matrix/client/v3"


async def shared_room(a: TestServer, b: TestServer) -> tuple[Client, Client, str]:
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice)
    resp = await bob.post(f"{V3}/join/{quote(room_id, safe='')}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    return alice, bob, room_id


@pytest_twisted.ensureDeferred
async def test_room_mates_server_gets_and_serves_new_keys(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice, bob, _ = await shared_room(a, b)
    assert alice.user_id is not None
    since = (await bob.get(f"{V3}/sync")).body["next_batch"]
    signer = CrossSigner(alice.user_id)

    resp = await alice.post(f"{V3}/keys/device_signing/upload", signer.body())
    assert resp.code == 200, resp.body

    # the EDU arrives: bob's server has alice's keys, but not her user-signing key
    async def arrived() -> dict[str, Any] | None:
        keys = await b.hs.stores.cross_signing.get_user_keys(alice.user_id or "")
        return keys if "self_signing" in keys else None
    stored = await wait_for(arrived)
    assert set(stored) == {"master", "self_signing"}
    assert pub(signer.master) in stored["master"]["keys"].values()
    # and bob's client is told to look again
    changed = await bob.get(f"{V3}/sync", params={"since": since, "timeout": "10000"})
    assert alice.user_id in changed.body.get("device_lists", {}).get("changed", [])

    answer = await query(bob, alice.user_id)
    assert pub(signer.master) in answer["master_keys"][alice.user_id]["keys"].values()
    assert pub(signer.ssk) in answer["self_signing_keys"][alice.user_id]["keys"].values()
    assert alice.user_id not in answer.get("user_signing_keys", {})


@pytest_twisted.ensureDeferred
async def test_bad_signing_key_updates_are_dropped(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice, _, _ = await shared_room(a, b)
    assert alice.user_id is not None
    user = alice.user_id
    master, ssk, other = new_key(), new_key(), new_key()
    origin = server_name(a)
    edus = b.hs.edu_handler
    # self-signing key not signed by the master key
    await edus.on_edu(origin, "m.signing_key_update", {
        "user_id": user, "master_key": cs_key(user, "master", master),
        "self_signing_key": cs_key(user, "self_signing", ssk, other)})
    # a user of another server than the sender
    await edus.on_edu("evil.example", "m.signing_key_update", {
        "user_id": user, "master_key": cs_key(user, "master", master)})
    # malformed keys
    await edus.on_edu(origin, "m.signing_key_update", {
        "user_id": user, "master_key": {"keys": "nope"}})
    await edus.on_edu(origin, "m.signing_key_update", {"user_id": 5})
    assert await b.hs.stores.cross_signing.get_user_keys(user) == {}

    # a proper one is taken
    await edus.on_edu(origin, "m.signing_key_update", {
        "user_id": user, "master_key": cs_key(user, "master", master),
        "self_signing_key": cs_key(user, "self_signing", ssk, master)})
    assert set(await b.hs.stores.cross_signing.get_user_keys(user)) == \
        {"master", "self_signing"}


@pytest_twisted.ensureDeferred
async def test_a_device_signed_later_reaches_the_room_mates_server(federation: Any) -> None:
    """Signing one's device with the self-signing key is a device list
    change: the signature travels in m.device_list_update and bob's server,
    which holds a copy of alice's devices, serves it."""
    server_a = await federation()
    server_b = await federation()
    alice, bob, _ = await shared_room(server_a, server_b)
    a = alice.user_id
    assert a is not None and alice.device_id is not None
    signer = CrossSigner(a)
    assert (await alice.post(f"{V3}/keys/device_signing/upload", signer.body())).code == 200
    _, device = await upload_device_keys(alice)
    # bob's server fetches alice's device list (a copy it keeps current)
    first = await query(bob, a)
    assert set(first["device_keys"][a]) == {alice.device_id}

    signed = sign_json({k: v for k, v in device.items() if k != "signatures"}, a, signer.ssk)
    resp = await alice.post(f"{V3}/keys/signatures/upload", {a: {alice.device_id: signed}})
    assert (resp.code, resp.body) == (200, {"failures": {}})
    sig_id = f"ed25519:{pub(signer.ssk)}"

    async def signature_seen() -> bool:
        got = (await query(bob, a))["device_keys"][a].get(alice.device_id, {})
        return sig_id in got.get("signatures", {}).get(a, {})

    await wait_for(signature_seen)
