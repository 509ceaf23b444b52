"""Profiles: anyone reads a user's display name and avatar; only the user changes them."""

from __future__ import annotations

import pytest_twisted

from tests.harness import TestServer

V3 = "/_matrix/client/v3"
ALICE = "@alice:test.local"
AVATAR = "mxc://test.local/AbCdEf123_-"


@pytest_twisted.ensureDeferred
async def test_new_user_is_named_after_their_localpart(server: TestServer) -> None:
    await server.register("alice")
    resp = await server.client().get(f"{V3}/profile/{ALICE}")
    assert (resp.code, resp.body) == (200, {"displayname": "alice"})


@pytest_twisted.ensureDeferred
async def test_user_sets_their_display_name(server: TestServer) -> None:
    alice = await server.register("alice")

    resp = await alice.put(f"{V3}/profile/{ALICE}/displayname", {"displayname": "Alice A."})

    assert (resp.code, resp.body) == (200, {})
    name = await server.client().get(f"{V3}/profile/{ALICE}/displayname")
    assert (name.code, name.body) == (200, {"displayname": "Alice A."})


@pytest_twisted.ensureDeferred
async def test_user_sets_their_avatar(server: TestServer) -> None:
    alice = await server.register("alice")

    resp = await alice.put(f"{V3}/profile/{ALICE}/avatar_url", {"avatar_url": AVATAR})

    assert resp.code == 200
    avatar = await server.client().get(f"{V3}/profile/{ALICE}/avatar_url")
    assert avatar.body == {"avatar_url": AVATAR}
    whole = await server.client().get(f"{V3}/profile/{ALICE}")
    assert whole.body == {"displayname": "alice", "avatar_url": AVATAR}


@pytest_twisted.ensureDeferred
async def test_unset_avatar_is_left_out(server: TestServer) -> None:
    await server.register("alice")
    resp = await server.client().get(f"{V3}/profile/{ALICE}/avatar_url")
    assert (resp.code, resp.body) == (200, {})


