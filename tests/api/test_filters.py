"""Sync filters: uploaded once, referred to by ID, downloaded as they were sent."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from homeserver.sync.filter_schema import filter_problem
from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"

SPEC_EXAMPLE: dict[str, Any] = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {"limit": 10, "types": ["m.room.message"],
                     "not_rooms": ["!726s6s6q:example.com"],
                     "not_senders": ["@spam:example.com"]},
        "ephemeral": {"types": ["m.receipt", "m.typing"],
                      "not_rooms": ["!726s6s6q:example.com"],
                      "not_senders": ["@spam:example.com"]},
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


def filters_path(client: Client) -> str:
    return f"{V3}/user/{client.user_id}/filter"


@pytest_twisted.ensureDeferred
async def test_filter_round_trips(server: TestServer) -> None:
    alice = await server.register("alice")

    made = await alice.post(filters_path(alice), SPEC_EXAMPLE)

    assert made.code == 200
    filter_id = made.body["filter_id"]
    assert isinstance(filter_id, str) and not filter_id.startswith("{")
    got = await alice.get(f"{filters_path(alice)}/{filter_id}")
    assert (got.code, got.body) == (200, SPEC_EXAMPLE)


@pytest_twisted.ensureDeferred
async def test_unknown_fields_are_kept(server: TestServer) -> None:
    alice = await server.register("alice")
    body = {"room": {"timeline": {"limit": 5, "org.example.future": [1]}},
            "org.example.top": {"x": None}}

    made = await alice.post(filters_path(alice), body)
    got = await alice.get(f"{filters_path(alice)}/{made.body['filter_id']}")

    assert got.body == body


@pytest_twisted.ensureDeferred
async def test_empty_filter_is_valid(server: TestServer) -> None:
    alice = await server.register("alice")
    made = await alice.post(filters_path(alice), {})
    got = await alice.get(f"{filters_path(alice)}/{made.body['filter_id']}")
    assert (got.code, got.body) == (200, {})


@pytest_twisted.ensureDeferred
async def test_same_filter_twice_gets_the_same_id(server: TestServer) -> None:
    alice = await server.register("alice")

    first = await alice.post(filters_path(alice), {"room": {"timeline": {"limit": 1}}})
    again = await alice.post(filters_path(alice), {"room": {"timeline": {"limit": 1}}})
    other = await alice.post(filters_path(alice), {"room": {"timeline": {"limit": 2}}})

    assert first.body["filter_id"] == again.body["filter_id"]
    assert other.body["filter_id"] != first.body["filter_id"]
    assert await server.hs.stores.filters.count_filters(alice.user_id or "") == 2


@pytest_twisted.ensureDeferred
async def test_filter_ids_belong_to_their_user(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    alices = await alice.post(filters_path(alice), {"event_format": "client"})
    bobs = await bob.post(filters_path(bob), {"event_format": "federation"})

    # same number, different filters
    assert alices.body["filter_id"] == bobs.body["filter_id"]
    got = await bob.get(f"{filters_path(bob)}/{bobs.body['filter_id']}")
    assert got.body == {"event_format": "federation"}


@pytest_twisted.ensureDeferred
async def test_another_users_filter_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    made = await alice.post(filters_path(alice), {"event_format": "client"})

    resp = await bob.get(f"{filters_path(alice)}/{made.body['filter_id']}")

    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_unknown_or_malformed_filter_id_is_404(server: TestServer) -> None:
    alice = await server.register("alice")
    await alice.post(filters_path(alice), {})
    for bad in ("12345", "abc", "-1", "1.0", "%2B0", "99999999999999999999999"):
        resp = await alice.get(f"{filters_path(alice)}/{bad}")
        assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND"), bad


@pytest_twisted.ensureDeferred
async def test_cannot_upload_a_filter_for_someone_else(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")

    resp = await bob.post(filters_path(alice), {})

    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert await server.hs.stores.filters.count_filters(alice.user_id or "") == 0


@pytest_twisted.ensureDeferred
async def test_invalid_filters_are_refused_and_not_stored(server: TestServer) -> None:
    alice = await server.register("alice")
    invalid: list[tuple[Any, str]] = [
        ({"room": {"timeline": {"limit": -5}}}, "room.timeline.limit"),
        ({"room": {"timeline": {"limit": "10"}}}, "room.timeline.limit"),
        ({"room": {"timeline": {"limit": 2.5}}}, "room.timeline.limit"),
        ({"presence": {"limit": True}}, "presence.limit"),
        ({"event_format": "xml"}, "event_format"),
        ({"event_fields": "type"}, "event_fields"),
        ({"room": {"rooms": "!a:test.local"}}, "room.rooms"),
        ({"room": {"rooms": ["!a:test.local", 5]}}, "room.rooms[1]"),
        ({"room": {"not_rooms": ["#alias:test.local"]}}, "room.not_rooms[0]"),
        ({"room": {"state": {"types": [1]}}}, "room.state.types[0]"),
        ({"room": {"state": {"lazy_load_members": "yes"}}}, "room.state.lazy_load_members"),
        ({"room": {"include_leave": 1}}, "room.include_leave"),
        ({"account_data": {"senders": ["not-a-user"]}}, "account_data.senders[0]"),
        ({"room": []}, "room"),
    ]
    for body, where in invalid:
        resp = await alice.post(filters_path(alice), body)
        assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON"), body
        assert where in resp.body["error"], (body, resp.body["error"])
    not_object = await alice.post(filters_path(alice), raw=b"[]")
    assert (not_object.code, not_object.body["errcode"]) == (400, "M_BAD_JSON")
    assert await server.hs.stores.filters.count_filters(alice.user_id or "") == 0


def test_filter_problems_name_where_they_are() -> None:
    assert filter_problem(SPEC_EXAMPLE) is None
    assert filter_problem({"room": {"timeline": {"limit": -1}}}) == (
        "room.timeline.limit: -1 is less than the minimum of 0")
    assert filter_problem({"room": {"timeline": {"limit": 0}}}) is None
    assert filter_problem({"room": {"rooms": ["nope"]}}) == (
        "room.rooms[0]: 'nope' is not a valid room ID")
