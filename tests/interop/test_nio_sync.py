"""matrix-nio through /sync: two nio clients see each other's messages,
typing, read receipts and presence, as an app built on nio would.

nio parses every /sync response with its own schema (jsonschema over the
spec's shapes): a response it cannot parse comes back as a SyncError.
"""

from __future__ import annotations

from typing import Any

import nio
import pytest_twisted

from tests.harness import TestServer
from tests.interop.test_nio import call, clients
from tests.interop.test_nio_rooms import registered_and_logged_in

__all__ = ["clients"]  # the fixture, re-exported for pytest

ALICE = "@alice:test.local"
BOB = "@bob:test.local"


async def sync_until(client: Any, wanted: Any, rounds: int = 10) -> Any:
    """Sync (long-polling) until ``wanted(response)`` is true."""
    for _ in range(rounds):
        response = await call(client.sync(timeout=5000, full_state=False))
        assert isinstance(response, nio.SyncResponse), response
        if wanted(response):
            return response
    raise AssertionError("never saw what was wanted")


def joined(response: Any, room_id: str) -> Any:
    return response.rooms.join.get(room_id)


@pytest_twisted.ensureDeferred
async def test_nio_clients_talk_through_sync(server: TestServer,
                                              clients: list[nio.AsyncClient]) -> None:
    alice = await registered_and_logged_in(server, clients, "alice")
    bob = await registered_and_logged_in(server, clients, "bob")
    created = await call(alice.room_create(name="nio sync", invite=[BOB]))
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id

    # bob's first sync shows the invite; nio keeps the room as invited
    first = await call(bob.sync(timeout=0))
    assert isinstance(first, nio.SyncResponse), first
    assert room_id in first.rooms.invite
    assert isinstance(await call(bob.join(room_id)), nio.JoinResponse)
    await call(alice.sync(timeout=0))

    # a message from alice reaches bob's long-poll
    sent = await call(alice.room_send(room_id, "m.room.message",
                                      {"msgtype": "m.text", "body": "hi bob"}))
    assert isinstance(sent, nio.RoomSendResponse), sent
    got = await sync_until(bob, lambda r: joined(r, room_id) is not None and any(
        getattr(e, "body", None) == "hi bob" for e in joined(r, room_id).timeline.events))
    assert bob.rooms[room_id].display_name in ("nio sync",)
    assert got.next_batch

    # bob types; alice sees it in the room's ephemeral events
    typing = await call(bob.room_typing(room_id, True, timeout=10000))
    assert isinstance(typing, nio.RoomTypingResponse), typing
    await sync_until(alice, lambda r: joined(r, room_id) is not None and any(
        isinstance(e, nio.TypingNoticeEvent) and BOB in e.users
        for e in joined(r, room_id).ephemeral))
    assert BOB in alice.rooms[room_id].typing_users

    # bob reads alice's message; alice sees the receipt
    receipt = await call(bob.room_read_markers(room_id, sent.event_id, sent.event_id))
    assert isinstance(receipt, nio.RoomReadMarkersResponse), receipt
    await sync_until(alice, lambda r: joined(r, room_id) is not None and any(
        isinstance(e, nio.ReceiptEvent) and any(
            rc.event_id == sent.event_id and rc.user_id == BOB for rc in e.receipts)
        for e in joined(r, room_id).ephemeral))

    # bob sets a status; alice, who shares the room, sees bob's presence
    status = await call(bob.set_presence("online", "at my desk"))
    assert isinstance(status, nio.PresenceSetResponse), status
    await sync_until(alice, lambda r: any(
        isinstance(e, nio.PresenceEvent) and e.user_id == BOB
        and e.status_msg == "at my desk" for e in r.presence_events))
    got_presence = await call(alice.get_presence(BOB))
    assert isinstance(got_presence, nio.PresenceGetResponse), got_presence
    assert got_presence.status_msg == "at my desk"
