"""What an application service (and everybody else) sees of the client API:
registering ghosts, masquerading, exclusive namespaces, aliases and users
asked of the service, third-party lookups, its own room lists, ping."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest_twisted

from tests.appservice.conftest import AS_TOKEN
from tests.appservice.fake_as import FakeAppService
from tests.harness import Client, TestServer
from tests.helpers import create_room, send_text

V3 = "/_matrix/client/v3"
BOT = "@bridgebot:test.local"


def as_client(server: TestServer) -> Client:
    return server.client(AS_TOKEN)


async def register_ghost(server: TestServer, localpart: str, **extra: Any) -> Any:
    return await as_client(server).post(
        f"{V3}/register", {"type": "m.login.application_service", "username": localpart,
                           **extra})


def as_user(user_id: str) -> dict[str, str]:
    return {"user_id": user_id}


# -- registration and login ---------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_the_service_registers_ghosts_of_its_namespace(server: TestServer) -> None:
    resp = await register_ghost(server, "bridge_alice")
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@bridge_alice:test.local"
    # the ghost's own session works
    whoami = await server.client(resp.body["access_token"]).get(f"{V3}/account/whoami")
    assert whoami.body["user_id"] == "@bridge_alice:test.local"
    again = await register_ghost(server, "bridge_alice")
    assert (again.code, again.body["errcode"]) == (400, "M_USER_IN_USE")


@pytest_twisted.ensureDeferred
async def test_inhibit_login_registers_without_a_session(server: TestServer) -> None:
    resp = await register_ghost(server, "bridge_quiet", inhibit_login=True)
    assert resp.code == 200, resp.body
    assert "access_token" not in resp.body and "device_id" not in resp.body


@pytest_twisted.ensureDeferred
async def test_the_service_cannot_register_outside_its_namespace(server: TestServer) -> None:
    resp = await register_ghost(server, "alice")
    assert (resp.code, resp.body["errcode"]) == (400, "M_EXCLUSIVE")


@pytest_twisted.ensureDeferred
async def test_the_service_type_needs_the_service_token(server: TestServer) -> None:
    resp = await server.client().post(f"{V3}/register", {
        "type": "m.login.application_service", "username": "bridge_x"})
    assert resp.code == 401


@pytest_twisted.ensureDeferred
async def test_regular_users_cannot_register_in_an_exclusive_namespace(
        server: TestServer) -> None:
    resp = await server.client().get(f"{V3}/register/available",
                                     params={"username": "bridge_bob"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_EXCLUSIVE")
    resp = await server.client().post(f"{V3}/register", {
        "username": "bridge_bob", "password": "a long password",
        "auth": {"type": "m.login.dummy"}})
    assert (resp.code, resp.body["errcode"]) == (400, "M_EXCLUSIVE")


@pytest_twisted.ensureDeferred
async def test_the_service_logs_its_ghosts_in(server: TestServer) -> None:
    await register_ghost(server, "bridge_carol", inhibit_login=True)
    flows = await server.client().get(f"{V3}/login")
    assert {"type": "m.login.application_service"} in flows.body["flows"]
    resp = await as_client(server).post(f"{V3}/login", {
        "type": "m.login.application_service",
        "identifier": {"type": "m.id.user", "user": "bridge_carol"}})
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@bridge_carol:test.local"
    # not with a user's token, not for users outside the namespace
    alice = await server.register("alice")
    resp = await alice.post(f"{V3}/login", {
        "type": "m.login.application_service",
        "identifier": {"type": "m.id.user", "user": "bridge_carol"}})
    assert resp.code == 401
    resp = await as_client(server).post(f"{V3}/login", {
        "type": "m.login.application_service",
        "identifier": {"type": "m.id.user", "user": "alice"}})
    assert resp.code == 403


# -- masquerading ---------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_the_service_acts_as_its_ghosts(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    await register_ghost(server, "bridge_dave")
    ghost = "@bridge_dave:test.local"
    client = as_client(server)
    resp = await client.post(f"{V3}/rooms/{room_id}/join", {}, params=as_user(ghost))
    assert resp.code == 200, resp.body
    resp = await client.put(f"{V3}/rooms/{room_id}/send/m.room.message/t1",
                            {"msgtype": "m.text", "body": "from IRC"}, params=as_user(ghost))
    assert resp.code == 200, resp.body
    event = await alice.get(f"{V3}/rooms/{room_id}/event/{resp.body['event_id']}")
    assert event.body["sender"] == ghost
    whoami = await client.get(f"{V3}/account/whoami")
    assert whoami.body["user_id"] == BOT
    resp = await client.put(f"{V3}/profile/{ghost}/displayname",
                            {"displayname": "Dave (IRC)"}, params=as_user(ghost))
    assert resp.code == 200, resp.body
    profile = await alice.get(f"{V3}/profile/{ghost}")
    assert profile.body["displayname"] == "Dave (IRC)"


@pytest_twisted.ensureDeferred
async def test_a_ghost_must_be_registered_and_in_the_namespace(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    client = as_client(server)
    resp = await client.post(f"{V3}/rooms/{room_id}/join", {},
                             params=as_user("@bridge_nobody:test.local"))
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    resp = await client.put(f"{V3}/profile/{alice.user_id}/displayname",
                            {"displayname": "hijacked"}, params=as_user(str(alice.user_id)))
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_the_service_user_exists_without_registering(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await alice.post(f"{V3}/rooms/{room_id}/invite", {"user_id": BOT})
    assert resp.code == 200, resp.body
    resp = await as_client(server).post(f"{V3}/join/{room_id}", {})
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_the_service_deactivates_its_ghosts_without_a_password(
        server: TestServer) -> None:
    resp = await register_ghost(server, "bridge_gone")
    token = resp.body["access_token"]
    resp = await as_client(server).post(f"{V3}/account/deactivate", {},
                                        params=as_user("@bridge_gone:test.local"))
    assert resp.code == 200, resp.body
    assert (await server.client(token).get(f"{V3}/account/whoami")).code == 401
    # and can no longer act as them
    resp = await as_client(server).get(f"{V3}/account/whoami",
                                       params=as_user("@bridge_gone:test.local"))
    assert (resp.code, resp.body["errcode"]) == (403, "M_USER_DEACTIVATED")


@pytest_twisted.ensureDeferred
async def test_a_service_with_rate_limited_false_is_not_rate_limited(
        engine: str, tmp_path: Any, appservice: FakeAppService) -> None:
    from tests.appservice.conftest import registration, write_registration
    from tests.harness import start_server, stop_server
    path = write_registration(tmp_path, registration(appservice.url))
    srv = await start_server(engine, str(tmp_path), app_service_config_files=[path],
                             rc_message={"per_second": 0.1, "burst_count": 2})
    try:
        room_id = await create_room(as_client(srv))
        for i in range(5):
            resp = await as_client(srv).put(
                f"{V3}/rooms/{room_id}/send/m.room.message/n{i}",
                {"msgtype": "m.text", "body": str(i)})
            assert resp.code == 200, resp.body
        alice = await srv.register("alice")
        room2 = await create_room(alice)
        codes = [(await alice.put(f"{V3}/rooms/{room2}/send/m.room.message/a{i}",
                                  {"msgtype": "m.text", "body": "x"})).code for i in range(4)]
        assert 429 in codes
    finally:
        await stop_server(srv)


# -- aliases ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_exclusive_aliases_belong_to_the_service(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    alias = "%23bridge_chan:test.local"
    resp = await alice.put(f"{V3}/directory/room/{alias}", {"room_id": room_id})
    assert (resp.code, resp.body["errcode"]) == (400, "M_EXCLUSIVE")
    # the service need not be in the room
    resp = await as_client(server).put(f"{V3}/directory/room/{alias}", {"room_id": room_id})
    assert resp.code == 200, resp.body
    resp = await as_client(server).put(f"{V3}/directory/room/%23other:test.local",
                                       {"room_id": room_id})
    assert (resp.code, resp.body["errcode"]) == (400, "M_EXCLUSIVE")
    resolved = await alice.get(f"{V3}/directory/room/{alias}")
    assert resolved.body["room_id"] == room_id
    resp = await as_client(server).delete(f"{V3}/directory/room/{alias}")
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_create_room_cannot_take_an_exclusive_alias(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.post(f"{V3}/createRoom", {"room_alias_name": "bridge_mine"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_EXCLUSIVE")
    resp = await as_client(server).post(f"{V3}/createRoom", {"room_alias_name": "bridge_mine"})
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_an_unknown_alias_of_the_namespace_is_asked_of_the_service(
        server: TestServer, appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")

    async def on_alias(alias: str) -> bool:
        resp = await as_client(server).put(f"{V3}/directory/room/{quote(alias)}",
                                           {"room_id": room_id})
        return resp.code == 200

    appservice.on_alias = on_alias
    bob = await server.register("bob")
    resp = await bob.post(f"{V3}/join/%23bridge_made:test.local", {})
    assert resp.code == 200, resp.body
    assert resp.body["room_id"] == room_id
    assert appservice.alias_queries == ["#bridge_made:test.local"]
    # outside the namespace nobody is asked
    resp = await bob.get(f"{V3}/directory/room/%23elsewhere:test.local")
    assert resp.code == 404
    assert appservice.alias_queries == ["#bridge_made:test.local"]


@pytest_twisted.ensureDeferred
async def test_an_unknown_user_of_the_namespace_is_asked_of_the_service(
        server: TestServer, appservice: FakeAppService) -> None:
    async def on_user(user_id: str) -> bool:
        resp = await register_ghost(server, user_id.split(":")[0][1:], inhibit_login=True)
        return resp.code == 200

    appservice.on_user = on_user
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await alice.post(f"{V3}/rooms/{room_id}/invite",
                            {"user_id": "@bridge_erin:test.local"})
    assert resp.code == 200, resp.body
    assert appservice.user_queries == ["@bridge_erin:test.local"]
    resp = await alice.get(f"{V3}/profile/@bridge_frank:test.local")
    assert resp.code == 200, resp.body
    assert appservice.user_queries[-1] == "@bridge_frank:test.local"
    # a registered ghost is not asked about again
    resp = await alice.get(f"{V3}/profile/@bridge_frank:test.local")
    assert len(appservice.user_queries) == 2


@pytest_twisted.ensureDeferred
async def test_a_user_the_service_does_not_know_stays_unknown(
        server: TestServer, appservice: FakeAppService) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await alice.post(f"{V3}/rooms/{room_id}/invite",
                            {"user_id": "@bridge_ghost:test.local"})
    assert resp.code == 404
    assert appservice.user_queries == ["@bridge_ghost:test.local"]


# -- third-party lookups, room lists, ping ---------------------------------------------

@pytest_twisted.ensureDeferred
async def test_third_party_lookups_are_proxied_to_the_service(
        server: TestServer, appservice: FakeAppService) -> None:
    appservice.protocols["irc"] = {
        "user_fields": ["network", "nickname"], "location_fields": ["network", "channel"],
        "icon": "mxc://example.org/irc", "field_types": {},
        "instances": [{"desc": "Libera", "network_id": "libera", "fields": {}}]}
    appservice.users = [{"protocol": "irc", "userid": "@bridge_x:test.local",
                         "fields": {"nickname": "x"}}]
    alice = await server.register("alice")
    protocols = await alice.get(f"{V3}/thirdparty/protocols")
    assert protocols.code == 200
    assert protocols.body["irc"]["instances"][0]["instance_id"] == "bridge|libera"
    one = await alice.get(f"{V3}/thirdparty/protocol/irc")
    assert one.body["user_fields"] == ["network", "nickname"]
    assert (await alice.get(f"{V3}/thirdparty/protocol/xmpp")).code == 404
    users = await alice.get(f"{V3}/thirdparty/user/irc", params={"nickname": "x"})
    assert users.body == appservice.users
    assert appservice.query_args[-1] == {"nickname": ["x"]}
    assert appservice.auth_headers[-1] == "Bearer hs-secret"
    locations = await alice.get(f"{V3}/thirdparty/location", params={"alias": "#x:y"})
    assert locations.body == []


@pytest_twisted.ensureDeferred
async def test_the_service_has_its_own_room_list(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, preset="public_chat")
    path = f"{V3}/directory/list/appservice/libera/{room_id}"
    assert (await alice.put(path, {"visibility": "public"})).code == 403
    resp = await as_client(server).put(path, {"visibility": "public"})
    assert resp.code == 200, resp.body

    async def listed(body: dict[str, Any]) -> list[str]:
        resp = await alice.post(f"{V3}/publicRooms", body)
        assert resp.code == 200, resp.body
        return [r["room_id"] for r in resp.body["chunk"]]

    assert room_id not in await listed({})
    assert room_id in await listed({"third_party_instance_id": "bridge|libera"})
    assert room_id in await listed({"include_all_networks": True})
    assert room_id not in await listed({"third_party_instance_id": "bridge|oftc"})
    assert (await as_client(server).delete(path)).code == 200
    assert room_id not in await listed({"third_party_instance_id": "bridge|libera"})


@pytest_twisted.ensureDeferred
async def test_ping_reaches_the_service(server: TestServer, appservice: FakeAppService) -> None:
    resp = await as_client(server).post("/_matrix/client/v1/appservice/bridge/ping",
                                        {"transaction_id": "p1"})
    assert resp.code == 200, resp.body
    assert isinstance(resp.body["duration_ms"], int)
    assert appservice.pings == [{"transaction_id": "p1"}]
    resp = await as_client(server).post("/_matrix/client/v1/appservice/other/ping", {})
    assert resp.code == 403
    appservice.fail_next = 1
    resp = await as_client(server).post("/_matrix/client/v1/appservice/bridge/ping", {})
    assert (resp.code, resp.body["errcode"], resp.body["status"]) == (502, "M_BAD_STATUS", 500)


@pytest_twisted.ensureDeferred
async def test_send_text_helper_still_works_for_ghost_sessions(server: TestServer) -> None:
    resp = await register_ghost(server, "bridge_gina")
    ghost = server.client(resp.body["access_token"])
    room_id = await create_room(ghost)
    assert (await send_text(ghost, room_id, "hello")).startswith("$")
