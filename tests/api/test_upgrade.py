"""Room upgrades: POST /rooms/{roomId}/upgrade, as the upgrader and the members see it."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.api.test_rooms import create_room, join, send_text, state
from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"
ALICE = "@alice:test.local"
BOB = "@bob:test.local"
CAROL = "@carol:test.local"

COPIED = ("m.room.join_rules", "m.room.name", "m.room.topic", "m.room.history_visibility",
          "m.room.guest_access", "m.room.avatar", "m.room.encryption", "m.room.server_acl")


async def upgrade(client: Client, room_id: str, body: Any) -> Any:
    return await client.post(f"{V3}/rooms/{room_id}/upgrade", body)


async def upgraded(client: Client, room_id: str, version: str = "12", **body: Any) -> str:
    resp = await upgrade(client, room_id, {"new_version": version, **body})
    assert resp.code == 200, resp.body
    new_room_id: str = resp.body["replacement_room"]
    return new_room_id


async def furnished_room(alice: Client, version: str) -> str:
    """A room with every kind of state an upgrade carries over, and bob in it."""
    return await create_room(
        alice, room_version=version, preset="public_chat", name="Old name", topic="Old topic",
        initial_state=[
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
            {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}},
            {"type": "m.room.avatar", "content": {"url": "mxc://test.local/avatar"}},
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {"type": "m.room.server_acl", "content": {"allow": ["*"], "deny": ["bad.example"],
                                                      "allow_ip_literals": False}},
            {"type": "org.example.custom", "content": {"kept": False}},
        ],
        power_level_content_override={"users": {ALICE: 100, BOB: 50}, "state_default": 60})


@pytest.mark.parametrize("old_version", ["10", "11"])
@pytest_twisted.ensureDeferred
async def test_upgrade_to_v12_carries_state_over(server: TestServer, old_version: str) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await furnished_room(alice, old_version)
    assert (await join(bob, room_id)).code == 200
    assert (await join(carol, room_id)).code == 200
    old_state = await state(alice, room_id)

    new_room_id = await upgraded(alice, room_id)

    assert new_room_id != room_id
    new_state = await state(alice, new_room_id)
    create = new_state[("m.room.create", "")]
    assert create["sender"] == ALICE
    assert create["content"]["room_version"] == "12"
    assert create["content"]["predecessor"] == {"room_id": room_id}
    assert "creator" not in create["content"]
    for event_type in COPIED:
        assert new_state[(event_type, "")]["content"] == \
            old_state[(event_type, "")]["content"], event_type
    assert ("org.example.custom", "") not in new_state
    # members are not carried over: bob joins himself
    assert new_state[("m.room.member", ALICE)]["content"]["membership"] == "join"
    assert ("m.room.member", BOB) not in new_state
    # v12: the creator has infinite power and is not among the users
    levels = new_state[("m.room.power_levels", "")]["content"]
    assert levels["users"] == {BOB: 50}
    assert levels["state_default"] == 60

    # the old room: tombstoned, and ordinary members silenced
    tombstone = (await state(alice, room_id))[("m.room.tombstone", "")]
    assert tombstone["sender"] == ALICE
    assert tombstone["content"] == {"body": "This room has been replaced",
                                    "replacement_room": new_room_id}
    old_levels = (await state(alice, room_id))[("m.room.power_levels", "")]["content"]
    assert old_levels["events_default"] == 50
    assert old_levels["invite"] == 50
    resp = await bob.put(f"{V3}/rooms/{room_id}/send/m.room.message/t1",
                         {"msgtype": "m.text", "body": "still here?"})
    assert resp.code == 200  # bob has 50
    resp = await carol.put(f"{V3}/rooms/{room_id}/send/m.room.message/t1",
                           {"msgtype": "m.text", "body": "hello?"})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    await join(bob, new_room_id)
    await send_text(bob, new_room_id, "moved", "t2")


@pytest_twisted.ensureDeferred
async def test_upgrade_between_pre_v12_versions(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, room_version="10", preset="public_chat", name="Ten",
                                power_level_content_override={"users": {ALICE: 100, BOB: 60}})
    await send_text(alice, room_id, "last words", "t1")

    new_room_id = await upgraded(alice, room_id, "11")

    # the new room names the tombstone that names it (as on Synapse)
    tombstone = (await state(alice, room_id))[("m.room.tombstone", "")]
    assert tombstone["content"]["replacement_room"] == new_room_id
    new_state = await state(alice, new_room_id)
    create = new_state[("m.room.create", "")]["content"]
    assert create["room_version"] == "11"
    assert create["predecessor"] == {"room_id": room_id, "event_id": tombstone["event_id"]}
    assert "creator" not in create  # v11 has none
    assert new_state[("m.room.name", "")]["content"] == {"name": "Ten"}
    assert new_state[("m.room.power_levels", "")]["content"]["users"] == {ALICE: 100, BOB: 60}
    assert (await join(bob, new_room_id)).code == 200

    older = await create_room(alice, room_version="9")
    newer = await upgraded(alice, older, "10")
    create = (await state(alice, newer))[("m.room.create", "")]["content"]
    assert create["creator"] == ALICE


@pytest_twisted.ensureDeferred
async def test_upgrader_is_raised_then_lowered_back(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    # bob may send tombstones (60) but not everything the upgrade copies (100)
    room_id = await create_room(
        alice, room_version="11", preset="public_chat", topic="t",
        power_level_content_override={
            "users": {ALICE: 100, BOB: 60},
            "events": {"m.room.tombstone": 60, "m.room.power_levels": 60,
                       "m.room.topic": 100}})
    assert (await join(bob, room_id)).code == 200

    new_room_id = await upgraded(bob, room_id, "11")

    new_state = await state(bob, new_room_id)
    assert new_state[("m.room.topic", "")]["content"]["topic"] == "t"
    assert new_state[("m.room.topic", "")]["sender"] == BOB
    assert new_state[("m.room.power_levels", "")]["content"]["users"] == {
        ALICE: 100, BOB: 60}


@pytest_twisted.ensureDeferred
async def test_additional_creators_come_from_the_request(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    await server.register("carol")
    room_id = await create_room(alice, preset="trusted_private_chat", invite=[BOB])
    assert (await join(bob, room_id)).code == 200
    old_create = (await state(alice, room_id))[("m.room.create", "")]["content"]
    assert old_create["additional_creators"] == [BOB]

    new_room_id = await upgraded(alice, room_id, additional_creators=[CAROL])

    create = (await state(alice, new_room_id))[("m.room.create", "")]["content"]
    assert create["additional_creators"] == [CAROL]
    levels = (await state(alice, new_room_id))[("m.room.power_levels", "")]["content"]
    assert CAROL not in levels["users"] and ALICE not in levels["users"]


@pytest_twisted.ensureDeferred
async def test_bans_are_carried_over(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    resp = await alice.post(f"{V3}/rooms/{room_id}/ban", {"user_id": BOB, "reason": "spam"})
    assert resp.code == 200

    new_room_id = await upgraded(alice, room_id)

    ban = (await state(alice, new_room_id))[("m.room.member", BOB)]["content"]
    assert ban["membership"] == "ban"
    assert ban["reason"] == "spam"
    assert (await join(bob, new_room_id)).code == 403


@pytest_twisted.ensureDeferred
async def test_aliases_and_directory_listing_move(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    for alias in ("%23main:test.local", "%23other:test.local"):
        resp = await alice.put(f"{V3}/directory/room/{alias}", {"room_id": room_id})
        assert resp.code == 200, resp.body
    resp = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.canonical_alias", {
        "alias": "#main:test.local", "alt_aliases": ["#other:test.local"]})
    assert resp.code == 200, resp.body
    resp = await alice.put(f"{V3}/directory/list/room/{room_id}", {"visibility": "public"})
    assert resp.code == 200, resp.body

    new_room_id = await upgraded(alice, room_id)

    for alias in ("%23main:test.local", "%23other:test.local"):
        resp = await alice.get(f"{V3}/directory/room/{alias}")
        assert resp.body["room_id"] == new_room_id
    new_canonical = (await state(alice, new_room_id))[("m.room.canonical_alias", "")]
    assert new_canonical["content"] == {"alias": "#main:test.local",
                                        "alt_aliases": ["#other:test.local"]}
    old_canonical = (await state(alice, room_id))[("m.room.canonical_alias", "")]
    assert old_canonical["content"] == {}
    listing = await alice.get(f"{V3}/directory/list/room/{new_room_id}")
    assert listing.body == {"visibility": "public"}
    listing = await alice.get(f"{V3}/directory/list/room/{room_id}")
    assert listing.body == {"visibility": "private"}


# -- refusals -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_member_without_power_cannot_upgrade(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, room_version="11", preset="public_chat")
    assert (await join(bob, room_id)).code == 200

    resp = await upgrade(bob, room_id, {"new_version": "12"})

    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert ("m.room.tombstone", "") not in await state(alice, room_id)
    assert (await alice.get(f"{V3}/joined_rooms")).body["joined_rooms"] == [room_id]


@pytest_twisted.ensureDeferred
async def test_non_member_cannot_upgrade(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, preset="public_chat")
    resp = await upgrade(bob, room_id, {"new_version": "12"})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_unknown_version_is_400(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await upgrade(alice, room_id, {"new_version": "99"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNSUPPORTED_ROOM_VERSION")


@pytest_twisted.ensureDeferred
async def test_unknown_room_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await upgrade(alice, "!nowhere:test.local", {"new_version": "12"})
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest.mark.parametrize("body,errcode", [
    ({}, "M_MISSING_PARAM"),
    ({"new_version": 12}, "M_BAD_JSON"),
    ({"new_version": "12", "additional_creators": "@bob:test.local"}, "M_INVALID_PARAM"),
    ({"new_version": "12", "additional_creators": ["bob"]}, "M_INVALID_PARAM"),
    ([], "M_BAD_JSON"),
])
@pytest_twisted.ensureDeferred
async def test_bad_upgrade_body_is_400(server: TestServer, body: Any, errcode: str) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await upgrade(alice, room_id, body)
    assert (resp.code, resp.body["errcode"]) == (400, errcode)
    assert ("m.room.tombstone", "") not in await state(alice, room_id)


@pytest_twisted.ensureDeferred
async def test_upgrade_body_that_is_not_json_is_400(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await alice.post(f"{V3}/rooms/{room_id}/upgrade", raw=b"new_version=12")
    assert (resp.code, resp.body["errcode"]) == (400, "M_NOT_JSON")


@pytest_twisted.ensureDeferred
async def test_v12_creator_keeps_power_when_moving_to_an_older_version(
        server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, name="Twelve")
    new_room_id = await upgraded(alice, room_id, "11")
    new_state = await state(alice, new_room_id)
    assert new_state[("m.room.create", "")]["content"]["room_version"] == "11"
    assert new_state[("m.room.power_levels", "")]["content"]["users"][ALICE] >= 100
    resp = await alice.put(f"{V3}/rooms/{new_room_id}/state/m.room.topic", {"topic": "ok"})
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_two_upgrades_at_once_make_one_new_room(server: TestServer) -> None:
    from twisted.internet import defer

    alice = await server.register("alice")
    room_id = await create_room(alice)
    first, second = await defer.gatherResults([
        defer.ensureDeferred(upgrade(alice, room_id, {"new_version": "12"})),
        defer.ensureDeferred(upgrade(alice, room_id, {"new_version": "12"}))])
    assert sorted([first.code, second.code]) == [200, 400]
    tombstone = (await state(alice, room_id))[("m.room.tombstone", "")]["content"]
    winner = first if first.code == 200 else second
    assert tombstone["replacement_room"] == winner.body["replacement_room"]


@pytest_twisted.ensureDeferred
async def test_direct_chats_and_tags_follow_the_upgrade(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice, room_version="10", preset="private_chat",
                                invite=[BOB], is_direct=True)
    assert (await join(bob, room_id)).code == 200
    direct = {BOB: [room_id], "@other:test.local": ["!elsewhere:test.local"]}
    assert (await alice.put(f"{V3}/user/{ALICE}/account_data/m.direct", direct)).code == 200
    assert (await bob.put(f"{V3}/user/{BOB}/rooms/{room_id}/tags/u.work",
                          {"order": 0.5})).code == 200
    assert (await bob.put(f"{V3}/pushrules/global/room/{room_id}",
                          {"actions": ["dont_notify"]})).code == 200
    mute = {"actions": [], "conditions": [
        {"kind": "event_match", "key": "room_id", "pattern": room_id}]}
    assert (await alice.put(f"{V3}/pushrules/global/override/{room_id}", mute)).code == 200

    new_room_id = await upgraded(alice, room_id, "11")

    resp = await alice.get(f"{V3}/user/{ALICE}/account_data/m.direct")
    assert resp.body == {BOB: [room_id, new_room_id],
                         "@other:test.local": ["!elsewhere:test.local"]}
    resp = await bob.get(f"{V3}/user/{BOB}/rooms/{new_room_id}/tags")
    assert resp.body == {"tags": {"u.work": {"order": 0.5}}}
    rule = await bob.get(f"{V3}/pushrules/global/room/{new_room_id}")
    assert (rule.code, rule.body["actions"]) == (200, ["dont_notify"]), rule.body
    rule = await alice.get(f"{V3}/pushrules/global/override/{new_room_id}")
    assert rule.code == 200, rule.body
    assert rule.body["conditions"] == [
        {"kind": "event_match", "key": "room_id", "pattern": new_room_id}]
