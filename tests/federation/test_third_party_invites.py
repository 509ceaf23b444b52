"""An invite by e-mail address whose address is bound to a user of another
server: that server is not in the room, so it forwards the exchange to the
inviter's server (exchange_third_party_invite), which invites the user and
lets them join over federation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from twisted.internet import reactor, ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from tests.federation.ca import TestCA
from tests.federation.test_rooms import members, q, wait_for
from tests.helpers import create_room
from tests.identity.fake_identity_server import ACCESS_TOKEN, FakeIdentityServer

V3 = "/_matrix/client/v3"
ADDRESS = "bob@example.org"


@pytest_twisted.async_yield_fixture
async def identity_server(test_ca: TestCA) -> AsyncIterator[FakeIdentityServer]:
    ids = FakeIdentityServer()
    ids.listen(test_ca)
    yield ids
    await ids.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_unbound_invite_is_exchanged_through_the_inviters_server(
        federation: Any, test_ca: TestCA, identity_server: FakeIdentityServer) -> None:
    # the identity server's certificate is from the servers' own test CA,
    # but identity servers are not checked against federation_custom_ca_list
    settings = {"use_insecure_ssl_client_just_for_testing_do_not_use": True}
    a = await federation(**settings)
    b = await federation(**settings)
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_room(alice, preset="private_chat")
    resp = await alice.post(f"{V3}/rooms/{q(room_id)}/invite", {
        "id_server": identity_server.name, "id_access_token": ACCESS_TOKEN,
        "medium": "email", "address": ADDRESS})
    assert resp.code == 200, resp.body

    with open(test_ca.ca_cert_path, "rb") as f:
        root = ssl.Certificate.loadPEM(f.read())
    agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=root))
    port = b.hs.hostname.rsplit(":", 1)[1]
    code, body = await identity_server.bind_and_notify(
        f"https://localhost:{port}", "email", ADDRESS, bob.user_id or "", agent=agent)
    assert (code, body) == (200, {})

    async def invited() -> bool:
        return (await members(alice, room_id)).get(bob.user_id or "") == "invite"
    await wait_for(invited)
    joined = await bob.post(f"{V3}/rooms/{q(room_id)}/join", {})
    assert joined.code == 200, joined.body

    async def bob_joined() -> bool:
        return (await members(alice, room_id)).get(bob.user_id or "") == "join"
    await wait_for(bob_joined)


@pytest_twisted.ensureDeferred
async def test_a_server_in_the_room_issues_the_invite_itself(
        federation: Any, test_ca: TestCA, identity_server: FakeIdentityServer) -> None:
    """The invitee's server is in the room (carol is there): as the spec
    allows and Synapse does, it auths and sends the invite itself (the
    inviter alice is of the other server), and alice's server hears of it
    over federation."""
    settings = {"use_insecure_ssl_client_just_for_testing_do_not_use": True}
    a = await federation(**settings)
    b = await federation(**settings)
    alice = await a.register("alice")
    bob = await b.register("bob")
    carol = await b.register("carol")
    room_id = await create_room(alice, preset="private_chat")
    assert (await alice.post(f"{V3}/rooms/{q(room_id)}/invite",
                             {"user_id": carol.user_id})).code == 200
    async def carol_invited() -> bool:
        resp = await carol.post(f"{V3}/rooms/{q(room_id)}/join", {})
        return resp.code == 200
    await wait_for(carol_invited)
    resp = await alice.post(f"{V3}/rooms/{q(room_id)}/invite", {
        "id_server": identity_server.name, "id_access_token": ACCESS_TOKEN,
        "medium": "email", "address": ADDRESS})
    assert resp.code == 200, resp.body

    async def b_has_the_third_party_invite() -> bool:
        resp = await carol.get(f"{V3}/rooms/{q(room_id)}/state")
        return resp.code == 200 and any(
            e["type"] == "m.room.third_party_invite" for e in resp.body)
    await wait_for(b_has_the_third_party_invite)

    with open(test_ca.ca_cert_path, "rb") as f:
        root = ssl.Certificate.loadPEM(f.read())
    agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=root))
    port = b.hs.hostname.rsplit(":", 1)[1]
    code, body = await identity_server.bind_and_notify(
        f"https://localhost:{port}", "email", ADDRESS, bob.user_id or "", agent=agent)
    assert (code, body) == (200, {})

    async def invited() -> bool:
        return (await members(alice, room_id)).get(bob.user_id or "") == "invite"
    await wait_for(invited)
    state = await alice.get(
        f"{V3}/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id or '')}",
        params={"format": "event"})
    assert state.body["sender"] == alice.user_id
    invite = await a.hs.stores.events.get_event(state.body["event_id"])
    assert invite is not None and b.hs.hostname in invite.json["signatures"]
    joined = await bob.post(f"{V3}/rooms/{q(room_id)}/join", {})
    assert joined.code == 200, joined.body
