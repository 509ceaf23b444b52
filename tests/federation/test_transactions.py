"""The parts of an inbound transaction that need no server: its limits, the
grouping of its PDUs by room, and the ID a refused PDU is answered under.
(Transactions end to end, over HTTP between two servers, are in
test_inbound.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import Codes, MatrixError
from homeserver.events.hashes import compute_event_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.federation.transactions import (
    MAX_EDUS,
    MAX_PDUS,
    event_id_of,
    parse_transaction,
    pdus_by_room,
)

ORIGIN = "remote.example"


def test_a_transaction_gives_its_pdus_and_edus() -> None:
    pdus, edus = parse_transaction(ORIGIN, {"origin": ORIGIN, "pdus": [{"a": 1}],
                                            "edus": [{"edu_type": "m.typing"}]})
    assert pdus == [{"a": 1}]
    assert edus == [{"edu_type": "m.typing"}]
    assert parse_transaction(ORIGIN, {}) == ([], [])


@pytest.mark.parametrize("body", [
    {"pdus": {}},
    {"edus": "x"},
    {"pdus": [{}] * (MAX_PDUS + 1)},
    {"edus": [{}] * (MAX_EDUS + 1)},
    {"origin": "elsewhere.example"},
])
def test_a_malformed_transaction_is_400(body: dict[str, Any]) -> None:
    with pytest.raises(MatrixError) as e:
        parse_transaction(ORIGIN, body)
    assert (e.value.status, e.value.errcode) == (400, Codes.BAD_JSON)


def test_pdus_are_grouped_by_room_in_order() -> None:
    a1, b1, a2 = {"room_id": "!a:x", "n": 1}, {"room_id": "!b:x"}, {"room_id": "!a:x", "n": 2}
    # no room ID, no result to give: left out
    grouped = pdus_by_room([a1, "junk", b1, {"room_id": 5}, a2])
    assert grouped == {"!a:x": [a1, a2], "!b:x": [b1]}


def test_a_refused_pdu_is_named_by_its_id() -> None:
    v1 = KNOWN_ROOM_VERSIONS["1"]
    assert event_id_of({"event_id": "$x:remote.example"}, v1) == "$x:remote.example"
    assert event_id_of({"event_id": 5}, v1) is None
    assert event_id_of("not a PDU", v1) is None
    v10 = KNOWN_ROOM_VERSIONS["10"]
    pdu = {"type": "m.room.message", "room_id": "!a:x", "sender": "@u:remote.example",
           "content": {"body": "hi"}, "depth": 3, "prev_events": [], "auth_events": [],
           "origin_server_ts": 1}
    assert event_id_of(pdu, v10) == compute_event_id(pdu, v10)
