"""Inviting by e-mail address through an identity server, and the invite
that follows when the address is bound (onbind) or redeemed on /join."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from signedjson.sign import sign_json

from tests.harness import Client, TestServer
from tests.helpers import create_room, q
from tests.identity.fake_identity_server import ACCESS_TOKEN, FakeIdentityServer

V3 = "/_matrix/client/v3"
ADDRESS = "lemurs@monkeyworld.org"


async def invite_by_email(client: Client, room_id: str, ids: FakeIdentityServer) -> Any:
    return await client.post(f"{V3}/rooms/{q(room_id)}/invite", {
        "id_server": ids.name, "id_access_token": ACCESS_TOKEN, "medium": "email",
        "address": ADDRESS})


async def state(client: Client, room_id: str, event_type: str, state_key: str) -> Any:
    return await client.get(f"{V3}/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}")


@pytest_twisted.ensureDeferred
async def test_invite_of_a_bound_address_invites_its_user(
        hs: TestServer, identity_server: FakeIdentityServer) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    identity_server.bindings[("email", ADDRESS)] = "@bob:test.local"
    room_id = await create_room(alice)
    resp = await invite_by_email(alice, room_id, identity_server)
    assert (resp.code, resp.body) == (200, {})
    member = await state(alice, room_id, "m.room.member", "@bob:test.local")
    assert member.body["membership"] == "invite"
    assert bob.user_id == "@bob:test.local"


@pytest_twisted.ensureDeferred
async def test_invite_in_create_room_of_a_bound_address(
        hs: TestServer, identity_server: FakeIdentityServer) -> None:
    alice = await hs.register("alice")
    await hs.register("bob")
    identity_server.bindings[("email", ADDRESS)] = "@bob:test.local"
    room_id = await create_room(alice, invite_3pid=[{
        "id_server": identity_server.name, "id_access_token": ACCESS_TOKEN,
        "medium": "email", "address": ADDRESS}])
    member = await state(alice, room_id, "m.room.member", "@bob:test.local")
    assert member.body["membership"] == "invite"


@pytest_twisted.ensureDeferred
async def test_unbound_address_is_invited_when_bound_and_can_join(
        hs: TestServer, identity_server: FakeIdentityServer) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room_id = await create_room(alice)
    resp = await invite_by_email(alice, room_id, identity_server)
    assert resp.code == 200, resp.body
    token = identity_server.invites[("email", ADDRESS)][0]["token"]
    tpi = await state(alice, room_id, "m.room.third_party_invite", token)
    assert tpi.body["display_name"] == "B...@e..."
    assert tpi.body["public_key"] == identity_server.public_key
    assert tpi.body["public_keys"][0]["key_validity_url"].endswith("/pubkey/isvalid")
    code, _ = await identity_server.bind_and_notify(hs.base_url, "email", ADDRESS,
                                                    "@bob:test.local")
    assert code == 200
    member = await state(alice, room_id, "m.room.member", "@bob:test.local")
    assert member.body["membership"] == "invite"
    assert member.body["third_party_invite"]["display_name"] == "B...@e..."
    joined = await bob.post(f"{V3}/rooms/{q(room_id)}/join", {})
    assert joined.code == 200, joined.body


@pytest_twisted.ensureDeferred
async def test_join_with_third_party_signed_redeems_the_invite(
        hs: TestServer, identity_server: FakeIdentityServer) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room_id = await create_room(alice)
    await invite_by_email(alice, room_id, identity_server)
    token = identity_server.invites[("email", ADDRESS)][0]["token"]
    signed = sign_json({"mxid": "@bob:test.local", "sender": "@alice:test.local",
                        "token": token}, identity_server.name, identity_server.key)
    resp = await bob.post(f"{V3}/join/{q(room_id)}", {"third_party_signed": signed})
    assert resp.code == 200, resp.body
    member = await state(alice, room_id, "m.room.member", "@bob:test.local")
    assert member.body["membership"] == "join"


@pytest_twisted.ensureDeferred
async def test_revoked_identity_server_key_is_refused(
        hs: TestServer, identity_server: FakeIdentityServer) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room_id = await create_room(alice)
    await invite_by_email(alice, room_id, identity_server)
    identity_server.valid = False
    code, _ = await identity_server.bind_and_notify(hs.base_url, "email", ADDRESS,
                                                    "@bob:test.local")
    assert code == 403
    member = await state(alice, room_id, "m.room.member", "@bob:test.local")
    assert member.code == 404
    refused = await bob.post(f"{V3}/rooms/{q(room_id)}/join", {})
    assert refused.code == 403


@pytest_twisted.ensureDeferred
async def test_invite_by_address_needs_all_its_fields(hs: TestServer) -> None:
    alice = await hs.register("alice")
    room_id = await create_room(alice)
    resp = await alice.post(f"{V3}/rooms/{q(room_id)}/invite",
                            {"medium": "email", "address": ADDRESS})
    assert (resp.code, resp.body["errcode"]) == (400, "M_MISSING_PARAM")
