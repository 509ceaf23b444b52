"""What another server gets when it asks for state, invites, redacts or
fetches events in the ways SyTest checks: the answers Synapse gives."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from signedjson.key import SigningKey

from homeserver.events.builder import build_event
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.federation.client import FederationError
from tests.federation.ca import TestCA
from tests.federation.harness import server_name, take_down
from tests.federation.test_request_auth import Peer
from tests.federation.test_rooms import (
    _has_body,
    _invited,
    joined_pair,
    q,
    send_text,
    sync_once,
    timeline_bodies,
    wait_for,
)
from tests.harness import TestServer
from tests.helpers import create_public_room

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


async def fails_with(call: Any) -> FederationError:
    with pytest.raises(FederationError) as info:
        await call
    return info.value


async def forge(origin: TestServer, resident: TestServer, room_id: str, sender: str,
                event_type: str, content: dict[str, Any], *, key: SigningKey | None = None,
                prev: list[str] | None = None, auth: list[str] | None = None,
                **extra: Any) -> dict[str, Any]:
    """An event of ``sender`` (a user of ``origin``) in the room, built on
    ``resident``'s view of it (or on ``prev`` and ``auth``) and signed by
    ``origin``."""
    room = await resident.hs.stores.rooms.get_room(room_id)
    assert room is not None
    rv = KNOWN_ROOM_VERSIONS[room.room_version]
    ext = await resident.hs.stores.rooms.get_forward_extremities(room.room_nid)
    state = await resident.hs.stores.rooms.get_current_state_ids(room.room_nid)
    if auth is None:
        auth = auth_ids(rv, state, sender)
    pdu, _ = build_event(room_version=rv, room_id=room_id, sender=sender,
                         event_type=event_type, content=content,
                         prev_event_ids=prev or [x.event_id for x in ext], auth_event_ids=auth,
                         depth=max(x.depth for x in ext) + 1, origin=origin.hs.hostname,
                         origin_server_ts=origin.hs.now_ms(),
                         signing_key=key or origin.hs.signing_key, **extra)
    return pdu


def auth_ids(rv: Any, state: dict[Any, str], sender: str) -> list[str]:
    """The auth events of a message of ``sender`` (v12: the create event
    is the room ID, never listed)."""
    ids = [state[("m.room.power_levels", "")], state[("m.room.member", sender)]]
    if not rv.room_id_from_create_event:
        ids.append(state[("m.room.create", "")])
    return ids


async def push(origin: TestServer, dest: TestServer, pdu: dict[str, Any], txn: str) -> Any:
    return await origin.hs.federation_client.put_json(
        server_name(dest), f"{V1}/send/{txn}",
        {"origin": origin.hs.hostname, "origin_server_ts": origin.hs.now_ms(), "pdus": [pdu]})


@pytest_twisted.ensureDeferred
async def test_state_needs_event_id_before_anything_else(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    client, dest = b.hs.federation_client, server_name(a)

    for endpoint in ("state", "state_ids"):
        # even for a room that does not exist
        e = await fails_with(client.get_json(dest, f"{V1}/{endpoint}/notaroom"))
        assert (e.code, e.errcode) == (400, "M_MISSING_PARAM")


@pytest_twisted.ensureDeferred
async def test_state_at_an_outlier_is_not_found(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    # b holds the room's create event only as part of the state it joined with
    room = await b.hs.stores.rooms.get_room(room_id)
    assert room is not None
    create_id = (await b.hs.stores.rooms.get_current_state_ids(
        room.room_nid, [("m.room.create", "")]))[("m.room.create", "")]
    info = await b.hs.stores.federation_events.get_event_info([create_id])
    assert info[create_id].outlier

    for endpoint in ("state", "state_ids"):
        e = await fails_with(a.hs.federation_client.get_json(
            server_name(b), f"{V1}/{endpoint}/{q(room_id)}", {"event_id": create_id}))
        assert (e.code, e.errcode) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_get_missing_events_with_an_empty_body_finds_nothing(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    body = await b.hs.federation_client.post_json(
        server_name(a), f"{V1}/get_missing_events/{q(room_id)}", {})
    assert body == {"events": []}


@pytest_twisted.ensureDeferred
async def test_a_server_banned_by_the_acl_cannot_invite_or_get_missing_events(
        federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    resp = await alice.put(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.server_acl/",
                           {"allow": ["*"], "deny": [server_name(b).rsplit(":", 1)[0]]})
    assert resp.code == 200, resp.body
    invite = {"type": "m.room.member", "room_id": room_id, "sender": bob.user_id,
              "state_key": f"@someone:{a.hs.hostname}", "content": {"membership": "invite"}}
    client, dest = b.hs.federation_client, server_name(a)

    refused = [
        await fails_with(client.put_json(dest, f"{V2}/invite/{q(room_id)}/$x", {
            "event": invite, "room_version": "10", "invite_room_state": []})),
        await fails_with(client.post_json(dest, f"{V1}/get_missing_events/{q(room_id)}", {})),
    ]
    assert [(e.code, e.errcode) for e in refused] == [(403, "M_FORBIDDEN")] * 2


@pytest_twisted.ensureDeferred
async def test_an_invite_with_a_float_in_a_v6_room_is_bad_json(federation: Any,
                                                               test_ca: TestCA) -> None:
    a = await federation()
    b = await federation()
    v6 = KNOWN_ROOM_VERSIONS["6"]
    room_id = f"!elsewhere:{b.hs.hostname}"
    invite, event = build_event(
        room_version=v6, room_id=room_id, sender=f"@bob:{b.hs.hostname}",
        event_type="m.room.member", state_key=f"@alice:{a.hs.hostname}",
        content={"membership": "invite"}, prev_event_ids=[],
        auth_event_ids=[], depth=3, origin=b.hs.hostname, origin_server_ts=b.hs.now_ms(),
        signing_key=b.hs.signing_key)
    event_id = event.event_id
    invite["content"]["bad_val"] = 1.1  # no float is canonical JSON

    # our own client sends canonical JSON only: a peer that does not
    resp = await Peer(a, test_ca).signed(
        b.server_name, b.hs.signing_key, "PUT", f"{V2}/invite/{q(room_id)}/{q(event_id)}",
        {"event": invite, "room_version": "6", "invite_room_state": []})

    assert (resp.code, resp.body["errcode"]) == (400, "M_BAD_JSON")


@pytest_twisted.ensureDeferred
async def test_an_invite_for_a_user_we_do_not_have_is_countersigned(federation: Any) -> None:
    a = await federation()
    b = await federation()
    v10 = KNOWN_ROOM_VERSIONS["10"]
    room_id = f"!elsewhere:{b.hs.hostname}"
    invite, event = build_event(
        room_version=v10, room_id=room_id, sender=f"@bob:{b.hs.hostname}",
        event_type="m.room.member", state_key=f"@nobody:{a.hs.hostname}",
        content={"membership": "invite"}, prev_event_ids=[], auth_event_ids=[], depth=3,
        origin=b.hs.hostname, origin_server_ts=b.hs.now_ms(), signing_key=b.hs.signing_key)
    event_id = event.event_id

    body = await b.hs.federation_client.put_json(
        server_name(a), f"{V2}/invite/{q(room_id)}/{q(event_id)}",
        {"event": invite, "room_version": "10", "invite_room_state": []})

    assert a.hs.hostname in body["event"]["signatures"]


@pytest_twisted.ensureDeferred
async def test_invites_fall_back_to_v1_for_a_server_without_v2(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_public_room(alice, room_version="2")
    client = a.hs.federation_client
    real_put = client.put_json
    paths: list[str] = []

    async def without_v2(destination: str, path: str, body: Any, **kw: Any) -> Any:
        paths.append(path)
        if path.startswith(f"{V2}/invite/"):
            raise FederationError(404, "M_UNRECOGNIZED", {"errcode": "M_UNRECOGNIZED"})
        return await real_put(destination, path, body, **kw)

    client.put_json = without_v2  # type: ignore[method-assign]
    resp = await alice.post(f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                            {"user_id": bob.user_id})

    assert resp.code == 200, resp.body
    assert [p.split("/")[3] for p in paths if "/invite/" in p] == ["v2", "v1"]
    # a room whose events v1 cannot carry is refused, not sent
    v10_room = await create_public_room(alice, room_version="10")
    resp = await alice.post(f"/_matrix/client/v3/rooms/{q(v10_room)}/invite",
                            {"user_id": bob.user_id})
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNSUPPORTED_ROOM_VERSION")


@pytest_twisted.ensureDeferred
async def test_a_redaction_of_an_event_in_another_room_is_ignored(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    other_room = await create_public_room(alice)
    resp = await bob.post(f"/_matrix/client/v3/join/{q(other_room)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body
    target = await send_text(alice, room_id, "keep me", "t1")
    redaction = await forge(b, a, other_room, bob.user_id, "m.room.redaction", {},
                            redacts=target)

    await push(b, a, redaction, "cross1")
    await send_text(bob, other_room, "sentinel", "s1")
    await wait_for(lambda: _has_body(alice, other_room, "sentinel"))

    held = await a.hs.stores.events.get_event(Event.from_pdu(redaction, room_rv(
        await a.hs.stores.rooms.get_room(other_room))).event_id)
    assert held is not None and held.rejected_reason == "redacts an event of another room"
    resp = await alice.get(f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(target)}")
    assert resp.body["content"]["body"] == "keep me"
    resp = await alice.get(f"/_matrix/client/v3/rooms/{q(other_room)}/messages",
                           params={"dir": "b", "limit": "20"})
    assert all(e["type"] != "m.room.redaction" for e in resp.body["chunk"])


@pytest_twisted.ensureDeferred
async def test_a_redaction_from_a_server_that_may_not_redact_is_not_applied(
        federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    target = await send_text(alice, room_id, "mine", "t1")
    await wait_for(lambda: _has_body(bob, room_id, "mine"))
    fake = await forge(b, a, room_id, bob.user_id, "m.room.redaction", {}, redacts=target)

    await push(b, a, fake, "fake1")
    await send_text(bob, room_id, "sentinel", "s1")
    await wait_for(lambda: _has_body(alice, room_id, "sentinel"))

    held = await a.hs.stores.events.get_event(Event.from_pdu(fake, room_rv(
        await a.hs.stores.rooms.get_room(room_id))).event_id)
    # accepted (the auth rules of v3+ let it through), only not applied
    assert held is not None and held.rejected_reason is None
    resp = await alice.get(f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(target)}")
    assert resp.body["content"]["body"] == "mine"
    assert "redacted_because" not in resp.body.get("unsigned", {})
    # alice's own redaction applies, and names itself
    resp = await alice.put(f"/_matrix/client/v3/rooms/{q(room_id)}/redact/{q(target)}/r1", {})
    assert resp.code == 200, resp.body
    redaction_id = resp.body["event_id"]
    resp = await alice.get(f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(target)}")
    assert resp.body["unsigned"]["redacted_by"] == redaction_id


@pytest_twisted.ensureDeferred
async def test_events_of_an_erased_user_are_served_redacted(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    # someone stays behind on a, so a is still in the room
    carol = await a.register("carol")
    resp = await carol.post(f"/_matrix/client/v3/join/{q(room_id)}", {})
    assert resp.code == 200, resp.body
    event_id = await send_text(alice, room_id, "forget me", "t1")
    fetch = (server_name(a), f"{V1}/event/{q(event_id)}")
    before = await b.hs.federation_client.get_json(*fetch)
    assert before["pdus"][0]["content"]["body"] == "forget me"

    resp = await alice.post("/_matrix/client/v3/account/deactivate", {
        "erase": True, "auth": {"type": "m.login.password", "password": "correct horse battery",
                                "identifier": {"type": "m.id.user", "user": alice.user_id}}})
    assert resp.code == 200, resp.body

    after = await b.hs.federation_client.get_json(*fetch)
    assert "body" not in after["pdus"][0]["content"]


@pytest_twisted.ensureDeferred
async def test_a_pushed_event_whose_history_is_withheld_is_refused(federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    room = await a.hs.stores.rooms.get_room(room_id)
    assert room is not None
    rv = KNOWN_ROOM_VERSIONS[room.room_version]
    unsent = await forge(b, a, room_id, bob.user_id, "m.room.message", {"body": "unsent"})
    missing = Event.from_pdu(unsent, rv)
    later = await forge(b, a, room_id, bob.user_id, "m.room.message", {"body": "later"})
    # point "later" at the event nobody will hand out, and sign it again
    later_pdu, later_event = build_event(
        room_version=rv, room_id=room_id, sender=bob.user_id, event_type="m.room.message",
        content={"body": "later"}, prev_event_ids=[missing.event_id],
        auth_event_ids=later["auth_events"], depth=later["depth"] + 1,
        origin=b.hs.hostname, origin_server_ts=b.hs.now_ms(), signing_key=b.hs.signing_key)

    resp = await push(b, a, later_pdu, "withheld1")

    assert "prev_events" in resp["pdus"][later_event.event_id]["error"]
    held = await a.hs.stores.federation_events.get_event_info([later_event.event_id])
    assert later_event.event_id not in held


@pytest_twisted.ensureDeferred
async def test_an_invite_can_be_rejected_when_the_inviting_server_is_gone(
        federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await create_public_room(alice, preset="private_chat")
    resp = await alice.post(f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                            {"user_id": bob.user_id})
    assert resp.code == 200, resp.body
    await wait_for(lambda: _invited(bob, room_id))
    since = (await sync_once(bob))["next_batch"]
    await take_down(a)

    resp = await bob.post(f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})

    assert resp.code == 200, resp.body
    body = await sync_once(bob, since)
    assert room_id not in body["rooms"]["invite"]
    [leave] = body["rooms"]["leave"][room_id]["timeline"]["events"][-1:]
    assert (leave["sender"], leave["content"]["membership"]) == (bob.user_id, "leave")


@pytest_twisted.ensureDeferred
async def test_an_event_on_soft_failed_events_leaves_no_dangling_extremity(
        federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    room = await a.hs.stores.rooms.get_room(room_id)
    assert room is not None
    state = await a.hs.stores.rooms.get_current_state_ids(room.room_nid)
    old_auth = auth_ids(room_rv(room), state, bob.user_id)
    [before] = [x.event_id for x in await a.hs.stores.rooms.get_forward_extremities(
        room.room_nid)]
    resp = await alice.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.power_levels/")
    levels = resp.body
    levels.setdefault("events", {})["test.sf"] = 50
    resp = await alice.put(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.power_levels/",
                           levels)
    assert resp.code == 200, resp.body
    pl_change = resp.body["event_id"]

    # bob's server goes on from before the change: M1 is fine, SF1 and SF2
    # (a type bob may no longer send) are soft-failed
    m1 = await forge(b, a, room_id, bob.user_id, "m.room.message", {"body": "M1"},
                     prev=[before], auth=old_auth)
    await push(b, a, m1, "sf-m1")
    sf1 = await forge(b, a, room_id, bob.user_id, "test.sf", {"body": "SF1"},
                      prev=[Event.from_pdu(m1, room_rv(room)).event_id], auth=old_auth)
    await push(b, a, sf1, "sf-sf1")
    sf2 = await forge(b, a, room_id, bob.user_id, "test.sf", {"body": "SF2"},
                      prev=[Event.from_pdu(sf1, room_rv(room)).event_id], auth=old_auth)
    await push(b, a, sf2, "sf-sf2")
    m2 = await forge(b, a, room_id, bob.user_id, "m.room.message", {"body": "M2"},
                     prev=[pl_change, Event.from_pdu(sf2, room_rv(room)).event_id])
    await push(b, a, m2, "sf-m2")

    extremities = [x.event_id for x in await a.hs.stores.rooms.get_forward_extremities(
        room.room_nid)]
    assert extremities == [Event.from_pdu(m2, room_rv(room)).event_id]


def room_rv(room: Any) -> Any:
    return KNOWN_ROOM_VERSIONS[room.room_version]


@pytest_twisted.ensureDeferred
async def test_an_unsigned_or_badly_signed_leave_is_forbidden_then_a_signed_one_taken(
        federation: Any) -> None:
    a, b, alice, bob, room_id = await joined_pair(federation)
    leave = await forge(b, a, room_id, bob.user_id, "m.room.member", {"membership": "leave"},
                        state_key=bob.user_id)
    event_id = Event.from_pdu(leave, room_rv(await a.hs.stores.rooms.get_room(room_id))
                              ).event_id
    path = f"{V2}/send_leave/{q(room_id)}/{q(event_id)}"
    unsigned = {k: v for k, v in leave.items() if k != "signatures"}
    forged = {**leave, "signatures": {b.hs.hostname: {
        next(iter(leave["signatures"][b.hs.hostname])): "a" * 86}}}
    unhashed = {k: v for k, v in forged.items() if k != "hashes"}
    client, dest = b.hs.federation_client, server_name(a)

    for bad in (unsigned, forged, unhashed):
        e = await fails_with(client.put_json(dest, path, bad))
        assert (e.code, e.errcode) == (403, "M_FORBIDDEN")
    assert await client.put_json(dest, path, leave) == {}


@pytest_twisted.ensureDeferred
async def test_a_float_pdu_in_a_v6_room_is_discarded_and_the_rest_kept(
        federation: Any, test_ca: TestCA) -> None:
    """The spec's rule for room version 6 (and Synapse's behaviour): over
    federation an event that is not canonical JSON is discarded, the rest of
    the transaction is processed."""
    a = await federation()
    b = await federation()
    alice = await a.register("alice")
    bob = await b.register("bob")
    resp = await alice.post("/_matrix/client/v3/createRoom",
                            {"preset": "public_chat", "room_version": "6"})
    room_id = resp.body["room_id"]
    resp = await bob.post(f"/_matrix/client/v3/join/{q(room_id)}",
                          params={"server_name": server_name(a)})
    assert resp.code == 200, resp.body

    room = await a.hs.stores.rooms.get_room(room_id)
    assert room is not None
    v6 = KNOWN_ROOM_VERSIONS["6"]
    state = await a.hs.stores.rooms.get_current_state_ids(room.room_nid)
    ext = await a.hs.stores.rooms.get_forward_extremities(room.room_nid)
    auth = [state[("m.room.create", "")], state[("m.room.power_levels", "")],
            state[("m.room.member", alice.user_id)]]
    good, good_event = build_event(
        room_version=v6, room_id=room_id, sender=alice.user_id,
        event_type="m.room.message", content={"msgtype": "m.text", "body": "Good event"},
        prev_event_ids=[x.event_id for x in ext], auth_event_ids=auth,
        depth=max(x.depth for x in ext) + 1, origin=a.hs.hostname,
        origin_server_ts=a.hs.now_ms(), signing_key=a.hs.signing_key)
    # no float is canonical JSON
    bad = {**good, "content": {"msgtype": "m.text", "body": "Bad event", "bad_val": 1.1},
           "origin_server_ts": good["origin_server_ts"] + 1}
    pdus = [good, bad]

    resp = await Peer(b, test_ca).signed(
        a.hs.hostname, a.hs.signing_key, "PUT", f"{V1}/send/floats1",
        {"origin": a.hs.hostname, "origin_server_ts": a.hs.now_ms(), "pdus": pdus})

    assert resp.code == 200, resp.body
    results = resp.body["pdus"]
    assert results[good_event.event_id] == {}
    errors = [r["error"] for r in results.values() if r.get("error")]
    assert len(errors) == 1 and "float" in errors[0], results
    await wait_for(lambda: _has_body(bob, room_id, "Good event"))
    assert "Bad event" not in await timeline_bodies(bob, room_id)