@pytest_twisted.ensureDeferred
async def test_empty_string_clears_a_field(server: TestServer) -> None:
    alice = await server.register("alice")
    await alice.put(f"{V3}/profile/{ALICE}/avatar_url", {"avatar_url": AVATAR})

    await alice.put(f"{V3}/profile/{ALICE}/avatar_url", {"avatar_url": ""})
    await alice.put(f"{V3}/profile/{ALICE}/displayname", {"displayname": ""})

    name = await alice.get(f"{V3}/profile/{ALICE}/displayname")
    assert (name.code, name.body) == (200, {})
    # nothing left to show, as on Synapse
    whole = await alice.get(f"{V3}/profile/{ALICE}")
    assert (whole.code, whole.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_display_name_is_trimmed(server: TestServer) -> None:
    alice = await server.register("alice")
    await alice.put(f"{V3}/profile/{ALICE}/displayname", {"displayname": "  Alice  "})
    name = await alice.get(f"{V3}/profile/{ALICE}/displayname")
    assert name.body == {"displayname": "Alice"}


@pytest_twisted.ensureDeferred
async def test_nobody_else_may_change_a_profile(server: TestServer) -> None:
    await server.register("alice")
    bob = await server.register("bob")

    name = await bob.put(f"{V3}/profile/{ALICE}/displayname", {"displayname": "Mallory"})
    avatar = await bob.put(f"{V3}/profile/{ALICE}/avatar_url", {"avatar_url": AVATAR})

    for resp in (name, avatar):
        assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    whole = await bob.get(f"{V3}/profile/{ALICE}")
    assert whole.body == {"displayname": "alice"}


@pytest_twisted.ensureDeferred
async def test_admin_may_change_another_users_profile(server: TestServer) -> None:
    await server.register("alice")
    admin = await server.register("admin", admin=True)

    resp = await admin.put(f"{V3}/profile/{ALICE}/displayname", {"displayname": "Renamed"})

    assert resp.code == 200
    name = await admin.get(f"{V3}/profile/{ALICE}/displayname")
    assert name.body == {"displayname": "Renamed"}


@pytest_twisted.ensureDeferred
async def test_admin_changing_an_unknown_users_profile_is_404(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    resp = await admin.put(f"{V3}/profile/@nobody:test.local/displayname",
                           {"displayname": "Ghost"})
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_changing_a_remote_users_profile_is_forbidden(server: TestServer) -> None:
    alice = await server.register("alice")
    admin = await server.register("admin", admin=True)
    for client in (alice, admin):
        resp = await client.put(f"{V3}/profile/@alice:elsewhere.example/displayname",
                                {"displayname": "x"})
        assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_changing_a_profile_needs_a_token(server: TestServer) -> None:
    await server.register("alice")
    resp = await server.client().put(f"{V3}/profile/{ALICE}/displayname", {"displayname": "x"})
    assert (resp.code, resp.body["errcode"]) == (401, "M_MISSING_TOKEN")


@pytest_twisted.ensureDeferred
async def test_profile_values_must_be_strings(server: TestServer) -> None:
    alice = await server.register("alice")
    for field in ("displayname", "avatar_url"):
        for bad in (42, None, ["x"], {"x": 1}, True):
            resp = await alice.put(f"{V3}/profile/{ALICE}/{field}", {field: bad})
            assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM"), (field, bad)
        missing = await alice.put(f"{V3}/profile/{ALICE}/{field}", {})
        assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    whole = await alice.get(f"{V3}/profile/{ALICE}")
    assert whole.body == {"displayname": "alice"}


@pytest_twisted.ensureDeferred
async def test_display_name_over_256_characters_is_refused(server: TestServer) -> None:
    alice = await server.register("alice")

    too_long = await alice.put(f"{V3}/profile/{ALICE}/displayname",
                               {"displayname": "x" * 257})
    assert (too_long.code, too_long.body["errcode"]) == (400, "M_INVALID_PARAM")
    name = await alice.get(f"{V3}/profile/{ALICE}/displayname")
    assert name.body == {"displayname": "alice"}

    at_limit = await alice.put(f"{V3}/profile/{ALICE}/displayname",
                               {"displayname": "ü" * 256})
    assert at_limit.code == 200


@pytest_twisted.ensureDeferred
async def test_avatar_is_any_string_up_to_its_length_limit(server: TestServer) -> None:
    # as Synapse: an http(s) URL (bridges set them) is stored as given
    alice = await server.register("alice")
    too_long = "mxc://test.local/" + "a" * 990
    resp = await alice.put(f"{V3}/profile/{ALICE}/avatar_url", {"avatar_url": too_long})
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")
    assert (await alice.get(f"{V3}/profile/{ALICE}/avatar_url")).body == {}
    url = "https://example.com/a.png"
    resp = await alice.put(f"{V3}/profile/{ALICE}/avatar_url", {"avatar_url": url})
    assert resp.code == 200, resp.body
    assert (await alice.get(f"{V3}/profile/{ALICE}/avatar_url")).body == {"avatar_url": url}


@pytest_twisted.ensureDeferred
async def test_display_name_with_unstorable_characters_is_refused(server: TestServer) -> None:
    alice = await server.register("alice")
    for bad, errcode in ((b'{"displayname": "a\\u0000b"}', "M_INVALID_PARAM"),
                         (b'{"displayname": "a\\ud800b"}', "M_NOT_JSON")):
        resp = await alice.put(f"{V3}/profile/{ALICE}/displayname", raw=bad)
        assert (resp.code, resp.body["errcode"]) == (400, errcode), bad


@pytest_twisted.ensureDeferred
async def test_malformed_user_id_is_400(server: TestServer) -> None:
    alice = await server.register("alice")
    for bad in ("alice", "@alice", "@:test.local", "@al ice:test.local"):
        got = await alice.get(f"{V3}/profile/{bad}")
        assert (got.code, got.body["errcode"]) == (400, "M_INVALID_PARAM"), bad
        put = await alice.put(f"{V3}/profile/{bad}/displayname", {"displayname": "x"})
        assert (put.code, put.body["errcode"]) == (400, "M_INVALID_PARAM"), bad


@pytest_twisted.ensureDeferred
async def test_unknown_local_user_has_no_profile(server: TestServer) -> None:
    client = server.client()
    for path in ("", "/displayname", "/avatar_url"):
        resp = await client.get(f"{V3}/profile/@nobody:test.local{path}")
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND"), path


@pytest_twisted.ensureDeferred
async def test_profile_on_an_unreachable_server_is_502(server: TestServer) -> None:
    # 192.0.2.0/24 (TEST-NET-1) is in the default outbound blacklist: refused
    # before any packet leaves, as an unreachable server would be
    resp = await server.client().get(f"{V3}/profile/@alice:192.0.2.1")
    assert (resp.code, resp.body["errcode"]) == (502, "M_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_deactivated_users_profile_reads_as_empty(server: TestServer) -> None:
    alice = await server.register("alice")
    await alice.put(f"{V3}/profile/{ALICE}/avatar_url", {"avatar_url": AVATAR})
    # Deactivation is another endpoint's job; flip the flag it sets.
    await server.hs.db.execute("deactivate", "UPDATE users SET deactivated = 1"
                               " WHERE user_id = ?", (ALICE,))

    whole = await server.client().get(f"{V3}/profile/{ALICE}")
    assert (whole.code, whole.body["errcode"]) == (404, "M_NOT_FOUND")
    name = await server.client().get(f"{V3}/profile/{ALICE}/displayname")
    assert (name.code, name.body) == (200, {})
