"""Extended profile fields (Matrix 1.16, MSC4133): m.tz and custom keys."""

from __future__ import annotations

import pytest_twisted

from tests.harness import TestServer

V3 = "/_matrix/client/v3"
UNSTABLE = "/_matrix/client/unstable/uk.tcpip.msc4133"


@pytest_twisted.ensureDeferred
async def test_a_time_zone_and_a_custom_field_are_set_read_and_deleted(
        server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    base = f"{V3}/profile/{alice.user_id}"

    tz = await alice.put(f"{base}/m.tz", {"m.tz": "Europe/London"})
    pronouns = await alice.put(f"{base}/com.example.pronouns",
                               {"com.example.pronouns": [{"summary": "she/her"}]})
    assert (tz.code, pronouns.code) == (200, 200), (tz.body, pronouns.body)

    whole = await bob.get(base)
    assert whole.body == {"displayname": "alice", "m.tz": "Europe/London",
                          "com.example.pronouns": [{"summary": "she/her"}]}
    one = await server.client().get(f"{base}/m.tz")
    assert (one.code, one.body) == (200, {"m.tz": "Europe/London"})

    deleted = await alice.delete(f"{base}/m.tz")
    assert deleted.code == 200
    gone = await bob.get(f"{base}/m.tz")
    assert (gone.code, gone.body["errcode"]) == (404, "M_NOT_FOUND")
    assert "m.tz" not in (await bob.get(base)).body
    again = await alice.delete(f"{base}/m.tz")
    assert again.code == 200


@pytest_twisted.ensureDeferred
async def test_deleting_the_display_name_clears_it(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.delete(f"{V3}/profile/{alice.user_id}/displayname")
    assert resp.code == 200, resp.body
    whole = await alice.get(f"{V3}/profile/{alice.user_id}")
    assert "displayname" not in whole.body


@pytest_twisted.ensureDeferred
async def test_bad_keys_values_and_sizes_are_refused(server: TestServer) -> None:
    alice = await server.register("alice")
    base = f"{V3}/profile/{alice.user_id}"

    bad_key = await alice.put(f"{base}/Not_Namespaced", {"Not_Namespaced": 1})
    assert (bad_key.code, bad_key.body["errcode"]) == (400, "M_INVALID_PARAM")
    long_key = "com.example." + "k" * 250
    too_long = await alice.put(f"{base}/{long_key}", {long_key: 1})
    assert (too_long.code, too_long.body["errcode"]) == (400, "M_KEY_TOO_LARGE")
    null = await alice.put(f"{base}/com.example.x", {"com.example.x": None})
    assert (null.code, null.body["errcode"]) == (400, "M_INVALID_PARAM")
    missing = await alice.put(f"{base}/com.example.x", {"other": 1})
    assert (missing.code, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    tz = await alice.put(f"{base}/m.tz", {"m.tz": 5})
    assert (tz.code, tz.body["errcode"]) == (400, "M_INVALID_PARAM")

    first = await alice.put(f"{base}/com.example.a", {"com.example.a": "x" * 40_000})
    assert first.code == 200, first.body
    second = await alice.put(f"{base}/com.example.b", {"com.example.b": "y" * 40_000})
    assert (second.code, second.body["errcode"]) == (400, "M_PROFILE_TOO_LARGE")
    whole = await alice.get(base)
    assert "com.example.b" not in whole.body
    assert len(whole.body["com.example.a"]) == 40_000


@pytest_twisted.ensureDeferred
async def test_only_the_user_sets_their_fields(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    resp = await bob.put(f"{V3}/profile/{alice.user_id}/m.tz", {"m.tz": "UTC"})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    resp = await bob.delete(f"{V3}/profile/{alice.user_id}/displayname")
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_the_unstable_prefix_and_the_capability(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.put(f"{UNSTABLE}/profile/{alice.user_id}/m.tz", {"m.tz": "Asia/Tokyo"})
    assert resp.code == 200, resp.body
    read = await alice.get(f"{V3}/profile/{alice.user_id}/m.tz")
    assert read.body == {"m.tz": "Asia/Tokyo"}
    caps = await alice.get(f"{V3}/capabilities")
    assert caps.body["capabilities"]["m.profile_fields"] == {"enabled": True}
    versions = await server.client().get("/_matrix/client/versions")
    assert versions.body["unstable_features"]["uk.tcpip.msc4133"] is True
