"""Queries between servers: profiles, aliases and room directories asked by a
user of one server about another, device lists, OpenID and /version.

Two (or one) of our servers, each ``localhost:P`` with TLS from the test CA
(``tests/federation/harness.py``); users act through the client API and the
servers talk over real, signed federation requests.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest_twisted
import treq
from twisted.internet import ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from tests.harness import Client, Response, TestServer

V3 = "/_matrix/client/v3"
FED = "/_matrix/federation/v1"


async def federation_get(server: TestServer, ca: Any, path: str,
                         params: dict[str, str] | None = None) -> Response:
    """An unsigned GET of the server's federation listener, as a third party
    (an integration manager, a version probe) makes it."""
    from twisted.internet import reactor

    with open(ca.ca_cert_path, "rb") as f:
        root = ssl.Certificate.loadPEM(f.read())
    agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=root))
    port = server.hs.hostname.rsplit(":", 1)[1]
    resp = await treq.request("GET", f"https://localhost:{port}{path}", params=params,
                              agent=agent)
    content = await resp.content()
    return Response(resp.code, json.loads(content) if content else None)


async def published_room(client: Client, name: str) -> str:
    resp = await client.post(f"{V3}/createRoom", {"preset": "public_chat",
                                                  "visibility": "public", "name": name})
    assert resp.code == 200, resp.body
    return str(resp.body["room_id"])


# -- unauthenticated endpoints ----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_version_names_the_server(federation: Any, test_ca: Any) -> None:
    a = await federation()
    resp = await federation_get(a, test_ca, f"{FED}/version")
    assert resp.code == 200
    assert resp.body["server"]["name"] == "homeserver"
    assert isinstance(resp.body["server"]["version"], str)


@pytest_twisted.ensureDeferred
async def test_openid_token_identifies_its_user_to_a_third_party(federation: Any,
                                                                 test_ca: Any) -> None:
    a = await federation()
    alice = await a.register("alice")

    resp = await alice.post(f"{V3}/user/{alice.user_id}/openid/request_token", {})

    assert resp.code == 200, resp.body
    assert resp.body["token_type"] == "Bearer"
    assert resp.body["matrix_server_name"] == a.hs.hostname
    assert resp.body["expires_in"] > 0
    info = await federation_get(a, test_ca, f"{FED}/openid/userinfo",
                                {"access_token": resp.body["access_token"]})
    assert (info.code, info.body) == (200, {"sub": alice.user_id})
    # the OpenID token is not an access token, nor the other way round
    assert (await alice.get(f"{V3}/account/whoami",
                            token=resp.body["access_token"])).code == 401
    wrong = await federation_get(a, test_ca, f"{FED}/openid/userinfo",
                                 {"access_token": alice.access_token or ""})
    assert (wrong.code, wrong.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


@pytest_twisted.ensureDeferred
async def test_openid_token_only_for_yourself(federation: Any) -> None:
    a = await federation()
    alice = await a.register("alice")
    bob = await a.register("bob")
    resp = await alice.post(f"{V3}/user/{bob.user_id}/openid/request_token", {})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_signed_endpoints_refuse_unsigned_requests(federation: Any,
                                                         test_ca: Any) -> None:
    a = await federation()
    await a.register("alice")
    resp = await federation_get(a, test_ca, f"{FED}/query/profile",
                                {"user_id": f"@alice:{a.hs.hostname}"})
    assert (resp.code, resp.body["errcode"]) == (401, "M_UNAUTHORIZED")


# -- through the client API of the other server ------------------------------------


@pytest_twisted.ensureDeferred
async def test_user_reads_profile_of_a_user_on_another_server(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    await bob.put(f"{V3}/profile/{bob.user_id}/displayname", {"displayname": "Bob B."})

    whole = await alice.get(f"{V3}/profile/{bob.user_id}")
    name = await alice.get(f"{V3}/profile/{bob.user_id}/displayname")
    avatar = await alice.get(f"{V3}/profile/{bob.user_id}/avatar_url")

    assert (whole.code, whole.body) == (200, {"displayname": "Bob B."})
    assert (name.code, name.body) == (200, {"displayname": "Bob B."})
    assert (avatar.code, avatar.body) == (200, {})
    missing = await alice.get(f"{V3}/profile/@nobody:{b.hs.hostname}")
    assert (missing.code, missing.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_extended_profile_fields_are_read_across_servers(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    await bob.put(f"{V3}/profile/{bob.user_id}/m.tz", {"m.tz": "Europe/Paris"})
    await bob.put(f"{V3}/profile/{bob.user_id}/org.example.pronouns",
                  {"org.example.pronouns": {"en": "they/them"}})

    whole = await alice.get(f"{V3}/profile/{bob.user_id}")
    tz = await alice.get(f"{V3}/profile/{bob.user_id}/m.tz")

    assert whole.code == 200, whole.body
    assert whole.body["m.tz"] == "Europe/Paris"
    assert whole.body["org.example.pronouns"] == {"en": "they/them"}
    assert (tz.code, tz.body) == (200, {"m.tz": "Europe/Paris"})


@pytest_twisted.ensureDeferred
async def test_profile_lookup_can_be_refused_by_the_other_server(federation: Any) -> None:
    a = await federation()
    b = await federation(allow_profile_lookup_over_federation=False)
    alice = await a.register("alice")
    bob = await b.register("bob")

    resp = await alice.get(f"{V3}/profile/{bob.user_id}")

    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_profile_of_an_unreachable_server_is_502(federation: Any) -> None:
    a = await federation()
    alice = await a.register("alice")
    # port 1 on loopback: nothing listens, the connection is refused at once
    resp = await alice.get(f"{V3}/profile/@bob:localhost:1")
    assert resp.code == 502


@pytest_twisted.ensureDeferred
async def test_alias_on_another_server_resolves(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await published_room(bob, "Lobby")
    alias = f"#lobby:{b.hs.hostname}"
    made = await bob.put(f"{V3}/directory/room/{quote(alias)}", {"room_id": room_id})
    assert made.code == 200, made.body

    resp = await alice.get(f"{V3}/directory/room/{quote(alias)}")

    assert (resp.code, resp.body) == (200, {"room_id": room_id, "servers": [b.hs.hostname]})
    missing = await alice.get(f"{V3}/directory/room/{quote('#nothing:' + b.hs.hostname)}")
    assert (missing.code, missing.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_public_rooms_of_another_server_when_it_shares_them(federation: Any) -> None:
    a = await federation()
    b = await federation(allow_public_rooms_over_federation=True)
    alice = await a.register("alice")
    bob = await b.register("bob")
    lobby = await published_room(bob, "Lobby")
    garden = await published_room(bob, "Garden")

    listed = await alice.get(f"{V3}/publicRooms", params={"server": b.hs.hostname})
    searched = await alice.post(f"{V3}/publicRooms?server={b.hs.hostname}",
                                {"filter": {"generic_search_term": "gard"}})

    assert listed.code == 200, listed.body
    assert {r["room_id"] for r in listed.body["chunk"]} == {lobby, garden}
    assert searched.code == 200, searched.body
    assert [r["room_id"] for r in searched.body["chunk"]] == [garden]


@pytest_twisted.ensureDeferred
async def test_public_rooms_of_a_server_that_does_not_share_them(federation: Any) -> None:
    a = await federation()
    b = await federation()  # allow_public_rooms_over_federation is off by default
    alice = await a.register("alice")
    bob = await b.register("bob")
    await published_room(bob, "Lobby")

    resp = await alice.get(f"{V3}/publicRooms", params={"server": b.hs.hostname})

    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_other_server_lists_our_users_devices(federation: Any) -> None:
    a = await federation()
    b = await federation()
    bob = await b.register("bob", device_id="PHONE")
    await bob.put(f"{V3}/devices/PHONE", {"display_name": "Bob's phone"})

    body = await a.hs.federation_client.get_json(
        b.hs.hostname, f"{FED}/user/devices/{bob.user_id}")

    assert body["user_id"] == bob.user_id
    assert isinstance(body["stream_id"], int)
    assert body["devices"] == [{"device_id": "PHONE", "device_display_name": "Bob's phone"}]
