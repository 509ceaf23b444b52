"""Invites for a third-party identifier: the signed block and m.room.third_party_invite."""

from __future__ import annotations

from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from homeserver.rooms.auth import AuthError
from tests.rooms.helpers import ALICE, BOB, CAROL, Room, versions

TOKEN = "abc123"
ID_SERVER_KEY = generate_signing_key("0")
OTHER_KEY = generate_signing_key("0")


def _public(key: Any) -> str:
    return encode_verify_key_base64(get_verify_key(key))


def _room(version: str, *, invite_sender: str = ALICE, as_list: bool = False) -> Room:
    room = Room(version)
    content: dict[str, Any] = {"display_name": "b...@example.com",
                               "key_validity_url": "https://id.test/isvalid"}
    if as_list:
        content["public_keys"] = [{"public_key": _public(OTHER_KEY)},
                                  {"public_key": _public(ID_SERVER_KEY)}]
    else:
        content["public_key"] = _public(ID_SERVER_KEY)
    room.send_state("m.room.third_party_invite", invite_sender, content, state_key=TOKEN)
    return room


def _signed(mxid: str = BOB, token: str = TOKEN, key: Any = ID_SERVER_KEY) -> dict[str, Any]:
    return sign_json({"mxid": mxid, "token": token}, "id.test", key)


def _invite(room: Room, signed: Any, sender: str = ALICE) -> Any:
    return room.member(sender, BOB, "invite",
                       third_party_invite={"display_name": "b...", "signed": signed})


@pytest.mark.parametrize("version", versions())
def test_validly_signed_third_party_invite_is_allowed(version: str) -> None:
    room = _room(version)
    room.check(_invite(room, _signed()))


def test_signature_may_match_any_of_public_keys() -> None:
    room = _room("10", as_list=True)
    room.check(_invite(room, _signed()))


@pytest.mark.parametrize("version", versions())
def test_signature_by_another_key_is_rejected(version: str) -> None:
    room = _room(version)
    with pytest.raises(AuthError, match="signature"):
        room.check(_invite(room, _signed(key=OTHER_KEY)))


def test_tampered_signed_block_is_rejected() -> None:
    room = _room("12")
    signed = _signed()
    signed["extra"] = "not signed"
    with pytest.raises(AuthError, match="signature"):
        room.check(_invite(room, signed))


def test_mxid_must_be_the_invitee() -> None:
    room = _room("9")
    with pytest.raises(AuthError, match="mxid"):
        room.check(_invite(room, _signed(mxid=CAROL)))


def test_token_must_name_a_third_party_invite_event() -> None:
    room = _room("9")
    with pytest.raises(AuthError, match="token"):
        room.check(_invite(room, _signed(token="other")))


def test_sender_must_be_who_sent_the_third_party_invite() -> None:
    room = _room("11", invite_sender=CAROL)
    with pytest.raises(AuthError, match="someone other"):
        room.check(_invite(room, _signed()))


@pytest.mark.parametrize("signed", [None, "x", {"mxid": BOB}, {"token": TOKEN}])
def test_missing_signed_fields_are_rejected(signed: Any) -> None:
    room = _room("6")
    with pytest.raises(AuthError):
        room.check(_invite(room, signed))


def test_banned_invitee_cannot_be_invited_by_third_party_invite() -> None:
    room = _room("12")
    room.set_member(BOB, "ban", sender=ALICE)
    with pytest.raises(AuthError, match="banned"):
        room.check(_invite(room, _signed()))


@pytest.mark.parametrize("version", versions())
def test_third_party_invite_event_needs_invite_level(version: str) -> None:
    users = {CAROL: 10} if version == "12" else {ALICE: 100, CAROL: 10}
    room = Room(version, power_levels={"users": users, "invite": 20})
    room.set_member(CAROL, "join")
    event = room.event("m.room.third_party_invite", CAROL, {"public_key": "x"}, state_key="t")
    with pytest.raises(AuthError, match="invite level"):
        room.check(event)
    room.check(room.event("m.room.third_party_invite", ALICE, {"public_key": "x"},
                          state_key="t"))
