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
