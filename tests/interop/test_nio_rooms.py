"""matrix-nio in rooms: create, invite, join, talk, paginate, redact.

nio is driven through its raw API methods only: they need no /sync (which
does not exist yet). See ``test_nio.py`` for how nio runs under our reactor.
"""

from __future__ import annotations

from typing import Any

import nio
import pytest_twisted

from tests.harness import TestServer
from tests.interop.test_nio import call, clients, new_client

__all__ = ["clients"]  # the fixture, re-exported for pytest

ALICE = "@alice:test.local"
BOB = "@bob:test.local"
PASSWORD = "nio rooms password"


async def registered_and_logged_in(server: TestServer, made: list[nio.AsyncClient],
                                   localpart: str) -> Any:
    registrar = new_client(server, made)
    registered = await call(registrar.register(localpart, PASSWORD))
    assert isinstance(registered, nio.RegisterResponse), registered
    client = new_client(server, made, registered.user_id)
    login = await call(client.login(PASSWORD, device_name=f"{localpart}'s nio"))
    assert isinstance(login, nio.LoginResponse), login
    return client


async def timeline(client: Any, room_id: str, page_size: int) -> list[Any]:
    """The whole timeline, oldest first, fetched backwards ``page_size`` at a time."""
    events: list[Any] = []
    start = None
    while True:
        page = await call(client.room_messages(room_id, start=start, limit=page_size))
        assert isinstance(page, nio.RoomMessagesResponse), page
        events.extend(page.chunk)
        if not page.chunk or not page.end:
            break
        start = page.end
    events.reverse()
    return events


def texts(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.sender, e.body) for e in events if isinstance(e, nio.RoomMessageText)]


@pytest_twisted.ensureDeferred
async def test_nio_users_meet_talk_paginate_and_redact(
        server: TestServer, clients: list[nio.AsyncClient]) -> None:
    alice = await registered_and_logged_in(server, clients, "alice")
    bob = await registered_and_logged_in(server, clients, "bob")

    created = await call(alice.room_create(name="nio room", topic="talking"))
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id

    invited = await call(alice.room_invite(room_id, BOB))
    assert isinstance(invited, nio.RoomInviteResponse), invited
    joined = await call(bob.join(room_id))
    assert isinstance(joined, nio.JoinResponse), joined
    assert joined.room_id == room_id

    members = await call(alice.joined_members(room_id))
    assert isinstance(members, nio.JoinedMembersResponse), members
    assert sorted(m.user_id for m in members.members) == [ALICE, BOB]

    conversation = [(alice, ALICE, "hello bob"), (bob, BOB, "hi alice"),
                    (alice, ALICE, "oops, wrong room"), (bob, BOB, "bye")]
    sent: list[str] = []
    for client, _, body in conversation:
        response = await call(client.room_send(room_id, "m.room.message",
                                               {"msgtype": "m.text", "body": body}))
        assert isinstance(response, nio.RoomSendResponse), response
        sent.append(response.event_id)

    expected = [(sender, body) for _, sender, body in conversation]
    for client in (alice, bob):
        for page_size in (2, 3, 50):
            assert texts(await timeline(client, room_id, page_size)) == expected

    name = await call(bob.room_get_state_event(room_id, "m.room.name"))
    assert isinstance(name, nio.RoomGetStateEventResponse), name
    assert name.content == {"name": "nio room"}

    # alice redacts her mistake; both see it gone
    redacted = await call(alice.room_redact(room_id, sent[2], reason="wrong room"))
    assert isinstance(redacted, nio.RoomRedactResponse), redacted
    assert redacted.event_id and redacted.event_id not in sent
    for client in (alice, bob):
        events = await timeline(client, room_id, 3)
        assert texts(events) == [expected[0], expected[1], expected[3]]
        [gone] = [e for e in events if e.event_id == sent[2]]
        assert isinstance(gone, nio.RedactedEvent), gone
        assert gone.redacter == ALICE
        assert gone.reason == "wrong room"
        [redaction] = [e for e in events if e.event_id == redacted.event_id]
        assert isinstance(redaction, nio.RedactionEvent), redaction
        assert redaction.redacts == sent[2]

    # bob may not redact alice's messages (redact level 50, bob has 0)
    refused = await call(bob.room_redact(room_id, sent[0]))
    assert isinstance(refused, nio.RoomRedactError), refused
    assert refused.status_code == "M_FORBIDDEN"


@pytest_twisted.ensureDeferred
async def test_nio_knocks_is_let_in_and_leaves(
        server: TestServer, clients: list[nio.AsyncClient]) -> None:
    alice = await registered_and_logged_in(server, clients, "alice")
    bob = await registered_and_logged_in(server, clients, "bob")
    created = await call(alice.room_create(name="knock knock"))
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id

    enabled = await call(alice.room_enable_knocking(room_id))
    assert isinstance(enabled, nio.RoomPutStateResponse), enabled
    knocked = await call(bob.room_knock(room_id, reason="who's there?"))
    assert isinstance(knocked, nio.RoomKnockResponse), knocked
    assert knocked.room_id == room_id

    member = await call(alice.room_get_state_event(room_id, "m.room.member", BOB))
    assert isinstance(member, nio.RoomGetStateEventResponse), member
    assert (member.content["membership"], member.content["reason"]) == ("knock",
                                                                        "who's there?")

    assert isinstance(await call(alice.room_invite(room_id, BOB)), nio.RoomInviteResponse)
    assert isinstance(await call(bob.join(room_id)), nio.JoinResponse)
    members = await call(alice.joined_members(room_id))
    assert isinstance(members, nio.JoinedMembersResponse), members
    assert sorted(m.user_id for m in members.members) == [ALICE, BOB]

    left = await call(bob.room_leave(room_id))
    assert isinstance(left, nio.RoomLeaveResponse), left
    # the door may be knocked on again, until it is invite-only
    assert isinstance(await call(bob.room_knock(room_id)), nio.RoomKnockResponse)
    assert isinstance(await call(bob.room_leave(room_id)), nio.RoomLeaveResponse)
    closed = await call(alice.room_put_state(room_id, "m.room.join_rules",
                                             {"join_rule": "invite"}))
    assert isinstance(closed, nio.RoomPutStateResponse), closed
    refused = await call(bob.room_knock(room_id))
    assert isinstance(refused, nio.RoomKnockError), refused
    assert refused.status_code == "M_FORBIDDEN"
