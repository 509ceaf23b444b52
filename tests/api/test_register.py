"""Registration: the UIA dance, registration tokens, user-ID rules, nothing half-stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.harness import Client, Response, TestServer

REGISTER = "/_matrix/client/v3/register"
AVAILABLE = "/_matrix/client/v3/register/available"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"
LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"
PASSWORD = "correct horse battery"


async def start_registration(client: Client, body: dict[str, Any]) -> str:
    """The first request of the dance: answered 401 with the flows and a session."""
    resp = await client.post(REGISTER, body)
    assert resp.code == 401, resp.body
    return str(resp.body["session"])


async def register_with_dummy(client: Client, username: str | None,
                              password: str = PASSWORD, **extra: Any) -> Response:
    body: dict[str, Any] = {"password": password, **extra}
    if username is not None:
        body["username"] = username
    session = await start_registration(client, body)
    return await client.post(REGISTER, {**body, "auth": {"type": "m.login.dummy",
                                                         "session": session}})


async def can_log_in(server: TestServer, user: str, password: str = PASSWORD) -> bool:
    resp = await server.client().post(LOGIN, {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
        "password": password})
    return resp.code == 200


async def is_available(server: TestServer, username: str) -> bool:
    resp = await server.client().get(AVAILABLE, params={"username": username})
    return resp.code == 200 and resp.body == {"available": True}


# --- the dummy flow -------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_first_request_is_answered_with_dummy_flow_and_session(server: TestServer) -> None:
    resp = await server.client().post(REGISTER, {"username": "alice", "password": PASSWORD})
    assert resp.code == 401
    assert resp.body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert resp.body["params"] == {}
    assert resp.body["completed"] == []
    assert isinstance(resp.body["session"], str) and resp.body["session"]
    assert "errcode" not in resp.body
    assert await is_available(server, "alice")


@pytest_twisted.ensureDeferred
async def test_completing_dummy_stage_registers_and_logs_in(server: TestServer) -> None:
    resp = await register_with_dummy(server.client(), "alice")
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@alice:test.local"
    assert resp.body["home_server"] == "test.local"
    assert resp.body["device_id"]
    assert "refresh_token" not in resp.body and "expires_in_ms" not in resp.body
    whoami = await server.client(resp.body["access_token"]).get(WHOAMI)
    assert whoami.code == 200
    assert whoami.body == {"user_id": "@alice:test.local", "device_id": resp.body["device_id"],
                           "is_guest": False}
    assert await can_log_in(server, "alice")


@pytest_twisted.ensureDeferred
async def test_flows_probe_with_empty_body_then_full_request_registers(
        server: TestServer) -> None:
    client = server.client()
    session = await start_registration(client, {})
    resp = await client.post(REGISTER, {"username": "alice", "password": PASSWORD,
                                        "auth": {"type": "m.login.dummy", "session": session}})
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@alice:test.local"


@pytest_twisted.ensureDeferred
async def test_parameters_of_first_request_are_kept_for_the_session(server: TestServer) -> None:
    client = server.client()
    session = await start_registration(client, {"username": "alice", "password": PASSWORD})
    # The follow-up carries only auth; the first request's name and password count.
    resp = await client.post(REGISTER, {"auth": {"type": "m.login.dummy", "session": session}})
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@alice:test.local"
    assert await can_log_in(server, "alice")


@pytest_twisted.ensureDeferred
async def test_follow_up_cannot_change_the_username(server: TestServer) -> None:
    client = server.client()
    session = await start_registration(client, {"username": "alice", "password": PASSWORD})
    resp = await client.post(REGISTER, {"username": "mallory", "password": PASSWORD,
                                        "auth": {"type": "m.login.dummy", "session": session}})
    assert resp.code == 200
    assert resp.body["user_id"] == "@alice:test.local"
    assert await is_available(server, "mallory")


@pytest_twisted.ensureDeferred
async def test_retried_registration_gets_the_same_account_logged_in_again(
        server: TestServer) -> None:
    client = server.client()
    session = await start_registration(client, {"username": "alice", "password": PASSWORD})
    auth = {"type": "m.login.dummy", "session": session}
    first = await client.post(REGISTER, {"username": "alice", "password": PASSWORD,
                                         "auth": auth})
    assert first.code == 200, first.body
    again = await client.post(REGISTER, {"username": "alice", "password": PASSWORD,
                                         "auth": auth})
    assert again.code == 200, again.body
    assert again.body["user_id"] == first.body["user_id"] == "@alice:test.local"
    assert again.body["access_token"] != first.body["access_token"]
    resp = await server.client(again.body["access_token"]).get(WHOAMI)
    assert resp.body["user_id"] == "@alice:test.local"


@pytest_twisted.ensureDeferred
async def test_retried_registration_without_username_gets_the_same_number(
        server: TestServer) -> None:
    client = server.client()
    session = await start_registration(client, {"password": PASSWORD})
    auth = {"type": "m.login.dummy", "session": session}
    first = await client.post(REGISTER, {"password": PASSWORD, "auth": auth})
    assert first.code == 200, first.body
    again = await client.post(REGISTER, {"password": PASSWORD, "auth": auth})
    assert again.code == 200, again.body
    assert again.body["user_id"] == first.body["user_id"]


@pytest_twisted.ensureDeferred
async def test_spent_session_cannot_create_a_second_account(server: TestServer) -> None:
    client = server.client()
    session = await start_registration(client, {"username": "alice", "password": PASSWORD})
    auth = {"type": "m.login.dummy", "session": session}
    assert (await client.post(REGISTER, {"auth": auth})).code == 200
    again = await client.post(REGISTER, {"username": "bob", "password": PASSWORD, "auth": auth})
    assert again.body.get("user_id") == "@alice:test.local", again.body
    assert await is_available(server, "bob")


@pytest_twisted.ensureDeferred
async def test_unknown_session_is_refused(server: TestServer) -> None:
    resp = await server.client().post(REGISTER, {
        "username": "alice", "password": PASSWORD,
        "auth": {"type": "m.login.dummy", "session": "no-such-session"}})
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNKNOWN")
    assert await is_available(server, "alice")


@pytest_twisted.ensureDeferred
async def test_auth_type_not_offered_is_refused(server: TestServer) -> None:
    client = server.client()
    session = await start_registration(client, {"username": "alice", "password": PASSWORD})
    resp = await client.post(REGISTER, {"auth": {"type": "m.login.password", "session": session,
                                                  "password": "x"}})
    assert resp.code == 400
    assert await is_available(server, "alice")


@pytest_twisted.ensureDeferred
async def test_missing_password_is_refused_after_auth_and_creates_nothing(
        server: TestServer) -> None:
    resp = await register_with_dummy(server.client(), "alice", password=None)  # type: ignore
    assert (resp.code, resp.body["errcode"]) == (400, "M_MISSING_PARAM")
    assert await is_available(server, "alice")


@pytest_twisted.ensureDeferred
async def test_weak_password_is_refused_before_auth(make_server: Any) -> None:
    server = await make_server(password_config={"policy": {"enabled": True,
                                                            "minimum_length": 12}})
    resp = await server.client().post(REGISTER, {"username": "alice", "password": "short"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_WEAK_PASSWORD")
    assert await is_available(server, "alice")


@pytest_twisted.ensureDeferred
async def test_registration_needs_a_json_body(server: TestServer) -> None:
    resp = await server.client().post(REGISTER, raw=b"not json")
    assert (resp.code, resp.body["errcode"]) == (400, "M_NOT_JSON")


# --- options ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_inhibit_login_registers_without_a_session(server: TestServer) -> None:
    resp = await register_with_dummy(server.client(), "alice", inhibit_login=True)
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@alice:test.local"
    assert "access_token" not in resp.body and "device_id" not in resp.body
    assert await server.hs.stores.devices.get_devices("@alice:test.local") == []
    assert await can_log_in(server, "alice")


@pytest_twisted.ensureDeferred
async def test_device_id_and_display_name_are_used(server: TestServer) -> None:
    resp = await register_with_dummy(server.client(), "alice", device_id="MYPHONE",
                                     initial_device_display_name="Alice's phone")
    assert resp.code == 200, resp.body
    assert resp.body["device_id"] == "MYPHONE"
    device = await server.hs.stores.devices.get_device("@alice:test.local", "MYPHONE")
    assert device is not None and device.display_name == "Alice's phone"


@pytest_twisted.ensureDeferred
async def test_refresh_token_requested_at_registration(server: TestServer) -> None:
    resp = await register_with_dummy(server.client(), "alice", refresh_token=True)
    assert resp.code == 200, resp.body
    assert resp.body["refresh_token"]
    assert resp.body["expires_in_ms"] == 300_000


@pytest_twisted.ensureDeferred
async def test_registration_without_username_gets_the_next_number(server: TestServer) -> None:
    first = await register_with_dummy(server.client(), None)
    second = await register_with_dummy(server.client(), None)
    assert (first.code, second.code) == (200, 200)
    assert first.body["user_id"] == "@1:test.local"
    assert second.body["user_id"] == "@2:test.local"


@pytest_twisted.ensureDeferred
async def test_guest_registration_is_refused(server: TestServer) -> None:
    resp = await server.client().post(REGISTER, {}, params={"kind": "guest"})
    assert (resp.code, resp.body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


# --- who may register ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_registration_disabled_is_forbidden(make_server: Any) -> None:
    server = await make_server(enable_registration=False)
    resp = await server.client().post(REGISTER, {"username": "alice", "password": PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
    assert resp.body["error"] == "Registration has been disabled"
    available = await server.client().get(AVAILABLE, params={"username": "alice"})
    assert (available.code, available.body["errcode"]) == (403, "M_FORBIDDEN")
    assert not await can_log_in(server, "alice")
    assert await server.hs.stores.users.count_users() == 0


@pytest_twisted.ensureDeferred
async def test_registration_is_rate_limited_per_address(make_server: Any) -> None:
    clock = Clock()
    server = await make_server(clock=clock,
                               rc_registration={"per_second": 0.1, "burst_count": 1})
    assert (await register_with_dummy(server.client(), "alice")).code == 200
    resp = await server.client().post(REGISTER, {"username": "bob", "password": PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert resp.body["retry_after_ms"] > 0
    assert await is_available(server, "bob")
    clock.advance(11)
    assert (await register_with_dummy(server.client(), "bob")).code == 200


# --- user IDs -------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_invalid_usernames_are_refused_before_auth(server: TestServer) -> None:
    for username in ["al ice", "al:ice", "élise", "", "_bridge", "12345", "a" * 250]:
        resp = await server.client().post(REGISTER, {"username": username,
                                                     "password": PASSWORD})
        assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_USERNAME"), username
        assert "session" not in resp.body
    assert await server.hs.stores.users.count_users() == 0


@pytest_twisted.ensureDeferred
async def test_longest_user_id_that_fits_is_accepted(server: TestServer) -> None:
    # "@" + localpart + ":test.local" is exactly 255 characters
    localpart = "a" * (255 - len("@:test.local"))
    resp = await register_with_dummy(server.client(), localpart)
    assert resp.code == 200, resp.body
    assert len(resp.body["user_id"]) == 255
    too_long = await server.client().post(REGISTER, {"username": localpart + "b",
                                                     "password": PASSWORD})
    assert too_long.body["errcode"] == "M_INVALID_USERNAME"


@pytest_twisted.ensureDeferred
async def test_uppercase_username_is_registered_lowercased(server: TestServer) -> None:
    # As Synapse: the name is mapped to lower case (logins ignore case anyway).
    resp = await register_with_dummy(server.client(), "Alice")
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@alice:test.local"
    assert await can_log_in(server, "ALICE")


@pytest_twisted.ensureDeferred
async def test_available_refuses_names_outside_the_grammar(server: TestServer) -> None:
    for username in ["Alice", "al ice", "_bridge", "a" * 250]:
        resp = await server.client().get(AVAILABLE, params={"username": username})
        assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_USERNAME"), username


@pytest_twisted.ensureDeferred
async def test_taken_username_is_refused_before_auth(server: TestServer) -> None:
    await server.register("alice")
    resp = await server.client().post(REGISTER, {"username": "alice", "password": PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (400, "M_USER_IN_USE")
    assert "session" not in resp.body
    available = await server.client().get(AVAILABLE, params={"username": "alice"})
    assert (available.code, available.body["errcode"]) == (400, "M_USER_IN_USE")
    assert not await can_log_in(server, "alice", "another password")


@pytest_twisted.ensureDeferred
async def test_username_taken_ignoring_case_is_in_use(server: TestServer) -> None:
    # An account imported with a mixed-case ID still owns the lower-case name.
    from homeserver.storage.users import UserStore

    await server.hs.db.run_interaction("test", UserStore.create_user_txn, "@Carol:test.local",
                                       None, 0)
    resp = await server.client().post(REGISTER, {"username": "carol", "password": PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (400, "M_USER_IN_USE")
    upper = await server.client().post(REGISTER, {"username": "CAROL", "password": PASSWORD})
    assert upper.body["errcode"] == "M_USER_IN_USE"
    available = await server.client().get(AVAILABLE, params={"username": "carol"})
    assert available.body["errcode"] == "M_USER_IN_USE"


@pytest_twisted.ensureDeferred
async def test_name_taken_during_the_dance_is_refused_at_the_end(server: TestServer) -> None:
    client = server.client()
    session = await start_registration(client, {"username": "alice", "password": PASSWORD})
    await server.register("alice", "someone else's password")
    resp = await client.post(REGISTER, {"auth": {"type": "m.login.dummy", "session": session}})
    assert (resp.code, resp.body["errcode"]) == (400, "M_USER_IN_USE")
    assert not await can_log_in(server, "alice")


# --- registration tokens ------------------------------------------------------------------

async def token_server(make_server: Any, clock: Clock | None = None) -> TestServer:
    server: TestServer = await make_server(clock=clock, registration_requires_token=True)
    return server


async def register_with_token(client: Client, username: str, token: str) -> Response:
    body = {"username": username, "password": PASSWORD}
    session = await start_registration(client, body)
    return await client.post(REGISTER, {**body, "auth": {
        "type": "m.login.registration_token", "token": token, "session": session}})


@pytest_twisted.ensureDeferred
async def test_token_flow_is_offered_when_tokens_are_required(make_server: Any) -> None:
    server = await token_server(make_server)
    resp = await server.client().post(REGISTER, {"username": "alice", "password": PASSWORD})
    assert resp.code == 401
    assert resp.body["flows"] == [{"stages": ["m.login.registration_token"]}]
    # dummy is not a way round the token
    dummy = await server.client().post(REGISTER, {
        "username": "alice", "password": PASSWORD,
        "auth": {"type": "m.login.dummy", "session": resp.body["session"]}})
    assert dummy.code == 400
    assert await is_available(server, "alice")


@pytest_twisted.ensureDeferred
async def test_valid_token_registers_and_its_use_is_counted(make_server: Any) -> None:
    server = await token_server(make_server)
    await server.hs.stores.registration_tokens.create_token("abcd-1234", uses_allowed=2)
    resp = await register_with_token(server.client(), "alice", "abcd-1234")
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@alice:test.local"
    token = await server.hs.stores.registration_tokens.get_token("abcd-1234")
    assert token is not None and (token.pending, token.completed) == (0, 1)
    validity = await server.client().get(VALIDITY, params={"token": "abcd-1234"})
    assert validity.body == {"valid": True}


@pytest_twisted.ensureDeferred
async def test_exhausted_token_is_refused(make_server: Any) -> None:
    server = await token_server(make_server)
    await server.hs.stores.registration_tokens.create_token("once", uses_allowed=1)
    assert (await register_with_token(server.client(), "alice", "once")).code == 200
    validity = await server.client().get(VALIDITY, params={"token": "once"})
    assert validity.body == {"valid": False}
    resp = await register_with_token(server.client(), "bob", "once")
    assert resp.code == 401
    assert resp.body["errcode"] == "M_UNAUTHORIZED"
    assert resp.body["completed"] == []
    assert resp.body["flows"] == [{"stages": ["m.login.registration_token"]}]
    assert await is_available(server, "bob")


@pytest_twisted.ensureDeferred
async def test_unknown_or_malformed_token_is_refused(make_server: Any) -> None:
    server = await token_server(make_server)
    for token in ["nope", "has space", "x" * 65]:
        resp = await register_with_token(server.client(), "alice", token)
        assert (resp.code, resp.body["errcode"]) == (401, "M_UNAUTHORIZED"), token
        validity = await server.client().get(VALIDITY, params={"token": token})
        assert validity.body == {"valid": False}
    assert await is_available(server, "alice")


@pytest_twisted.ensureDeferred
async def test_expired_token_is_refused(make_server: Any) -> None:
    clock = Clock()
    clock.advance(1000)
    server = await token_server(make_server, clock)
    await server.hs.stores.registration_tokens.create_token("soon", expiry_time=2_000_000)
    assert (await server.client().get(VALIDITY, params={"token": "soon"})).body["valid"]
    clock.advance(2000)
    assert (await server.client().get(VALIDITY, params={"token": "soon"})).body == {
        "valid": False}
    resp = await register_with_token(server.client(), "alice", "soon")
    assert resp.body["errcode"] == "M_UNAUTHORIZED"


@pytest_twisted.ensureDeferred
async def test_last_use_is_held_by_an_unfinished_registration_until_it_expires(
        make_server: Any) -> None:
    clock = Clock()
    server = await token_server(make_server, clock)
    await server.hs.stores.registration_tokens.create_token("last", uses_allowed=1)
    # Alice passes the token stage but never sends a password.
    alice = server.client()
    session = await start_registration(alice, {"username": "alice"})
    held = await alice.post(REGISTER, {"auth": {"type": "m.login.registration_token",
                                                "token": "last", "session": session}})
    assert (held.code, held.body["errcode"]) == (400, "M_MISSING_PARAM")
    assert (await server.client().get(VALIDITY, params={"token": "last"})).body == {
        "valid": False}
    assert (await register_with_token(server.client(), "bob", "last")).code == 401
    # Her session expires; the use comes back.
    clock.advance(16 * 60)
    resp = await register_with_token(server.client(), "bob", "last")
    assert resp.code == 200, resp.body
    expired = await alice.post(REGISTER, {"password": PASSWORD, "auth": {
        "type": "m.login.registration_token", "token": "last", "session": session}})
    assert (expired.code, expired.body["errcode"]) == (400, "M_UNKNOWN")
    assert await is_available(server, "alice")


@pytest_twisted.ensureDeferred
async def test_token_stage_resumed_with_password_completes(make_server: Any) -> None:
    server = await token_server(make_server)
    await server.hs.stores.registration_tokens.create_token("tok")
    client = server.client()
    session = await start_registration(client, {"username": "alice"})
    auth = {"type": "m.login.registration_token", "token": "tok", "session": session}
    assert (await client.post(REGISTER, {"auth": auth})).body["errcode"] == "M_MISSING_PARAM"
    resp = await client.post(REGISTER, {"password": PASSWORD, "auth": auth})
    assert resp.code == 200, resp.body
    token = await server.hs.stores.registration_tokens.get_token("tok")
    assert token is not None and (token.pending, token.completed) == (0, 1)


@pytest_twisted.ensureDeferred
async def test_validity_check_is_forbidden_when_tokens_are_not_required(
        server: TestServer) -> None:
    resp = await server.client().get(VALIDITY, params={"token": "abc"})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_validity_check_is_rate_limited(make_server: Any) -> None:
    server = await token_server(make_server, Clock())
    codes = [(await server.client().get(VALIDITY, params={"token": "t"})).code
             for _ in range(6)]
    assert codes == [200] * 5 + [429]


# --- the captcha stage -------------------------------------------------------------


class _SiteVerify(Resource):
    """A captcha provider that says yes to "good" and records what it was asked."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[dict[bytes, list[bytes]]] = []

    def render_POST(self, request: Any) -> bytes:  # noqa: N802
        self.asked.append(dict(request.args))
        ok = request.args.get(b"response") == [b"good"] and \
            request.args.get(b"secret") == [b"private"]
        return json.dumps({"success": ok}).encode()


