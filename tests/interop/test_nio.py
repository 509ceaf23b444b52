"""matrix-nio, an independent client library, against the real server over HTTP.

The suite runs Twisted on the asyncio reactor (pytest.ini), so nio's aiohttp
coroutines share the event loop with the server: ``call`` wraps one in a
Deferred for the test to await.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import nio
import pytest_twisted
from twisted.internet.defer import Deferred

from tests.harness import TestServer

T = TypeVar("T")


async def call(coro: Coroutine[Any, Any, T]) -> T:
    return await Deferred.fromFuture(asyncio.ensure_future(coro))


@pytest_twisted.async_yield_fixture
async def clients(server: TestServer) -> AsyncIterator[list[nio.AsyncClient]]:
    """nio clients made by the test; their HTTP sessions are closed after it."""
    made: list[nio.AsyncClient] = []
    yield made
    for client in made:
        await call(client.close())


def new_client(server: TestServer, made: list[nio.AsyncClient], user: str = "") -> Any:
    client = nio.AsyncClient(server.base_url, user,
                             config=nio.AsyncClientConfig(store_sync_tokens=False,
                                                          encryption_enabled=False))
    made.append(client)
    return client


@pytest_twisted.ensureDeferred
async def test_nio_registers_logs_in_names_itself_and_logs_out(
        server: TestServer, clients: list[nio.AsyncClient]) -> None:
    user_id = "@niouser:test.local"

    # register: nio sends m.login.dummy straight away, without a session
    registrar = new_client(server, clients)
    registered = await call(registrar.register("niouser", "nio password 123",
                                               device_name="nio registration"))
    assert isinstance(registered, nio.RegisterResponse), registered
    assert registered.user_id == user_id
    assert registered.access_token

    # log in as a second device
    client = new_client(server, clients, user_id)
    login = await call(client.login("nio password 123", device_name="nio laptop"))
    assert isinstance(login, nio.LoginResponse), login
    assert login.user_id == user_id
    assert login.device_id and login.device_id != registered.device_id

    whoami = await call(client.whoami())
    assert isinstance(whoami, nio.WhoamiResponse), whoami
    assert (whoami.user_id, whoami.device_id) == (user_id, login.device_id)

    assert isinstance(await call(client.set_displayname("Nio N. User")),
                      nio.ProfileSetDisplayNameResponse)
    name = await call(client.get_displayname())
    assert isinstance(name, nio.ProfileGetDisplayNameResponse), name
    assert name.displayname == "Nio N. User"
    # and someone else sees it too
    other = await call(registrar.get_displayname(user_id))
    assert isinstance(other, nio.ProfileGetDisplayNameResponse), other
    assert other.displayname == "Nio N. User"

    devices = await call(client.devices())
    assert isinstance(devices, nio.DevicesResponse), devices
    names = {d.id: d.display_name for d in devices.devices}
    assert names == {registered.device_id: "nio registration", login.device_id: "nio laptop"}

    logout = await call(client.logout())
    assert isinstance(logout, nio.LogoutResponse), logout
    # the token is dead: nio sees the server's M_UNKNOWN_TOKEN
    client.access_token = login.access_token
    after = await call(client.whoami())
    assert isinstance(after, nio.WhoamiError), after
    assert after.status_code == "M_UNKNOWN_TOKEN"
    # and the device went with it, for the other session
    remaining = await call(registrar.devices())
    assert isinstance(remaining, nio.DevicesResponse), remaining
    assert [d.id for d in remaining.devices] == [registered.device_id]


@pytest_twisted.ensureDeferred
async def test_nio_login_with_a_wrong_password_is_forbidden(
        server: TestServer, clients: list[nio.AsyncClient]) -> None:
    await server.register("alice", "the right password")
    client = new_client(server, clients, "@alice:test.local")
    login = await call(client.login("the wrong password"))
    assert isinstance(login, nio.LoginError), login
    assert login.status_code == "M_FORBIDDEN"
    assert client.access_token == ""


@pytest_twisted.ensureDeferred
async def test_nio_cannot_register_a_taken_name(
        server: TestServer, clients: list[nio.AsyncClient]) -> None:
    await server.register("alice")
    client = new_client(server, clients)
    response = await call(client.register("alice", "another password"))
    assert isinstance(response, nio.responses.RegisterErrorResponse), response
    assert response.status_code == "M_USER_IN_USE"
