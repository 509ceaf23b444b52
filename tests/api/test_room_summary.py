"""Room summaries before joining (MSC3266, Matrix 1.15), on one server."""

from __future__ import annotations

from urllib.parse import quote

import pytest_twisted

from tests.api.test_rooms import create_room
from tests.harness import TestServer

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"
UNSTABLE = "/_matrix/client/unstable/im.nheko.summary"


@pytest_twisted.ensureDeferred
async def test_a_public_room_is_summarised_for_someone_not_in_it(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat", name="Cheese", topic="Tasty",
                                room_alias_name="cheese",
                                initial_state=[{"type": "m.room.encryption", "state_key": "",
                                                "content": {"algorithm":
                                                            "m.megolm.v1.aes-sha2"}}])

    by_alias = await bob.get(f"{V1}/room_summary/{quote('#cheese:test.local')}")

    assert by_alias.code == 200, by_alias.body
    body = by_alias.body
    assert body["room_id"] == room_id
    assert body["name"] == "Cheese"
    assert body["topic"] == "Tasty"
    assert body["canonical_alias"] == "#cheese:test.local"
    assert body["num_joined_members"] == 1
    assert body["join_rule"] == "public"
    assert body["encryption"] == "m.megolm.v1.aes-sha2"
    assert body["membership"] == "leave"
    by_id = await bob.get(f"{V1}/room_summary/{quote(room_id)}")
    assert by_id.body == body
    mine = await alice.get(f"{V1}/room_summary/{quote(room_id)}")
    assert mine.body["membership"] == "join"


@pytest_twisted.ensureDeferred
async def test_a_private_room_is_not_found_unless_invited(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="private_chat", name="Secret")

    hidden = await bob.get(f"{V1}/room_summary/{quote(room_id)}")
    assert hidden.code == 404
    assert hidden.body["errcode"] == "M_NOT_FOUND"
    anonymous = await server.client().get(f"{V1}/room_summary/{quote(room_id)}")
    assert anonymous.code == 404

    invited = await alice.post(f"{V3}/rooms/{quote(room_id)}/invite", {"user_id": bob.user_id})
    assert invited.code == 200, invited.body
    resp = await bob.get(f"{V1}/room_summary/{quote(room_id)}")
    assert resp.code == 200, resp.body
    assert resp.body["name"] == "Secret"
    assert resp.body["membership"] == "invite"


@pytest_twisted.ensureDeferred
async def test_without_a_token_public_rooms_are_summarised_without_membership(
        server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat", name="Open")

    resp = await server.client().get(f"{V1}/room_summary/{quote(room_id)}")

    assert resp.code == 200, resp.body
    assert resp.body["name"] == "Open"
    assert "membership" not in resp.body


@pytest_twisted.ensureDeferred
async def test_the_unstable_paths_answer_with_the_prefixed_names_too(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")

    for path in (f"{UNSTABLE}/summary/{quote(room_id)}",
                 f"{UNSTABLE}/rooms/{quote(room_id)}/summary"):
        resp = await alice.get(path)
        assert resp.code == 200, resp.body
        assert resp.body["im.nheko.summary.room_version"] == resp.body["room_version"]
    versions = await server.client().get("/_matrix/client/versions")
    assert versions.body["unstable_features"]["im.nheko.summary"] is True


@pytest_twisted.ensureDeferred
async def test_unknown_rooms_and_bad_identifiers(server: TestServer) -> None:
    alice = await server.register("alice")
    unknown = await alice.get(f"{V1}/room_summary/{quote('!nope:test.local')}")
    assert unknown.code == 404
    assert unknown.body["errcode"] == "M_NOT_FOUND"
    no_alias = await alice.get(f"{V1}/room_summary/{quote('#nope:test.local')}")
    assert no_alias.code == 404
    bad = await alice.get(f"{V1}/room_summary/nonsense")
    assert bad.code == 400
    assert bad.body["errcode"] == "M_INVALID_PARAM"
