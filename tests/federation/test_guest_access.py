"""Guests across servers: a room that revokes guest access on another server
still makes our guests leave (the spec's "the server MUST set those users'
membership to leave", whoever sent the change)."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.federation.harness import server_name
from tests.federation.test_rooms import _joined, _membership_is, q, wait_for
from tests.helpers import create_public_room


@pytest_twisted.ensureDeferred
async def test_guests_leave_when_a_remote_revocation_arrives(federation: Any) -> None:
    a = await federation()
    b = await federation(allow_guest_access=True)
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_public_room(alice)
    resp = await alice.put(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.guest_access",
                           {"guest_access": "can_join"})
    assert resp.code == 200, resp.body
    resp = await bob.post(f"/_matrix/client/v3/join/{q(room_id)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, room_id, bob.user_id))

    registered = await b.client().post("/_matrix/client/v3/register", {},
                                       params={"kind": "guest"})
    assert registered.code == 200, registered.body
    visitor = b.client(registered.body["access_token"])
    guest_id = registered.body["user_id"]
    # b holds the room now, and its guest_access lets guests in
    resp = await visitor.post(f"/_matrix/client/v3/rooms/{q(room_id)}/join", {})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _joined(alice, room_id, guest_id))

    resp = await alice.put(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.guest_access",
                           {"guest_access": "forbidden"})
    assert resp.code == 200, resp.body
    # b hears of it over federation and makes its guest leave; a sees the leave
    await wait_for(lambda: _membership_is(alice, room_id, guest_id, "leave"))
    # and bob, a full user, stays
    assert await _membership_is(alice, room_id, bob.user_id, "join")
