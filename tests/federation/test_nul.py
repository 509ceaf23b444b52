"""NUL in what another server sends: refused where it would land in a column,
kept where it is free-form content.

PostgreSQL's text cannot hold NUL. A PDU with one in its type, state_key or
another field copied into a column used to answer "Internal error" on
PostgreSQL (and, in a run of messages persisted together, take the good
ones down with it, unanswered) while SQLite stored it. Now it is an invalid
PDU on both engines: its own error in the /send response, nothing stored,
the rest of the transaction processed. EDUs naming such IDs are dropped with
a log line, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import pytest_twisted

from homeserver.events.hashes import compute_event_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import sign_event
from homeserver.events.validation import ValidationError, validate_pdu
from tests.events.helpers import ALL_VERSIONS, rv
from tests.events.test_validation import _pdu
from tests.federation.harness import server_name
from tests.federation.test_edus import (
    REMOTE,
    REMOTE_BOB,
    ephemeral,
    sync,
    to_device_events,
    with_remote_member,
)
from tests.federation.test_rooms import _has_body, joined_pair, timeline_bodies, wait_for
from tests.harness import TestServer

# -- the format check, pure ------------------------------------------------------

NUL_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("type", {"type": "m.room.message\x00"}),
    ("state_key", {"type": "m.room.topic", "state_key": "a\x00b"}),
    ("membership", {"type": "m.room.member", "state_key": "@u:a.org",
                    "content": {"membership": "jo\x00in"}}),
    ("relation type", {"content": {"m.relates_to": {"rel_type": "m.th\x00read",
                                                    "event_id": "$x"}}}),
    ("relation target", {"content": {"m.relates_to": {"rel_type": "m.annotation",
                                                      "event_id": "$x\x00", "key": "k"}}}),
    ("annotation key", {"content": {"m.relates_to": {"rel_type": "m.annotation",
                                                     "event_id": "$x", "key": "\x00"}}}),
]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("case", NUL_FIELDS, ids=[c[0] for c in NUL_FIELDS])
def test_nul_in_a_field_kept_in_a_column_makes_the_pdu_invalid(
        version: str, case: tuple[str, dict[str, Any]]) -> None:
    _, overrides = case
    with pytest.raises(ValidationError, match="NUL"):
        validate_pdu(_pdu(version, **overrides), rv(version))


@pytest.mark.parametrize("version", [v for v in ALL_VERSIONS if int(v) >= 11])
def test_nul_in_the_target_of_a_v11_redaction_makes_it_invalid(version: str) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        validate_pdu(_pdu(version, type="m.room.redaction",
                          content={"redacts": "$x\x00"}), rv(version))
    with pytest.raises(ValidationError, match="NUL"):
        validate_pdu(_pdu(version, type="m.room.redaction", content={},
                          redacts="$x\x00"), rv(version))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_nul_in_free_form_content_is_valid(version: str) -> None:
    # kept as JSON, where it stays an escape: Synapse stores such events too
    validate_pdu(_pdu(version, content={"body": "a\x00b", "k\x00": {"x": ["\x00"]},
                                        "membership": "\x00"}), rv(version))


# -- over federation, both engines ------------------------------------------------


async def forge(a: TestServer, room_id: str, sender: str, event_type: str,
                content: dict[str, Any], *, state_key: str | None = None,
                prev: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """A PDU as ``a`` would send it, signed with its real key, but built
    without the format check (which refuses what this test needs to send)."""
    room = await a.hs.stores.rooms.get_room(room_id)
    assert room is not None
    version = KNOWN_ROOM_VERSIONS[room.room_version]
    assert version.event_ids_are_hashes
    ext = await a.hs.stores.rooms.get_forward_extremities(room.room_nid)
    state = await a.hs.stores.rooms.get_current_state_ids(room.room_nid)
    auth = [state[("m.room.power_levels", "")], state[("m.room.member", sender)]]
    if not version.room_id_from_create_event:
        auth.append(state[("m.room.create", "")])
    pdu: dict[str, Any] = {
        "type": event_type, "sender": sender, "content": content, "room_id": room_id,
        "depth": max(x.depth for x in ext) + 1 + (1 if prev else 0),
        "origin_server_ts": a.hs.now_ms(),
        "prev_events": prev or [x.event_id for x in ext], "auth_events": auth}
    if state_key is not None:
        pdu["state_key"] = state_key
    pdu = sign_event(pdu, version, a.hs.hostname, a.hs.signing_key)
    return pdu, compute_event_id(pdu, version)


async def send_txn(a: TestServer, b: TestServer, txn_id: str, pdus: list[dict[str, Any]],
                   edus: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """PUT /send from ``a`` to ``b``; a 5xx would raise here."""
    resp = await a.hs.federation_client.put_json(
        server_name(b), f"/_matrix/federation/v1/send/{txn_id}",
        {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": pdus,
         "edus": edus or []})
    return dict(resp["pdus"])


@pytest_twisted.ensureDeferred
async def test_pdus_with_nul_in_column_fields_are_refused_and_the_rest_lands(
        federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    sender = alice.user_id
    good, good_id = await forge(a, room_id, sender, "m.room.message",
                                {"msgtype": "m.text", "body": "before"})
    nul_body, nul_body_id = await forge(a, room_id, sender, "m.room.message",
                                        {"msgtype": "m.text", "body": "nul\x00inside"})
    bad = [
        await forge(a, room_id, sender, "m.room.message\x00", {"body": "t"}),
        await forge(a, room_id, sender, "m.room.topic", {"topic": "t"}, state_key="a\x00"),
        await forge(a, room_id, sender, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": good_id, "key": "\x00"}}),
        await forge(a, room_id, sender, "m.room.member", {"membership": "jo\x00in"},
                    state_key=sender),
    ]
    after, after_id = await forge(a, room_id, sender, "m.room.message",
                                  {"msgtype": "m.text", "body": "after"}, prev=[good_id])
    # NUL in EDUs of the same transaction: dropped in the background
    edus = [{"edu_type": "m.typing",
             "content": {"room_id": room_id + "\x00", "user_id": sender, "typing": True}},
            {"edu_type": "m.receipt", "content": {room_id + "\x00": {"m.read": {
                sender: {"event_ids": [good_id], "data": {"ts": 1}}}}}}]

    results = await send_txn(a, b, "nul1", [good, nul_body] + [p for p, _ in bad] + [after],
                             edus)

    assert results[good_id] == {} and results[after_id] == {} and results[nul_body_id] == {}
    for _, event_id in bad:
        assert "NUL" in results[event_id]["error"], results
        assert "Internal" not in results[event_id]["error"]
        assert await b.hs.stores.events.get_event(event_id) is None
    # free-form content keeps its NUL on both engines, as Synapse does
    bodies = await timeline_bodies(bob, room_id)
    assert {"before", "after", "nul\x00inside"} <= set(bodies)
    # the room goes on both ways
    resp = await bob.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
                         {"msgtype": "m.text", "body": "still talking"})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _has_body(alice, room_id, "still talking"))


@pytest_twisted.ensureDeferred
async def test_a_run_of_messages_with_a_nul_one_gets_a_result_for_each(
        federation: Any) -> None:
    # a chain of plain messages is persisted in one transaction: on
    # PostgreSQL the bad one used to fail it and the response named none
    a, b, alice, bob, room_id = await joined_pair(federation)
    first, first_id = await forge(a, room_id, alice.user_id, "m.room.message",
                                  {"msgtype": "m.text", "body": "first"})
    bad, bad_id = await forge(a, room_id, alice.user_id, "m.room.message\x00",
                              {"msgtype": "m.text", "body": "bad"}, prev=[first_id])
    last, last_id = await forge(a, room_id, alice.user_id, "m.room.message",
                                {"msgtype": "m.text", "body": "last"}, prev=[bad_id])

    results = await send_txn(a, b, "run1", [first, bad, last])

    assert set(results) == {first_id, bad_id, last_id}
    assert results[first_id] == {}
    assert "NUL" in results[bad_id]["error"]
    # its prev_event is nowhere to be had: refused, not half-stored
    assert results[last_id].get("error")
    assert await b.hs.stores.events.get_event(bad_id) is None
    assert "first" in await timeline_bodies(bob, room_id)


@pytest_twisted.ensureDeferred
async def test_fetched_events_with_nul_in_column_fields_are_dropped(federation: Any) -> None:
    # what /get_missing_events, /backfill, /state and joins return goes
    # through the same check as what is pushed to us
    a, b, alice, bob, room_id = await joined_pair(federation)
    good, good_id = await forge(a, room_id, alice.user_id, "m.room.message", {"body": "g"})
    bad, _ = await forge(a, room_id, alice.user_id, "m.room.topic", {"topic": "t"},
                         state_key="\x00")
    room = await b.hs.stores.rooms.get_room(room_id)
    assert room is not None
    checked = await b.hs.federation_event_handler.check_pdus(
        [bad, good], KNOWN_ROOM_VERSIONS[room.room_version], room_id)
    assert [e.event_id for e in checked] == [good_id]


# -- EDUs, both engines -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_edus_naming_ids_with_nul_are_dropped_with_a_log_line(
        server: TestServer, caplog: Any) -> None:
    alice, room_id = await with_remote_member(server)
    carol = await server.register("carol", device_id="PHONE")
    before, carol_before = await sync(alice), await sync(carol)
    handler = server.hs.edu_handler
    caplog.set_level(logging.INFO, logger="homeserver")

    await handler.on_edu(REMOTE, "m.typing",
                         {"room_id": room_id + "\x00", "user_id": REMOTE_BOB, "typing": True})
    await handler.on_edu(REMOTE, "m.receipt", {room_id + "\x00": {"m.read": {
        REMOTE_BOB: {"event_ids": ["$e"], "data": {"ts": 1}}}}})
    await handler.on_edu(REMOTE, "m.direct_to_device", {
        "sender": REMOTE_BOB, "type": "m.room_key_request", "message_id": "m1",
        "messages": {carol.user_id: {"PH\x00ONE": {"bad": True}, "PHONE": {"good": True}}}})
    await handler.on_edu(REMOTE, "m.device_list_update", {
        "user_id": REMOTE_BOB, "device_id": "D\x00", "stream_id": 3, "prev_id": [2]})
    await handler.on_edu(REMOTE, "m.signing_key_update", {
        "user_id": f"@bo\x00b:{REMOTE}", "master_key": {}})
    await handler.on_edu(REMOTE, "m.presence", {"push": [
        {"user_id": f"@bo\x00b:{REMOTE}", "presence": "online"}]})

    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
    dropped = [r.getMessage() for r in caplog.records if "dropping" in r.getMessage()]
    assert len(dropped) >= 6, dropped
    # the log lines show the NUL escaped, never raw
    assert all("\x00" not in line for line in dropped)
    body = await sync(alice, before["next_batch"])
    assert ephemeral(body, room_id, "m.typing") == []
    assert body.get("device_lists", {}).get("changed", []) == []
    # the well-formed part of the to-device EDU is delivered
    events = to_device_events(await sync(carol, carol_before["next_batch"]))
    assert [e["content"] for e in events] == [{"good": True}]
