"""Strings no column can hold: a Matrix error at the edge, never a 500, nothing stored.

A lone UTF-16 surrogate ("\\ud800" in JSON) has no UTF-8 form; PostgreSQL's
text cannot hold NUL ("\\u0000"). Each request below is sent once per string
field with the bad string in that field (and in an object key), on both
engines, before and without a login; each must be a 4xx with an errcode, and
afterwards the account, device, profile and room are as they were. Message
content is the exception for NUL: Synapse stores it, and so do we.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted

from tests.api.test_rooms import create_room, messages
from tests.harness import Client, TestServer

V3 = "/_matrix/client/v3"
ALICE = "@alice:test.local"
PASSWORD = "correct horse battery"
DEVICE = "ALICEDEV"

SURROGATE = "x\ud800"
NUL = "x\u0000y"


# free-form content kept as JSON, where a NUL is stored (as Synapse does): the
# places (see with_bad_string) under these prefixes are left out of the NUL walk
FREE_CONTENT = {
    "account_data": "",
    "sendToDevice": f"messages/{ALICE}/{DEVICE}/",
}


def requests(room_id: str, event_id: str) -> list[tuple[str, str, Any, bool]]:
    """(method, path, body, authenticated): every string in each body is a
    field a client controls."""
    room = quote(room_id)
    event = quote(event_id)
    device_keys = {"user_id": ALICE, "device_id": DEVICE,
                   "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                   "keys": {f"curve25519:{DEVICE}": "key", f"ed25519:{DEVICE}": "key"},
                   "signatures": {ALICE: {f"ed25519:{DEVICE}": "sig"}}}
    return [
        ("POST", f"{V3}/login", {"type": "m.login.password",
                                 "identifier": {"type": "m.id.user", "user": "alice"},
                                 "password": PASSWORD, "device_id": "NEWDEV",
                                 "initial_device_display_name": "phone"}, False),
        ("POST", f"{V3}/login", {"type": "m.login.password", "user": "alice",
                                 "password": PASSWORD}, False),
        ("POST", f"{V3}/register", {"username": "newbie", "password": "a long password",
                                    "device_id": "NEWDEV",
                                    "initial_device_display_name": "phone",
                                    "auth": {"type": "m.login.dummy", "session": "s"},
                                    "inhibit_login": False}, False),
        ("POST", f"{V3}/refresh", {"refresh_token": "token"}, False),
        ("POST", "/_synapse/admin/v1/register", {"nonce": "nonce", "username": "newbie",
                                                  "password": "a long password",
                                                  "mac": "00"}, False),
        ("POST", f"{V3}/keys/upload", {
            "device_keys": device_keys,
            "one_time_keys": {"signed_curve25519:AAAA": {
                "key": "k", "signatures": {ALICE: {f"ed25519:{DEVICE}": "sig"}}}}}, True),
        ("POST", f"{V3}/keys/query", {"device_keys": {ALICE: [DEVICE]}}, True),
        ("POST", f"{V3}/keys/claim", {"one_time_keys": {ALICE: {DEVICE: "signed_curve25519"}}},
         True),
        ("POST", f"{V3}/keys/signatures/upload", {ALICE: {DEVICE: device_keys}}, True),
        ("POST", f"{V3}/room_keys/version", {
            "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
            "auth_data": {"public_key": "pk"}}, True),
        ("PUT", f"{V3}/pushrules/global/content/myrule", {"pattern": "cake",
                                                           "actions": ["notify"]}, True),
        ("POST", f"{V3}/search", {"search_categories": {"room_events": {
            "search_term": "cake", "keys": ["content.body"]}}}, True),
        ("POST", f"{V3}/user_directory/search", {"search_term": "bob"}, True),
        ("POST", f"{V3}/rooms/{room}/read_markers", {"m.fully_read": event_id,
                                                      "m.read": event_id}, True),
        ("POST", f"{V3}/rooms/{room}/receipt/m.read/{event}", {"thread_id": "main"}, True),
        ("PUT", f"{V3}/directory/room/%23alias:test.local", {"room_id": room_id}, True),
        ("POST", f"{V3}/account/password", {
            "new_password": "another long password", "logout_devices": False,
            "auth": {"type": "m.login.password",
                     "identifier": {"type": "m.id.user", "user": "alice"},
                     "password": PASSWORD}}, True),
        ("PUT", f"{V3}/profile/{ALICE}/displayname", {"displayname": "Alice"}, True),
        ("PUT", f"{V3}/devices/{DEVICE}", {"display_name": "laptop"}, True),
        ("POST", f"{V3}/delete_devices", {"devices": [DEVICE]}, True),
        ("POST", f"{V3}/createRoom", {"name": "room", "topic": "topic",
                                      "room_alias_name": "newroom", "preset": "public_chat",
                                      "initial_state": [{"type": "m.room.topic",
                                                         "state_key": "",
                                                         "content": {"topic": "t"}}]},
         True),
        ("PUT", f"{V3}/user/{ALICE}/account_data/m.example", {"data": "value"}, True),
        ("PUT", f"{V3}/sendToDevice/m.example/txn1", {"messages": {ALICE: {DEVICE: {
            "data": "value"}}}}, True),
        ("POST", f"{V3}/user/{ALICE}/filter", {"room": {"rooms": [room_id],
                                                        "timeline": {"types": ["m.*"]}}},
         True),
        ("PUT", f"{V3}/presence/{ALICE}/status", {"presence": "online",
                                                  "status_msg": "here"}, True),
        ("POST", f"{V3}/pushers/set", {"pushkey": "key", "kind": "http",
                                       "app_id": "app", "app_display_name": "App",
                                       "device_display_name": "phone", "lang": "en",
                                       "data": {"url": "https://push.example/_matrix/push/v1/notify"}},
         True),
        ("POST", f"{V3}/rooms/{room}/report/{event}", {"reason": "spam"}, True),
        ("PUT", f"{V3}/rooms/{room}/redact/{event}/txn2", {"reason": "oops"}, True),
        ("POST", f"{V3}/rooms/{room}/invite", {"user_id": "@bob:test.local",
                                               "reason": "hi"}, True),
        ("PUT", f"{V3}/rooms/{room}/typing/{ALICE}", {"typing": True, "timeout": 1000}, True),
        ("POST", f"{V3}/join/{room}", {"reason": "hello"}, True),
        ("POST", f"{V3}/publicRooms", {"filter": {"generic_search_term": "room"}}, True),
    ]


def with_bad_string(body: Any, bad: str) -> Iterator[tuple[str, Any]]:
    """Copies of ``body`` with ``bad`` in one place each: every string value
    (appended to it), every object key, and an extra string field."""
    def places(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        if isinstance(value, dict):
            for key, sub in value.items():
                yield (*path, f"key:{key}")
                yield from places(sub, (*path, key))
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                yield from places(sub, (*path, i))
        elif isinstance(value, str):
            yield path

    for place in places(body, ()):
        variant = copy.deepcopy(body)
        parent: Any = variant
        for step in place[:-1]:
            parent = parent[step]
        last = place[-1]
        if isinstance(last, str) and last.startswith("key:"):
            parent[last[4:] + bad] = parent.pop(last[4:])
        else:
            parent[last] = parent[last] + bad
        yield "/".join(str(s) for s in place), variant
    if isinstance(body, dict):
        yield "extra", {**body, "extra": bad}


async def snapshot(server: TestServer, alice: Client, room_id: str) -> Any:
    """What a refused request must leave alone, as alice and others see it."""
    devices = (await alice.get(f"{V3}/devices")).body
    profile = (await server.client().get(f"{V3}/profile/{ALICE}")).body
    free = (await server.client().get(f"{V3}/register/available",
                                      params={"username": "newbie"})).body
    account_data = (await alice.get(f"{V3}/user/{ALICE}/account_data/m.example")).code
    rules = (await alice.get(f"{V3}/pushrules/global/content/myrule")).code
    backup = (await alice.get(f"{V3}/room_keys/version")).code
    keys = (await alice.post(f"{V3}/keys/query", {"device_keys": {ALICE: []}})).body
    timeline = [e["event_id"]
                for e in (await messages(alice, room_id, limit="50"))["chunk"]]
    pushers = (await alice.get(f"{V3}/pushers")).body
    login = await server.client().post(f"{V3}/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD}, token=None)
    if login.code == 200:  # the password still works; its session is not a change
        await server.client(login.body["access_token"]).post(f"{V3}/logout", {})
    return {"devices": sorted(d["device_id"] for d in devices["devices"]),
            "profile": profile, "free": free, "account_data": account_data,
            "rules": rules, "backup": backup, "keys": keys["device_keys"],
            "timeline": timeline, "pushers": pushers, "login": login.code}


@pytest.mark.parametrize("bad,errcodes", [
    (SURROGATE, {"M_NOT_JSON"}),
    (NUL, {"M_INVALID_PARAM"}),
], ids=["lone surrogate", "NUL"])
@pytest_twisted.ensureDeferred
async def test_unstorable_strings_in_bodies_are_refused_and_store_nothing(
        server: TestServer, bad: str, errcodes: set[str]) -> None:
    alice = await server.register("alice", PASSWORD, device_id=DEVICE)
    room_id = await create_room(alice, preset="public_chat")
    sent = await alice.put(f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t0",
                           {"msgtype": "m.text", "body": "cake"})
    event_id = sent.body["event_id"]
    before = await snapshot(server, alice, room_id)
    sent_requests = 0
    wrong: list[tuple[str, str, str, int, Any]] = []
    for method, path, body, authenticated in requests(room_id, event_id):
        client = alice if authenticated else server.client()
        free = next((prefix for name, prefix in FREE_CONTENT.items() if name in path), None)
        for where, variant in with_bad_string(body, bad):
            # a body that may hold NUL is checked field by field: any 4xx will do
            field_checks = bad == NUL and free is not None
            if field_checks and (where.startswith(free) or where == "extra"):
                continue
            resp = await client.request(method, path, variant)
            sent_requests += 1
            answer = resp.body if isinstance(resp.body, dict) else {}
            if not 400 <= resp.code < 500 or not isinstance(answer.get("error"), str) \
                    or not (answer.get("errcode") in errcodes or field_checks
                            and str(answer.get("errcode")).startswith("M_")):
                wrong.append((method, path, where, resp.code, resp.body))
    assert wrong == []
    assert sent_requests > 150
    assert await snapshot(server, alice, room_id) == before


@pytest.mark.parametrize("path", [
    "/_matrix/client/v3/profile/@al%00ice:test.local/displayname",
    "/_matrix/client/v3/rooms/!r%00:test.local/messages?dir=b",
    "/_matrix/client/v3/register/available?username=new%00bie",
    "/_matrix/client/v3/publicRooms?since=x%00",
    "/_matrix/client/v3/sync?since=s%00&timeout=0",
    "/_matrix/client/v3/devices/DEV%00",
    "/_matrix/client/v3/user/@alice:test.local/filter/1%00",
    "/_matrix/client/v3/rooms/!r%ED%A0%80:test.local/state",
    "/_matrix/client/v3/profile/@alice:test.local?access_token=tok%00en",
])
@pytest_twisted.ensureDeferred
async def test_nul_or_a_surrogate_in_the_path_or_query_is_400(
        server: TestServer, path: str) -> None:
    alice = await server.register("alice", PASSWORD, device_id=DEVICE)
    resp = await alice.get(path)
    assert resp.code == 400, resp.body
    assert resp.body["errcode"] == "M_INVALID_PARAM"


@pytest_twisted.ensureDeferred
async def test_a_nul_in_a_message_is_stored_and_read_back(server: TestServer) -> None:
    alice = await server.register("alice", PASSWORD, device_id=DEVICE)
    room_id = await create_room(alice, preset="public_chat")
    room = quote(room_id)
    content = {"msgtype": "m.text", "body": "before\u0000after cake", "k\u0000": "v"}
    resp = await alice.put(f"{V3}/rooms/{room}/send/m.room.message/t1", content)
    assert resp.code == 200, resp.body
    event_id = resp.body["event_id"]
    for state_type, state_content in (("m.room.name", {"name": "a\u0000b"}),
                                      ("m.room.topic", {"topic": "a\u0000b"}),
                                      ("m.room.member", {"membership": "join",
                                                         "displayname": "Al\u0000ice"})):
        key = ALICE if state_type == "m.room.member" else ""
        resp = await alice.put(f"{V3}/rooms/{room}/state/{state_type}/{key}", state_content)
        assert resp.code == 200, (state_type, resp.body)
    fetched = await alice.get(f"{V3}/rooms/{room}/event/{quote(event_id)}")
    assert fetched.code == 200, fetched.body
    assert fetched.body["content"] == content
    chunk = (await messages(alice, room_id, limit="10"))["chunk"]
    assert content in [e["content"] for e in chunk]
    found = await alice.post(f"{V3}/search", {"search_categories": {"room_events": {
        "search_term": "cake"}}})
    assert found.code == 200, found.body
    results = found.body["search_categories"]["room_events"]["results"]
    assert [r["result"]["event_id"] for r in results] == [event_id]
    name = await alice.get(f"{V3}/rooms/{room}/state/m.room.name/")
    assert name.body == {"name": "a\u0000b"}
    synced = await alice.get(f"{V3}/sync", params={"timeout": "0"})
    assert synced.code == 200, synced.body
    hierarchy = await alice.post(f"{V3}/publicRooms", {})
    assert hierarchy.code == 200, hierarchy.body


@pytest_twisted.ensureDeferred
async def test_emoji_written_as_escaped_surrogate_pairs_are_accepted(
        server: TestServer) -> None:
    alice = await server.register("alice", PASSWORD, device_id=DEVICE)
    name = "Alice \U0001F600"
    raw = json.dumps({"displayname": name}, ensure_ascii=True).encode()
    assert b"\\ud83d\\ude00" in raw
    resp = await alice.put(f"{V3}/profile/{ALICE}/displayname", raw=raw)
    assert resp.code == 200, resp.body
    got = await server.client().get(f"{V3}/profile/{ALICE}/displayname")
    assert got.body["displayname"] == name


@pytest_twisted.ensureDeferred
async def test_sending_an_empty_body_is_not_json_and_sends_nothing(
        server: TestServer) -> None:
    alice = await server.register("alice", PASSWORD, device_id=DEVICE)
    room_id = await create_room(alice)
    room = quote(room_id)
    before = [e["event_id"] for e in (await messages(alice, room_id, limit="50"))["chunk"]]
    for path in (f"{V3}/rooms/{room}/send/m.room.message/t1",
                 f"{V3}/rooms/{room}/state/m.room.topic/"):
        resp = await alice.put(path, raw=b"")
        assert resp.code == 400, resp.body
        assert resp.body["errcode"] == "M_NOT_JSON"
    after = [e["event_id"] for e in (await messages(alice, room_id, limit="50"))["chunk"]]
    assert after == before
