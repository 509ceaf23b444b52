"""History visibility for other servers: which events a server reads in full
over federation and which it gets redacted (pure: no reactor, no database)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.visibility import (
    ServerVisibilityAtEvent,
    filter_events_for_server,
    needs_server_memberships,
    server_may_see,
)

ALICE = "@alice:a.test"
BOB = "@bob:b.test"
BERT = "@bert:b.test"
CAROL = "@carol:c.test"
RV = KNOWN_ROOM_VERSIONS["10"]
_ids = itertools.count(1)


def make(etype: str, sender: str, content: dict[str, Any],
         state_key: str | None = None) -> Event:
    n = next(_ids)
    js: dict[str, Any] = {"type": etype, "sender": sender, "content": content,
                          "room_id": "!r:a.test", "depth": n, "prev_events": [],
                          "auth_events": [], "origin_server_ts": n,
                          "hashes": {"sha256": "x"}, "signatures": {"a.test": {"ed25519:1": "s"}}}
    if state_key is not None:
        js["state_key"] = state_key
    return Event(f"$e{n}", RV, js)


def member(user: str, membership: str) -> Event:
    return make("m.room.member", user, {"membership": membership}, user)


def hv(value: str) -> Event:
    return make("m.room.history_visibility", ALICE, {"history_visibility": value}, "")


def at(visibility: str | None, *memberships: str) -> ServerVisibilityAtEvent:
    return ServerVisibilityAtEvent(visibility, tuple(memberships))


# (history visibility, memberships of the server's users at the event, in the room now)
CASES = [
    ("world_readable", (), False, True),
    ("world_readable", (), True, True),
    ("shared", (), True, True),
    # a server reading only because the room is world-readable now
    ("shared", (), False, False),
    ("shared", ("join",), False, True),
    ("joined", ("join",), True, True),
    ("joined", ("leave", "join"), True, True),
    ("joined", (), True, False),
    ("joined", ("invite",), True, False),
    ("joined", ("leave", "ban", "knock"), True, False),
    ("invited", ("invite",), True, True),
    ("invited", ("join",), True, True),
    ("invited", ("leave",), True, False),
    ("invited", (), True, False),
    # missing or unknown visibility means shared
    (None, (), True, True),
    ("sometimes", (), True, True),
    (None, (), False, False),
]


@pytest.mark.parametrize("visibility,memberships,in_room,full", CASES)
def test_server_sees_event_in_full(visibility: str | None, memberships: tuple[str, ...],
                                   in_room: bool, full: bool) -> None:
    assert server_may_see(at(visibility, *memberships), in_room=in_room) is full


@pytest.mark.parametrize("visibility,memberships,in_room,full", CASES)
def test_memberships_are_needed_only_where_they_can_change_the_answer(
        visibility: str | None, memberships: tuple[str, ...], in_room: bool,
        full: bool) -> None:
    if not needs_server_memberships(visibility, in_room=in_room):
        assert server_may_see(at(visibility), in_room=in_room) is full


def test_state_after_counts_only_the_servers_own_users() -> None:
    state = {("m.room.history_visibility", ""): hv("joined"),
             ("m.room.member", ALICE): member(ALICE, "join"),
             ("m.room.member", CAROL): member(CAROL, "join"),
             ("m.room.member", BOB): member(BOB, "leave"),
             ("m.room.member", BERT): member(BERT, "invite")}

    seen = ServerVisibilityAtEvent.from_state_after("b.test", state)

    assert seen.history_visibility == "joined"
    assert sorted(seen.memberships) == ["invite", "leave"]
    assert not server_may_see(seen, in_room=True)
    # a server named like the end of another's name is not that server
    assert ServerVisibilityAtEvent.from_state_after("test", state).memberships == ()


def test_unseen_events_go_out_redacted_in_place() -> None:
    before = make("m.room.message", ALICE, {"msgtype": "m.text", "body": "before bob"})
    join = member(BOB, "join")
    after = make("m.room.message", ALICE, {"msgtype": "m.text", "body": "after bob"})

    out = filter_events_for_server(
        [(before, at("joined")), (join, at("joined", "join")), (after, at("joined", "join"))],
        in_room=True)

    assert [e.event_id for e in out] == [before.event_id, join.event_id, after.event_id]
    assert out[0].content == {}
    # what the peer needs to check the event and link the DAG survives
    for key in ("hashes", "signatures", "prev_events", "auth_events", "depth", "sender"):
        assert out[0].json[key] == before.json[key]
    assert out[1] is join and out[2] is after
    assert out[2].content["body"] == "after bob"


def test_redacted_state_keeps_what_state_resolution_reads() -> None:
    change = hv("joined")
    kick = make("m.room.member", ALICE, {"membership": "leave", "reason": "spam"}, CAROL)

    out = filter_events_for_server([(change, at("joined")), (kick, at("joined"))],
                                   in_room=True)

    assert out[0].content == {"history_visibility": "joined"}
    assert out[1].content == {"membership": "leave"}
