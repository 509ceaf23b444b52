"""The end-to-end encrypted conversation, as matrix-nio (with vodozemac)
holds it: two encrypting clients, an encrypted room, a message that only
the clients can read. nio uploads its device and one-time keys, queries the
other's devices, claims a one-time key to open an Olm session, sends the
Megolm room key to-device, and the other side decrypts. Once on one server
and once across two federating servers.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import nio
import pytest_twisted

from tests.federation.conftest import federation, test_ca
from tests.harness import TestServer
from tests.interop.test_nio import call

__all__ = ["federation", "test_ca"]  # the fixtures, re-exported for pytest

PASSWORD = "nio e2e password"
ENCRYPTION = {"type": "m.room.encryption", "state_key": "",
              "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


@pytest_twisted.async_yield_fixture
async def e2e_clients(tmp_path: Any) -> AsyncIterator[Any]:
    """A factory of encrypting nio clients (each with its own key store),
    closed after the test."""
    made: list[nio.AsyncClient] = []

    async def factory(server: TestServer, localpart: str) -> nio.AsyncClient:
        registrar = nio.AsyncClient(server.base_url)
        made.append(registrar)
        registered = await call(registrar.register(localpart, PASSWORD))
        assert isinstance(registered, nio.RegisterResponse), registered
        store = str(tmp_path / f"store-{localpart}-{len(made)}")
        os.makedirs(store)
        client = nio.AsyncClient(server.base_url, registered.user_id, store_path=store,
                                 config=nio.AsyncClientConfig(store_sync_tokens=False,
                                                              encryption_enabled=True))
        made.append(client)
        login = await call(client.login(PASSWORD, device_name=f"{localpart}'s nio"))
        assert isinstance(login, nio.LoginResponse), login
        assert client.olm is not None
        return client

    yield factory
    for client in made:
        await call(client.close())


async def sync_and_keep_keys(client: nio.AsyncClient, timeout: int = 0) -> Any:
    """One sync, then what nio's sync_forever does with keys after it."""
    response = await call(client.sync(timeout=timeout, full_state=False))
    assert isinstance(response, nio.SyncResponse), response
    if client.should_upload_keys:
        assert isinstance(await call(client.keys_upload()), nio.KeysUploadResponse)
    if client.should_query_keys:
        assert isinstance(await call(client.keys_query()), nio.KeysQueryResponse)
    if client.should_claim_keys:
        claimed = await call(client.keys_claim(client.get_users_for_key_claiming()))
        assert isinstance(claimed, nio.KeysClaimResponse), claimed
    return response


async def until(client: nio.AsyncClient, wanted: Any, rounds: int = 20) -> Any:
    for _ in range(rounds):
        response = await sync_and_keep_keys(client, timeout=1000)
        found = wanted(response)
        if found:
            return found
    raise AssertionError("never saw what was wanted")


async def encrypted_conversation(alice: nio.AsyncClient, bob: nio.AsyncClient,
                                 servers: list[TestServer]) -> None:
    await sync_and_keep_keys(alice)
    await sync_and_keep_keys(bob)
    # the server counts the one-time keys nio uploaded
    assert alice.olm is not None and alice.olm.uploaded_key_count
    created = await call(alice.room_create(name="secret", invite=[bob.user_id],
                                           initial_state=[ENCRYPTION]))
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id
    await until(bob, lambda r: room_id in r.rooms.invite)
    joined = await call(bob.join(room_id))
    assert isinstance(joined, nio.JoinResponse), joined
    await until(alice, lambda r: bob.user_id in alice.rooms[room_id].users)
    assert alice.rooms[room_id].encrypted

    sent = await call(alice.room_send(room_id, "m.room.message",
                                      {"msgtype": "m.text", "body": "for bob's eyes only"},
                                      ignore_unverified_devices=True))
    assert isinstance(sent, nio.RoomSendResponse), sent

    def decrypted(response: Any) -> Any:
        room = response.rooms.join.get(room_id)
        events = room.timeline.events if room is not None else []
        return next((e for e in events if getattr(e, "event_id", None) == sent.event_id),
                    None)

    event = await until(bob, decrypted)
    # decrypted by bob's client: a plain text message, not an undecryptable MegolmEvent
    assert isinstance(event, nio.RoomMessageText), event
    assert event.body == "for bob's eyes only"
    assert event.decrypted and event.sender == alice.user_id
    # and what the servers hold is ciphertext
    for server in servers:
        stored = await server.hs.stores.events.get_event(sent.event_id)
        assert stored is not None and stored.type == "m.room.encrypted"
        assert "for bob's eyes only" not in json.dumps(stored.json)


@pytest_twisted.ensureDeferred
async def test_encrypted_conversation_on_one_server(server: TestServer,
                                                    e2e_clients: Any) -> None:
    alice = await e2e_clients(server, "alice")
    bob = await e2e_clients(server, "bob")
    await encrypted_conversation(alice, bob, [server])


@pytest_twisted.ensureDeferred
async def test_encrypted_conversation_across_two_servers(federation: Any,
                                                         e2e_clients: Any) -> None:
    server_a = await federation()
    server_b = await federation()
    alice = await e2e_clients(server_a, "alice")
    bob = await e2e_clients(server_b, "bob")
    await encrypted_conversation(alice, bob, [server_a, server_b])