async def captcha_server(make_server: Any, **extra: Any) -> tuple[TestServer, _SiteVerify]:
    from twisted.internet import reactor

    provider = _SiteVerify()
    port = reactor.listenTCP(0, Site(provider), interface="127.0.0.1")  # type: ignore[attr-defined]
    srv = await make_server(
        recaptcha_public_key="public", recaptcha_private_key="private",
        recaptcha_siteverify_api=f"http://127.0.0.1:{port.getHost().port}/siteverify",
        ip_range_whitelist=["127.0.0.0/8"], **extra)
    _PORTS.append(port)
    return srv, provider


_PORTS: list[Any] = []


@pytest.fixture(autouse=True)
def _close_provider_ports() -> Any:
    yield
    while _PORTS:
        _PORTS.pop().stopListening()


@pytest_twisted.ensureDeferred
async def test_solved_captcha_completes_its_stage_even_when_no_flow_needs_it(
        make_server: Any) -> None:
    srv, provider = await captcha_server(make_server)
    resp = await srv.client().post(REGISTER, {
        "username": "alice", "password": PASSWORD,
        "auth": {"type": "m.login.recaptcha", "response": "good"}})
    assert resp.code == 401, resp.body
    assert resp.body["completed"] == ["m.login.recaptcha"]
    assert resp.body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert provider.asked[0][b"secret"] == [b"private"]


@pytest_twisted.ensureDeferred
async def test_wrong_captcha_is_refused_and_required_captcha_gates_registration(
        make_server: Any) -> None:
    srv, _ = await captcha_server(make_server, enable_registration_captcha=True)
    client = srv.client()
    resp = await client.post(REGISTER, {"username": "alice", "password": PASSWORD})
    assert resp.code == 401
    assert resp.body["flows"] == [{"stages": ["m.login.recaptcha", "m.login.dummy"]}]
    assert resp.body["params"] == {"m.login.recaptcha": {"public_key": "public"}}
    session = resp.body["session"]
    bad = await client.post(REGISTER, {"auth": {"type": "m.login.recaptcha",
                                                "response": "bad", "session": session}})
    assert (bad.code, bad.body["errcode"], bad.body["completed"]) == \
        (401, "M_UNAUTHORIZED", [])
    dummy = await client.post(REGISTER, {"auth": {"type": "m.login.dummy",
                                                  "session": session}})
    assert dummy.code == 401
    good = await client.post(REGISTER, {"auth": {"type": "m.login.recaptcha",
                                                 "response": "good", "session": session}})
    assert good.code == 200, good.body
    assert good.body["user_id"] == "@alice:test.local"
