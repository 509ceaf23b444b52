"""Reporting events, rooms and users to the server's admins."""

from __future__ import annotations

import pytest_twisted

from tests.api.test_room_reads import room_with_visibility
from tests.api.test_rooms import BOB, V3, create_room, invite, join, send_text, two_users_in_a_room
from tests.harness import TestServer


@pytest_twisted.ensureDeferred
async def test_a_member_reports_an_event_and_admins_can_read_it(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    event_id = await send_text(alice, room_id, "spam spam spam", "t1")

    resp = await bob.post(f"{V3}/rooms/{room_id}/report/{event_id}",
                          {"reason": "spam", "score": -100})

    assert (resp.code, resp.body) == (200, {})
    reports = await server.hs.stores.reports.list_reports()
    assert [(r.kind, r.reporter, r.room_id, r.event_id, r.target_user_id, r.reason, r.score)
            for r in reports] == [
        ("event", bob.user_id, room_id, event_id, alice.user_id, "spam", -100)]


@pytest_twisted.ensureDeferred
async def test_reason_is_optional_for_event_reports(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")

    resp = await bob.post(f"{V3}/rooms/{room_id}/report/{event_id}", {})

    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_events_the_reporter_cannot_see_are_not_found(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await room_with_visibility(alice, "joined", preset="public_chat")
    before = await send_text(alice, room_id, "before bob joined", "t1")
    assert (await join(bob, room_id)).code == 200
    other_room = await create_room(alice)
    elsewhere = await send_text(alice, other_room, "in another room", "t2")

    cases = [
        (bob, room_id, before),  # history bob may not see
        (carol, room_id, before),  # not joined
        (bob, room_id, "$nonexistent"),
        (bob, room_id, elsewhere),  # an event of another room
        (bob, "!unknown:test.local", before),
    ]
    for client, room, event_id in cases:
        resp = await client.post(f"{V3}/rooms/{room}/report/{event_id}", {"reason": "x"})
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND"), (room, event_id)
    assert await server.hs.stores.reports.list_reports() == []


@pytest_twisted.ensureDeferred
async def test_bad_report_bodies_are_refused(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    event_id = await send_text(alice, room_id, "hello", "t1")
    path = f"{V3}/rooms/{room_id}/report/{event_id}"

    for body in ({"score": 5}, {"score": "bad"}, {"reason": 3}):
        resp = await bob.post(path, body)
        assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON"), body


@pytest_twisted.ensureDeferred
async def test_anyone_may_report_a_room_and_a_user(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create_room(alice)  # private: bob is not in it
    assert (await invite(alice, room_id, BOB)).code == 200

    room = await bob.post(f"{V3}/rooms/{room_id}/report", {"reason": "abusive invite"})
    user = await bob.post(f"{V3}/users/{alice.user_id}/report", {"reason": "harasser"})
    remote = await bob.post(f"{V3}/users/@someone:elsewhere.example/report", {"reason": ""})

    assert [room.code, user.code, remote.code] == [200, 200, 200]
    reports = await server.hs.stores.reports.list_reports()
    assert [(r.kind, r.room_id, r.target_user_id, r.reason) for r in reports] == [
        ("user", None, "@someone:elsewhere.example", ""),
        ("user", None, alice.user_id, "harasser"),
        ("room", room_id, None, "abusive invite"),
    ]
    # pages of the admin listing, newest first
    page = await server.hs.stores.reports.list_reports(limit=1, before_id=reports[1].id)
    assert [r.kind for r in page] == ["room"]


@pytest_twisted.ensureDeferred
async def test_unknown_rooms_and_users_are_not_found(server: TestServer) -> None:
    bob = await server.register("bob")

    room = await bob.post(f"{V3}/rooms/!nowhere:test.local/report", {"reason": "x"})
    user = await bob.post(f"{V3}/users/@ghost:test.local/report", {"reason": "x"})
    no_reason = await bob.post(f"{V3}/users/{bob.user_id}/report", {})

    assert (room.code, room.body["errcode"]) == (404, "M_NOT_FOUND")
    assert (user.code, user.body["errcode"]) == (404, "M_NOT_FOUND")
    assert (no_reason.code, no_reason.body["errcode"]) == (400, "M_MISSING_PARAM")
