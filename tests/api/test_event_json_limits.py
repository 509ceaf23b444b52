"""What a client sees when an event's JSON is not canonical JSON or is too big:
in room versions 6 and later, integers outside [-(2**53)+1, 2**53-1], floats
and the non-JSON values NaN/Infinity are refused with 400 (M_BAD_JSON where
the body parses); an event over 65536 bytes, message or state, is 413."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.harness import TestServer
from tests.helpers import create_room, q, send

V3 = "/_matrix/client/v3"


@pytest.mark.parametrize("value", [2**53, -(2**53), 1.1])
@pytest_twisted.ensureDeferred
async def test_numbers_outside_canonical_json_are_bad_json_in_v6_rooms(
        server: TestServer, value: float) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, room_version="6")
    resp = await send(alice, room_id, {"msgtype": "sytest.dummy", "body": value}, "t",
                      event_type="sytest.dummy")
    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")


@pytest_twisted.ensureDeferred
async def test_largest_safe_integers_are_accepted_in_v6_rooms(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, room_version="6")
    for i, value in enumerate([2**53 - 1, -(2**53) + 1]):
        resp = await send(alice, room_id, {"msgtype": "sytest.dummy", "body": value}, f"t{i}",
                          event_type="sytest.dummy")
        assert resp.code == 200, resp.body


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
@pytest_twisted.ensureDeferred
async def test_nan_and_infinity_are_400(server: TestServer, literal: bytes) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice, room_version="6")
    raw = b'{"msgtype": "sytest.dummy", "body": ' + literal + b"}"
    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/send/sytest.dummy/t", raw=raw)
    assert resp.code == 400, resp.body
    assert resp.body["errcode"] == "M_NOT_JSON" or resp.body["errcode"] == "M_BAD_JSON"


@pytest_twisted.ensureDeferred
async def test_oversized_message_and_state_event_are_413(server: TestServer) -> None:
    alice = await server.register("alice")
    room_id = await create_room(alice)
    resp = await send(alice, room_id, {"msgtype": "m.text", "body": "A" * 70000}, "big")
    assert resp.code == 413, resp.body
    resp = await alice.put(f"{V3}/rooms/{q(room_id)}/state/oooooooh", {"key": "O" * 70000})
    assert resp.code == 413, resp.body
