"""Requests the server cannot serve still get a Matrix answer a client can act on.

A join no server answers for is 404 "No known servers" (as Synapse says),
with no address of ours in it; a request line or headers over Twisted's
limits get 414 / 431 with a Matrix body instead of a dropped connection.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint

from tests.harness import TestServer

V3 = "/_matrix/client/v3"


@pytest_twisted.ensureDeferred
async def test_a_join_no_server_answers_is_404_without_addresses(server: TestServer) -> None:
    alice = await server.register("alice")
    # port 1 on loopback: nothing listens there, so nothing answers
    room_id = "!nowhere:127.0.0.1:1"
    resp = await alice.post(f"{V3}/join/{room_id}", {}, params={"via": "127.0.0.1:1"})
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND"), resp.body
    assert resp.body["error"] == "No known servers"
    joined = await alice.get(f"{V3}/joined_rooms")
    assert joined.body["joined_rooms"] == []
