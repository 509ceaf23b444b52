"""Bodies and identifiers a client gets wrong: a clear Matrix error, and nothing stored.

Unauthenticated JSON goes to POST /register, authenticated JSON to
PUT /profile/{userId}/displayname; after each refusal the test checks that
the user name is still free, or the display name unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted

from homeserver.http.parse import MAX_JSON_DEPTH
from tests.harness import Client, Response, TestServer

V3 = "/_matrix/client/v3"
REGISTER = f"{V3}/register"
ALICE = "@alice:test.local"
DISPLAYNAME = f"{V3}/profile/{ALICE}/displayname"


def registration(username: Any = "newbie", **extra: Any) -> dict[str, Any]:
    body = {"username": username, "password": "a long enough password",
            "auth": {"type": "m.login.dummy"}, "inhibit_login": True}
    body.update(extra)
    return body


async def post_raw(server: TestServer, body: bytes) -> Response:
    return await server.client().post(REGISTER, raw=body, token=None)


async def username_is_free(server: TestServer, username: str = "newbie") -> bool:
    resp = await server.client().get(f"{V3}/register/available",
                                     params={"username": username})
    if resp.code == 200:
        return bool(resp.body["available"])
    assert (resp.code, resp.body["errcode"]) == (400, "M_USER_IN_USE")
    return False


async def displayname(server: TestServer) -> Any:
    return (await server.client().get(DISPLAYNAME)).body.get("displayname")


def nested(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep: {"a": {"a": ... {} ...}}."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


BAD_BODIES = [
    # (what, body, status, errcodes)
    ("empty", b"", 400, {"M_NOT_JSON"}),
    ("not JSON", b"username=newbie&password=x", 400, {"M_NOT_JSON"}),
    ("truncated JSON", b'{"username": "newbie"', 400, {"M_NOT_JSON"}),
    ("invalid UTF-8", b'{"username": "new\xffbie", "password": "x"}', 400, {"M_NOT_JSON"}),
    ("NaN", b'{"username": "newbie", "x": NaN}', 400, {"M_NOT_JSON"}),
    ("Infinity", b'{"username": "newbie", "x": -Infinity}', 400, {"M_NOT_JSON"}),
    # valid JSON of the wrong shape: the spec's M_BAD_JSON (Synapse says M_NOT_JSON)
    ("top-level array", b'[{"username": "newbie"}]', 400, {"M_BAD_JSON"}),
    ("top-level string", b'"newbie"', 400, {"M_BAD_JSON"}),
    ("top-level null", b"null", 400, {"M_BAD_JSON"}),
    ("too deep", nested(MAX_JSON_DEPTH + 1), 400, {"M_BAD_JSON"}),
    ("far too deep for the parser", b"[" * 30_000 + b"]" * 30_000, 400, {"M_BAD_JSON"}),
    ("over 64 KiB", json.dumps(registration(padding="x" * 65_536)).encode(), 413,
     {"M_TOO_LARGE"}),
]


@pytest.mark.parametrize("what,body,status,errcodes", BAD_BODIES,
                         ids=[b[0] for b in BAD_BODIES])
@pytest_twisted.ensureDeferred
async def test_bad_register_body_is_refused_and_creates_nothing(
        server: TestServer, what: str, body: bytes, status: int, errcodes: set[str]) -> None:
    resp = await post_raw(server, body)
    assert resp.code == status, resp.body
    assert resp.body["errcode"] in errcodes
    assert isinstance(resp.body["error"], str)
    assert await username_is_free(server)


@pytest.mark.parametrize("what,body,status,errcodes", BAD_BODIES,
                         ids=[b[0] for b in BAD_BODIES])
@pytest_twisted.ensureDeferred
async def test_bad_profile_body_is_refused_and_changes_nothing(
        server: TestServer, what: str, body: bytes, status: int, errcodes: set[str]) -> None:
    alice = await server.register("alice")
    before = await displayname(server)
    resp = await alice.put(DISPLAYNAME, raw=body)
    assert resp.code == status, resp.body
    assert resp.body["errcode"] in errcodes
    assert await displayname(server) == before


@pytest_twisted.ensureDeferred
async def test_json_just_within_the_limits_is_accepted(server: TestServer) -> None:
    alice = await server.register("alice")
    name = "x" * 200
    body = {"displayname": name, "padding": "p" * (64 * 1024 - 400)}
    raw = json.dumps(body).encode()
    assert len(raw) < 64 * 1024
    resp = await alice.put(DISPLAYNAME, raw=raw)
    assert resp.code == 200, resp.body
    assert await displayname(server) == name


@pytest_twisted.ensureDeferred
async def test_nesting_at_the_depth_limit_is_not_a_depth_error(server: TestServer) -> None:
    alice = await server.register("alice")
    raw = b'{"displayname": "Deep", "x": ' + nested(MAX_JSON_DEPTH - 1) + b"}"
    resp = await alice.put(DISPLAYNAME, raw=raw)
    assert resp.code == 200, resp.body


@pytest_twisted.ensureDeferred
async def test_body_far_over_every_limit_is_413_and_the_server_carries_on(
        make_server: Any) -> None:
    server = await make_server(max_upload_size="256K")
    resp = await post_raw(server, b'{"username": "' + b"x" * (1024 * 1024) + b'"}')
    assert (resp.code, resp.body["errcode"]) == (413, "M_TOO_LARGE")
    assert await username_is_free(server)
    assert (await server.client().get("/_matrix/client/versions")).code == 200


@pytest.mark.parametrize("field,value", [
    ("username", 5),
    ("username", ["newbie"]),
    ("username", {"localpart": "newbie"}),
    ("password", 12345678),
    ("password", None),
    ("device_id", 7),
    ("initial_device_display_name", True),
    ("inhibit_login", "yes"),
    ("auth", "m.login.dummy"),
])
@pytest_twisted.ensureDeferred
async def test_register_field_of_the_wrong_type_is_400(server: TestServer, field: str,
                                                       value: Any) -> None:
    body = registration(**{field: value}) if field != "username" else registration(value)
    resp = await server.client().post(REGISTER, body, token=None)
    assert resp.code == 400, resp.body
    assert resp.body["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM", "M_MISSING_PARAM")
    assert await username_is_free(server)


@pytest.mark.parametrize("username", ["New Bie", "newbie!", "@newbie:test.local", "",
                                      "x" * 300, "newbie\u00e9", "newbie\x00"])
@pytest_twisted.ensureDeferred
async def test_register_with_an_invalid_user_name_is_refused(server: TestServer,
                                                             username: str) -> None:
    resp = await server.client().post(REGISTER, registration(username), token=None)
    assert resp.code == 400, resp.body
    assert resp.body["errcode"] in ("M_INVALID_USERNAME", "M_INVALID_PARAM", "M_BAD_JSON")
    available = await server.client().get(f"{V3}/register/available",
                                           params={"username": username})
    assert available.code == 400


@pytest.mark.parametrize("user_id", ["alice", "@alice", "@:test.local", "alice:test.local",
                                     "@alice:bad host", "@al ice:test.local"])
@pytest_twisted.ensureDeferred
async def test_malformed_user_ids_in_paths_are_400(server: TestServer, user_id: str) -> None:
    alice = await server.register("alice")
    for client, method in ((server.client(), "GET"), (alice, "PUT")):
        resp = await client.request(method, f"{V3}/profile/{user_id}/displayname",
                                     {"displayname": "x"} if method == "PUT" else None)
        assert resp.code == 400, (method, resp.body)
        assert resp.body["errcode"] == "M_INVALID_PARAM"
    assert await displayname(server) == "alice"


@pytest_twisted.ensureDeferred
async def test_wrong_type_in_an_authenticated_body_changes_nothing(server: TestServer) -> None:
    alice: Client = await server.register("alice")
    for value in (5, None, ["Al"], {"name": "Al"}):
        resp = await alice.put(DISPLAYNAME, {"displayname": value})
        assert resp.code == 400, (value, resp.body)
        assert resp.body["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM")
    assert await displayname(server) == "alice"
