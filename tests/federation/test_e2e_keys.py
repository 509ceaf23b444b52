"""Device keys across servers: a user on one server queries and claims the
keys of a user on another; device list changes travel as
m.device_list_update and keep the other server's cache current."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from homeserver.e2e.keys import E2eKeyHandler
from homeserver.storage.e2e_keys import RemoteDevice
from tests.api.test_keys import device_keys, otks, sync
from tests.federation.harness import server_name
from tests.federation.test_rooms import q, wait_for
from tests.harness import Client
from tests.helpers import create_public_room as create_room

V3 = "/_matrix/client/v3"


async def upload(client: Client, body: dict[str, Any]) -> None:
    resp = await client.post(f"{V3}/keys/upload", body)
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_remote_user_queries_and_claims_keys(federation: Any) -> None:
    server_a = await federation()
    server_b = await federation()
    alice = await server_a.register("alice", device_id="ADEV")
    bob = await server_b.register("bob")
    a = alice.user_id
    assert a is not None
    keys = device_keys(a, "ADEV")
    await upload(alice, {"device_keys": keys, "one_time_keys": otks(a, "ADEV", ["K1"]),
                         "fallback_keys": {"signed_curve25519:FB": {"key": "fb"}}})

    # no room shared: bob's server asks alice's
    nowhere = "@ghost:localhost:1"
    resp = await bob.post(f"{V3}/keys/query",
                          {"device_keys": {a: [], nowhere: []}, "timeout": 3000})
    assert resp.code == 200, resp.body
    assert resp.body["device_keys"][a]["ADEV"]["keys"] == keys["keys"]
    assert resp.body["device_keys"][a]["ADEV"]["signatures"] == keys["signatures"]
    assert set(resp.body["failures"]) == {"localhost:1"}

    claims = []
    for _ in range(2):
        resp = await bob.post(f"{V3}/keys/claim", {"one_time_keys": {
            a: {"ADEV": "signed_curve25519", "NOSUCH": "signed_curve25519"}}})
        assert resp.code == 200, resp.body
        assert set(resp.body["one_time_keys"][a]) == {"ADEV"}
        claims.append(resp.body["one_time_keys"][a]["ADEV"])
    assert list(claims[0]) == ["signed_curve25519:K1"]
    assert claims[1] == {"signed_curve25519:FB": {"key": "fb"}}
    # alice's device hears its one-time key went and its fallback key is used
    body = await sync(alice)
    assert body["device_one_time_keys_count"]["signed_curve25519"] == 0
    assert body["device_unused_fallback_key_types"] == []

    # another server may only ask us about our own users
    resp = await server_b.hs.federation_client.post_json(
        server_name(server_a), "/_matrix/federation/v1/user/keys/query",
        {"device_keys": {a: [], "@someone:elsewhere": []}})
    assert set(resp["device_keys"]) == {a}
    resp = await server_b.hs.federation_client.post_json(
        server_name(server_a), "/_matrix/federation/v1/user/keys/claim",
        {"one_time_keys": {"@someone:elsewhere": {"X": "signed_curve25519"}}})
    assert resp == {"one_time_keys": {}}


@pytest_twisted.ensureDeferred
async def test_device_list_updates_reach_the_other_server(federation: Any) -> None:
    server_a = await federation()
    server_b = await federation()
    alice = await server_a.register("alice", device_id="PHONE")
    bob = await server_b.register("bob")
    a = alice.user_id
    assert a is not None
    room_id = await create_room(alice)
    resp = await bob.post(f"{V3}/join/{q(room_id)}?server_name={server_name(server_a)}", {})
    assert resp.code == 200, resp.body
    since = (await sync(bob))["next_batch"]

    # alice's phone uploads its keys: bob's /sync hears, and his server
    # caches alice's devices (a resync: it had nothing before)
    phone_keys = device_keys(a, "PHONE")
    await upload(alice, {"device_keys": phone_keys})
    cache = server_b.hs.stores.e2e_keys

    async def cached_devices() -> Any:
        found, missing = await cache.get_cached_remote_keys({a: []})
        return set(found.get(a, {})) if not missing else None

    await wait_for(lambda: _changed(bob, since, a))
    assert await wait_for(cached_devices) == {"PHONE"}

    # a second device: applied in order on top of the cache
    session = await server_a.hs.sessions.create_login_session(a, "LAPTOP")
    laptop = server_a.client(session.access_token)
    await upload(laptop, {"device_keys": device_keys(a, "LAPTOP")})
    await wait_for(lambda: _has(cached_devices, {"PHONE", "LAPTOP"}))
    stream_a, _ = await server_a.hs.stores.e2e_keys.get_local_device_list(a)
    await wait_for(lambda: _stream_is(cache, a, stream_a))

    # bob's query is answered from the cache, with the keys as uploaded
    resp = await bob.post(f"{V3}/keys/query", {"device_keys": {a: []}})
    assert set(resp.body["device_keys"][a]) == {"PHONE", "LAPTOP"}
    assert resp.body["device_keys"][a]["PHONE"]["keys"] == phone_keys["keys"]

    # the laptop is deleted: it goes from bob's view too
    await server_a.hs.stores.devices.delete_devices(a, ["LAPTOP"])
    await wait_for(lambda: _has(cached_devices, {"PHONE"}))
    resp = await bob.post(f"{V3}/keys/query", {"device_keys": {a: []}})
    assert set(resp.body["device_keys"][a]) == {"PHONE"}


async def _changed(client: Client, since: str, user_id: str) -> bool:
    return user_id in (await sync(client, since))["device_lists"].get("changed", [])


async def _has(get: Any, wanted: set[str]) -> bool:
    return bool(await get() == wanted)


async def _stream_is(cache: Any, user_id: str, stream_id: int) -> bool:
    return bool(await cache.get_remote_stream_id(user_id) == stream_id)


@pytest_twisted.ensureDeferred
async def test_the_copy_of_a_remote_device_list_follows_the_rooms_shared(
        federation: Any) -> None:
    """A query for a user whose devices we hold no copy of, sharing a room,
    fetches their whole list and keeps it; when no room is shared any more
    the copy goes (updates stop coming), and the next query after a rejoin
    fetches it afresh, seeing the device added meanwhile."""
    server_a = await federation()
    server_b = await federation()
    alice = await server_a.register("alice", device_id="PHONE")
    bob = await server_b.register("bob")
    a = alice.user_id
    assert a is not None
    await upload(alice, {"device_keys": device_keys(a, "PHONE")})
    room_id = await create_room(alice)
    join = f"{V3}/join/{q(room_id)}?server_name={server_name(server_a)}"
    assert (await bob.post(join, {})).code == 200
    cache = server_b.hs.stores.e2e_keys
    assert await cache.get_remote_stream_id(a) is None

    since = (await sync(bob))["next_batch"]
    resp = await bob.post(f"{V3}/keys/query", {"device_keys": {a: []}})
    assert resp.code == 200, resp.body
    assert set(resp.body["device_keys"][a]) == {"PHONE"}
    assert resp.body["failures"] == {}
    assert await cache.get_remote_stream_id(a) is not None
    # the fetch counts as a change of alice's devices for bob's /sync
    assert await _changed(bob, since, a)

    assert (await bob.post(f"{V3}/rooms/{q(room_id)}/leave", {})).code == 200

    async def forgotten() -> bool:
        return await cache.get_remote_stream_id(a) is None

    await wait_for(forgotten)
    session = await server_a.hs.sessions.create_login_session(a, "LAPTOP")
    await upload(server_a.client(session.access_token), {"device_keys": device_keys(a, "LAPTOP")})

    assert (await bob.post(join, {})).code == 200
    resp = await bob.post(f"{V3}/keys/query", {"device_keys": {a: []}})
    assert set(resp.body["device_keys"][a]) == {"PHONE", "LAPTOP"}


@pytest_twisted.ensureDeferred
async def test_keys_a_remote_server_sends_are_kept_unless_they_name_another_device(
        federation: Any) -> None:
    """Device keys in a /user/devices answer are for clients to check: kept
    as sent (even without user_id and device_id), with an ``unsigned``
    carrying the name; keys naming another user or device are dropped."""
    assert E2eKeyHandler._keys_ok({"device_keys": {}}, "@a:x", "D")
    assert E2eKeyHandler._keys_ok({"user_id": "@a:x", "device_id": "D"}, "@a:x", "D")
    assert not E2eKeyHandler._keys_ok({"user_id": "@m:x", "device_id": "D"}, "@a:x", "D")
    assert not E2eKeyHandler._keys_ok({"user_id": "@a:x", "device_id": "E"}, "@a:x", "D")
    server_b = await federation()
    cache = server_b.hs.stores.e2e_keys
    await cache.replace_remote_devices("@a:x", 1, [
        RemoteDevice("D", "Curiosity Rover", {"device_keys": {}})])
    found, missing = await cache.get_cached_remote_keys({"@a:x": []})
    assert not missing
    assert found["@a:x"]["D"] == {"device_keys": {},
                                  "unsigned": {"device_display_name": "Curiosity Rover"}}
