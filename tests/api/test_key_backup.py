"""Server-side key backup: a user's devices back up and restore megolm sessions."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"
ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:test.local"
AUTH_DATA = {"public_key": "abcdefg",
             "signatures": {"@alice:test.local": {"ed25519:DEV": "sig"}}}


def key(fmi: int = 0, forwarded: int = 0, verified: bool = False,
        tag: str = "x") -> dict[str, Any]:
    return {"first_message_index": fmi, "forwarded_count": forwarded,
            "is_verified": verified,
            "session_data": {"ephemeral": tag, "ciphertext": tag, "mac": tag}}


async def new_version(client: Client) -> str:
    resp = await client.post(f"{V3}/room_keys/version",
                             {"algorithm": ALGORITHM, "auth_data": AUTH_DATA})
    assert resp.code == 200, resp.body
    version: str = resp.body["version"]
    return version


@pytest_twisted.ensureDeferred
async def test_user_creates_and_reads_a_backup_version(server: TestServer) -> None:
    alice = await server.register("alice")
    none = await alice.get(f"{V3}/room_keys/version")
    assert (none.code, none.body["errcode"]) == (404, "M_NOT_FOUND")

    version = await new_version(alice)

    current = await alice.get(f"{V3}/room_keys/version")
    assert current.code == 200
    assert current.body == {"algorithm": ALGORITHM, "auth_data": AUTH_DATA, "count": 0,
                            "etag": current.body["etag"], "version": version}
    by_number = await alice.get(f"{V3}/room_keys/version/{version}")
    assert by_number.body == current.body
    # someone else's backup is not visible
    bob = await server.register("bob")
    assert (await bob.get(f"{V3}/room_keys/version/{version}")).code == 404


@pytest_twisted.ensureDeferred
async def test_keys_round_trip_with_etag_and_count(server: TestServer) -> None:
    alice = await server.register("alice")
    version = await new_version(alice)
    etag0 = (await alice.get(f"{V3}/room_keys/version")).body["etag"]

    put = await alice.put(f"{V3}/room_keys/keys", {"rooms": {ROOM: {"sessions": {
        "s1": key(), "s2": key(tag="y")}}}}, params={"version": version})
    assert put.code == 200, put.body
    assert put.body["count"] == 2 and put.body["etag"] != etag0

    everything = await alice.get(f"{V3}/room_keys/keys", params={"version": version})
    assert everything.body == {"rooms": {ROOM: {"sessions": {"s1": key(),
                                                             "s2": key(tag="y")}}}}
    room = await alice.get(f"{V3}/room_keys/keys/{ROOM}", params={"version": version})
    assert set(room.body["sessions"]) == {"s1", "s2"}
    one = await alice.get(f"{V3}/room_keys/keys/{ROOM}/s2", params={"version": version})
    assert one.body == key(tag="y")
    missing = await alice.get(f"{V3}/room_keys/keys/{ROOM}/s9", params={"version": version})
    assert missing.code == 404
    info = await alice.get(f"{V3}/room_keys/version/{version}")
    assert (info.body["count"], info.body["etag"]) == (2, put.body["etag"])


@pytest_twisted.ensureDeferred
async def test_better_key_replaces_and_worse_key_is_ignored(server: TestServer) -> None:
    alice = await server.register("alice")
    version = await new_version(alice)
    path = f"{V3}/room_keys/keys/{ROOM}/s1"
    q = {"version": version}
    await alice.put(path, key(fmi=5, forwarded=1, tag="first"), params=q)

    # later index: worse, kept out (and the etag does not move)
    before = (await alice.put(path, key(fmi=5, forwarded=1, tag="first"), params=q)).body
    worse = await alice.put(path, key(fmi=9, tag="worse"), params=q)
    assert worse.body == before
    assert (await alice.get(path, params=q)).body["session_data"]["ciphertext"] == "first"

    # lower index wins
    await alice.put(path, key(fmi=2, forwarded=3, tag="lower"), params=q)
    assert (await alice.get(path, params=q)).body["session_data"]["ciphertext"] == "lower"
    # same index, fewer forwards wins
    await alice.put(path, key(fmi=2, forwarded=0, tag="direct"), params=q)
    assert (await alice.get(path, params=q)).body["session_data"]["ciphertext"] == "direct"
    # verified beats everything unverified, even with a later index
    await alice.put(path, key(fmi=50, forwarded=9, verified=True, tag="verified"), params=q)
    assert (await alice.get(path, params=q)).body["session_data"]["ciphertext"] == "verified"
    await alice.put(path, key(fmi=0, tag="unverified"), params=q)
    got = (await alice.get(path, params=q)).body
    assert (got["session_data"]["ciphertext"], got["is_verified"]) == ("verified", True)


@pytest_twisted.ensureDeferred
async def test_only_the_latest_version_takes_keys(server: TestServer) -> None:
    alice = await server.register("alice")
    old = await new_version(alice)
    new = await new_version(alice)
    assert int(new) > int(old)

    resp = await alice.put(f"{V3}/room_keys/keys/{ROOM}/s1", key(), params={"version": old})
    assert resp.code == 403
    assert resp.body["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
    assert resp.body["current_version"] == new
    # the old version can still be read
    assert (await alice.get(f"{V3}/room_keys/version/{old}")).code == 200
    nothing = await alice.put(f"{V3}/room_keys/keys/{ROOM}/s1", key(),
                              params={"version": "nope"})
    assert nothing.code == 403


@pytest_twisted.ensureDeferred
async def test_keys_without_any_backup_are_404(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.put(f"{V3}/room_keys/keys/{ROOM}/s1", key(), params={"version": "1"})
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    get = await alice.get(f"{V3}/room_keys/keys", params={"version": "1"})
    assert get.code == 404
    no_param = await alice.get(f"{V3}/room_keys/keys")
    assert (no_param.code, no_param.body["errcode"]) == (400, "M_MISSING_PARAM")


@pytest_twisted.ensureDeferred
async def test_malformed_keys_are_refused_and_nothing_stored(server: TestServer) -> None:
    alice = await server.register("alice")
    version = await new_version(alice)
    q = {"version": version}
    bad_keys: list[Any] = [
        {**key(), "first_message_index": "0"},
        {**key(), "forwarded_count": -1},
        {**key(), "is_verified": "yes"},
        {k: v for k, v in key().items() if k != "session_data"},
    ]
    for bad in bad_keys:
        resp = await alice.put(f"{V3}/room_keys/keys", {"rooms": {ROOM: {"sessions": {
            "good": key(), "bad": bad}}}}, params=q)
        assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON"), bad
    resp = await alice.put(f"{V3}/room_keys/keys", {"rooms": []}, params=q)
    assert resp.code == 400
    info = await alice.get(f"{V3}/room_keys/version/{version}")
    assert info.body["count"] == 0


@pytest_twisted.ensureDeferred
async def test_deleting_keys_changes_count_and_etag(server: TestServer) -> None:
    alice = await server.register("alice")
    version = await new_version(alice)
    q = {"version": version}
    await alice.put(f"{V3}/room_keys/keys", {"rooms": {
        ROOM: {"sessions": {"s1": key(), "s2": key()}},
        "!other:test.local": {"sessions": {"s3": key()}}}}, params=q)
    etag = (await alice.get(f"{V3}/room_keys/version")).body["etag"]

    one = await alice.delete(f"{V3}/room_keys/keys/{ROOM}/s1", params=q)
    assert one.body["count"] == 2 and one.body["etag"] != etag
    room = await alice.delete(f"{V3}/room_keys/keys/{ROOM}", params=q)
    assert room.body["count"] == 1
    everything = await alice.delete(f"{V3}/room_keys/keys", params=q)
    assert everything.body["count"] == 0
    left = await alice.get(f"{V3}/room_keys/keys", params=q)
    assert left.body == {"rooms": {}}


@pytest_twisted.ensureDeferred
async def test_update_and_delete_a_version(server: TestServer) -> None:
    alice = await server.register("alice")
    version = await new_version(alice)
    new_auth = {"public_key": "hijklmn"}

    wrong_alg = await alice.put(f"{V3}/room_keys/version/{version}",
                                {"algorithm": "m.other", "auth_data": new_auth})
    assert (wrong_alg.code, wrong_alg.body["errcode"]) == (400, "M_INVALID_PARAM")
    wrong_version = await alice.put(f"{V3}/room_keys/version/{version}",
                                    {"algorithm": ALGORITHM, "auth_data": new_auth,
                                     "version": "77"})
    assert wrong_version.code == 400
    ok = await alice.put(f"{V3}/room_keys/version/{version}",
                         {"algorithm": ALGORITHM, "auth_data": new_auth, "version": version})
    assert (ok.code, ok.body) == (200, {})
    assert (await alice.get(f"{V3}/room_keys/version")).body["auth_data"] == new_auth

    await alice.put(f"{V3}/room_keys/keys/{ROOM}/s1", key(), params={"version": version})
    deleted = await alice.delete(f"{V3}/room_keys/version/{version}")
    assert (deleted.code, deleted.body) == (200, {})
    assert (await alice.get(f"{V3}/room_keys/version")).code == 404
    assert (await alice.delete(f"{V3}/room_keys/version/{version}")).code == 404
    # the number is not reused
    assert int(await new_version(alice)) > int(version)
    missing = await alice.put(f"{V3}/room_keys/version/999",
                              {"algorithm": ALGORITHM, "auth_data": new_auth})
    assert missing.code == 404


@pytest_twisted.ensureDeferred
async def test_auth_data_and_session_data_are_kept_as_sent_whatever_their_shape(
        server: TestServer) -> None:
    """Their shape is the backup algorithm's business: an opaque string (as
    older clients and SyTest send) is stored and served back, as Synapse does."""
    alice = await server.register("alice")
    created = await alice.post(f"{V3}/room_keys/version",
                               {"algorithm": "m.megolm_backup.v1", "auth_data": "anopaquestring"})
    assert created.code == 200, created.body
    version = created.body["version"]
    info = (await alice.get(f"{V3}/room_keys/version")).body
    assert (info["algorithm"], info["auth_data"], info["version"]) == (
        "m.megolm_backup.v1", "anopaquestring", version)
    updated = await alice.put(f"{V3}/room_keys/version/{version}",
                              {"algorithm": "m.megolm_backup.v1",
                               "auth_data": "adifferentopaquestring", "version": version})
    assert (updated.code, updated.body) == (200, {})
    info = (await alice.get(f"{V3}/room_keys/version/{version}")).body
    assert info["auth_data"] == "adifferentopaquestring"
    missing = await alice.post(f"{V3}/room_keys/version", {"algorithm": "m.megolm_backup.v1"})
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")

    session = {"first_message_index": 3, "forwarded_count": 0, "is_verified": False,
               "session_data": "anopaquestring"}
    put = await alice.put(f"{V3}/room_keys/keys/!abcd/1234", session,
                          params={"version": version})
    assert (put.code, put.body["count"]) == (200, 1)
    got = await alice.get(f"{V3}/room_keys/keys/!abcd/1234", params={"version": version})
    assert got.body == session
    # an empty backup answers empty sessions and rooms, not 404
    empty = await new_version(alice)
    room = await alice.get(f"{V3}/room_keys/keys/!notaroom", params={"version": empty})
    assert (room.code, room.body) == (200, {"sessions": {}})
    everything = await alice.get(f"{V3}/room_keys/keys", params={"version": empty})
    assert (everything.code, everything.body) == (200, {"rooms": {}})
    one = await alice.get(f"{V3}/room_keys/keys/!notaroom/nosession", params={"version": empty})
    assert (one.code, one.body["errcode"]) == (404, "M_NOT_FOUND")
    bogus = await alice.get(f"{V3}/room_keys/keys", params={"version": "bogusversion"})
    assert (bogus.code, bogus.body["errcode"]) == (404, "M_NOT_FOUND")
