"""VoIP: TURN credentials, and call events passing between users untouched."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import pytest_twisted

from tests.api.test_rooms import V3, send, two_users_in_a_room
from tests.harness import TestServer
from tests.sync.test_sync import sync

TURN = f"{V3}/voip/turnServer"
URIS = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:443?transport=tcp"]


@pytest_twisted.ensureDeferred
async def test_no_turn_server_configured_is_an_empty_answer(server: TestServer) -> None:
    alice = await server.register("alice")

    resp = await alice.get(TURN)

    assert (resp.code, resp.body) == (200, {})


@pytest_twisted.ensureDeferred
async def test_credentials_follow_the_turn_rest_scheme(make_server: Any) -> None:
    srv = await make_server(turn_uris=URIS, turn_shared_secret="s3cret",
                            turn_user_lifetime="1h")
    alice = await srv.register("alice")

    before = int(time.time())
    resp = await alice.get(TURN)

    assert resp.code == 200, resp.body
    body = resp.body
    assert body["uris"] == URIS
    assert body["ttl"] == 3600
    expiry, user = body["username"].split(":", 1)
    assert user == alice.user_id
    assert before + 3600 - 5 <= int(expiry) <= int(time.time()) + 3600 + 5
    # what coturn's use-auth-secret checks
    expected = base64.b64encode(hmac.new(b"s3cret", body["username"].encode(),
                                         hashlib.sha1).digest()).decode()
    assert body["password"] == expected


@pytest_twisted.ensureDeferred
async def test_turn_needs_a_login(server: TestServer) -> None:
    resp = await server.client().get(TURN)
    assert (resp.code, resp.body["errcode"]) == (401, "M_MISSING_TOKEN")


@pytest_twisted.ensureDeferred
async def test_call_events_arrive_unchanged(server: TestServer) -> None:
    alice, bob, room_id = await two_users_in_a_room(server)
    start = await sync(bob)
    call = {"call_id": "c1", "party_id": "p1", "version": "1"}
    sent = [
        ("m.call.invite", {**call, "lifetime": 60000,
                           "offer": {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0"}}),
        ("m.call.candidates", {**call, "candidates": [
            {"candidate": "candidate:1 1 UDP 2130706431 10.0.0.1 5000 typ host",
             "sdpMid": "0", "sdpMLineIndex": 0}]}),
        ("m.call.answer", {**call, "answer": {"type": "answer", "sdp": "v=0\r\n"}}),
        ("m.call.hangup", {**call, "reason": "user_hangup"}),
    ]
    for i, (event_type, content) in enumerate(sent):
        sender = alice if event_type in ("m.call.invite", "m.call.hangup") else bob
        resp = await send(sender, room_id, content, f"call{i}", event_type=event_type)
        assert resp.code == 200, resp.body

    got: list[tuple[str, dict[str, Any]]] = []
    since = start["next_batch"]
    while len(got) < len(sent):
        body = await sync(bob, since=since)
        since = body["next_batch"]
        room = body["rooms"]["join"].get(room_id)
        if room is not None:
            got += [(e["type"], e["content"]) for e in room["timeline"]["events"]
                    if e["type"].startswith("m.call.")]
    assert got == sent
