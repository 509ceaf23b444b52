"""E-mail addresses of accounts: validation by e-mail, adding, logging in
with one, registering with one; binding on an identity server and undoing
it (delete, unbind, deactivation)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest_twisted

from tests.harness import Client, TestServer
from tests.identity.fake_identity_server import ACCESS_TOKEN, FakeIdentityServer

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery"


async def bind(client: Client, ids: FakeIdentityServer, address: str) -> Any:
    sid = ids.validated_session("email", address)
    return await client.post("/_matrix/client/unstable/account/3pid/bind", {
        "id_server": ids.name, "id_access_token": ACCESS_TOKEN, "sid": sid,
        "client_secret": "s3cret-Az.=_-"})


async def validate_email(hs: TestServer, path: str, address: str,
                         secret: str = "abcdefSECRET") -> str:
    """requestToken, then follow the link of the e-mail; the session ID."""
    resp = await hs.client().post(path, {"client_secret": secret, "email": address,
                                         "send_attempt": 1})
    assert resp.code == 200, resp.body
    to, _, text = hs.hs.threepids.mailer.sent[-1]  # type: ignore[attr-defined]
    assert to == address.lower()  # sent to the canonical (lower-case) address
    link = re.search(r"(http\S*)", text)
    assert link is not None
    url = urlsplit(link.group(1))
    page = await hs.client().get(f"{url.path}?{url.query}")
    assert page.code == 200, page.body
    return str(resp.body["sid"])


# --- identity-server bindings --------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_bound_address_is_unbound_when_deleted(
        hs: TestServer, identity_server: FakeIdentityServer) -> None:
    alice = await hs.register("alice")
    resp = await bind(alice, identity_server, "alice@example.org")
    assert (resp.code, resp.body) == (200, {})
    assert identity_server.bindings == {("email", "alice@example.org"): "@alice:test.local"}
    resp = await alice.post(f"{V3}/account/3pid/delete",
                            {"medium": "email", "address": "alice@example.org"})
    assert (resp.code, resp.body) == (200, {"id_server_unbind_result": "success"})
    assert identity_server.bindings == {}
    unbind = [r for r in identity_server.requests if r[1].endswith("/3pid/unbind")]
    assert unbind[0][2] == {"mxid": "@alice:test.local",
                            "threepid": {"medium": "email", "address": "alice@example.org"}}


@pytest_twisted.ensureDeferred
async def test_unbind_names_the_server_of_a_binding_made_elsewhere(
        hs: TestServer, identity_server: FakeIdentityServer) -> None:
    alice = await hs.register("alice")
    identity_server.bindings[("email", "a@example.org")] = "@alice:test.local"
    nothing_known = await alice.post(f"{V3}/account/3pid/unbind",
                                     {"medium": "email", "address": "a@example.org"})
    assert nothing_known.body == {"id_server_unbind_result": "no-support"}
    assert identity_server.bindings  # we knew of no server to ask
    resp = await alice.post("/_matrix/client/unstable/account/3pid/unbind", {
        "medium": "email", "address": "a@example.org", "id_server": identity_server.name})
    assert (resp.code, resp.body) == (200, {"id_server_unbind_result": "success"})
    assert identity_server.bindings == {}


@pytest_twisted.ensureDeferred
async def test_deactivation_unbinds_every_address(
        hs: TestServer, identity_server: FakeIdentityServer) -> None:
    alice = await hs.register("alice")
    await bind(alice, identity_server, "one@example.org")
    await bind(alice, identity_server, "two@example.org")
    first = await alice.post(f"{V3}/account/deactivate", {})
    resp = await alice.post(f"{V3}/account/deactivate", {"auth": {
        "type": "m.login.password", "session": first.body["session"], "password": PASSWORD,
        "identifier": {"type": "m.id.user", "user": "alice"}}})
    assert (resp.code, resp.body) == (200, {"id_server_unbind_result": "success"})
    assert identity_server.bindings == {}


@pytest_twisted.ensureDeferred
async def test_bind_refuses_a_malformed_identity_server(hs: TestServer) -> None:
    alice = await hs.register("alice")
    resp = await alice.post(f"{V3}/account/3pid/bind", {
        "id_server": "evil.example/path?x=", "id_access_token": "t", "sid": "s",
        "client_secret": "secret"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_bind_with_an_unknown_session_is_the_identity_servers_refusal(
        hs: TestServer, identity_server: FakeIdentityServer) -> None:
    alice = await hs.register("alice")
    resp = await alice.post(f"{V3}/account/3pid/bind", {
        "id_server": identity_server.name, "id_access_token": ACCESS_TOKEN,
        "sid": "nope", "client_secret": "secret"})
    assert (resp.code, resp.body["errcode"]) == (400, "M_NO_VALID_SESSION")


@pytest_twisted.ensureDeferred
async def test_identity_server_certificate_is_checked_by_default(
        make_server: Any, identity_server: FakeIdentityServer) -> None:
    srv = await make_server(ip_range_whitelist=["127.0.0.0/8", "::1/128"])
    alice = await srv.register("alice")
    resp = await bind(alice, identity_server, "alice@example.org")
    assert resp.code == 502
    assert identity_server.requests == []  # TLS failed before any request


# --- e-mail validation ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_validated_email_is_added_and_logs_in(hs: TestServer) -> None:
    alice = await hs.register("alice")
    sid = await validate_email(hs, f"{V3}/account/3pid/email/requestToken",
                               "Alice@Example.org")
    resp = await alice.post(f"{V3}/account/3pid", {"three_pid_creds": {
        "sid": sid, "client_secret": "abcdefSECRET", "id_server": "unused.example"}})
    assert (resp.code, resp.body) == (200, {})
    listed = await alice.get(f"{V3}/account/3pid")
    assert [(t["medium"], t["address"]) for t in listed.body["threepids"]] == \
        [("email", "alice@example.org")]
    login = await hs.client().post(f"{V3}/login", {
        "type": "m.login.password", "medium": "email", "address": "ALICE@example.org",
        "password": PASSWORD})
    assert login.code == 200, login.body
    assert login.body["user_id"] == "@alice:test.local"
    by_identifier = await hs.client().post(f"{V3}/login", {
        "type": "m.login.password", "password": PASSWORD, "identifier": {
            "type": "m.id.thirdparty", "medium": "email", "address": "alice@example.org"}})
    assert by_identifier.code == 200, by_identifier.body


@pytest_twisted.ensureDeferred
async def test_unvalidated_session_cannot_add_an_address(hs: TestServer) -> None:
    alice = await hs.register("alice")
    resp = await hs.client().post(f"{V3}/account/3pid/email/requestToken", {
        "client_secret": "abcdefSECRET", "email": "a@example.org", "send_attempt": 1})
    added = await alice.post(f"{V3}/account/3pid", {"three_pid_creds": {
        "sid": resp.body["sid"], "client_secret": "abcdefSECRET"}})
    assert (added.code, added.body["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
    wrong = await hs.client().get(
        "/_matrix/client/unstable/add_threepid/email/submit_token",
        params={"token": "wrong", "client_secret": "abcdefSECRET", "sid": resp.body["sid"]})
    assert wrong.code == 400


@pytest_twisted.ensureDeferred
async def test_repeated_send_attempt_sends_no_second_email(hs: TestServer) -> None:
    body = {"client_secret": "abcdefSECRET", "email": "a@example.org", "send_attempt": 1}
    first = await hs.client().post(f"{V3}/account/3pid/email/requestToken", body)
    again = await hs.client().post(f"{V3}/account/3pid/email/requestToken", body)
    assert first.body["sid"] == again.body["sid"]
    assert len(hs.hs.threepids.mailer.sent) == 1  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_login_with_an_unknown_email_is_forbidden(hs: TestServer) -> None:
    await hs.register("alice")
    resp = await hs.client().post(f"{V3}/login", {
        "type": "m.login.password", "medium": "email", "address": "who@example.org",
        "password": PASSWORD})
    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_registration_offers_and_accepts_a_validated_email(hs: TestServer) -> None:
    client = hs.client()
    first = await client.post(f"{V3}/register", {"username": "bob", "password": PASSWORD})
    assert first.code == 401
    assert {"stages": ["m.login.email.identity"]} in first.body["flows"]
    sid = await validate_email(hs, f"{V3}/register/email/requestToken", "bob@example.org")
    resp = await client.post(f"{V3}/register", {
        "username": "bob", "password": PASSWORD, "auth": {
            "type": "m.login.email.identity", "session": first.body["session"],
            "threepid_creds": {"sid": sid, "client_secret": "abcdefSECRET"}}})
    assert resp.code == 200, resp.body
    assert resp.body["user_id"] == "@bob:test.local"
    bob = hs.client(resp.body["access_token"])
    listed = await bob.get(f"{V3}/account/3pid")
    assert [t["address"] for t in listed.body["threepids"]] == ["bob@example.org"]
    taken = await client.post(f"{V3}/register/email/requestToken", {
        "client_secret": "other", "email": "bob@example.org", "send_attempt": 1})
    assert (taken.code, taken.body["errcode"]) == (400, "M_THREEPID_IN_USE")


@pytest_twisted.ensureDeferred
async def test_email_validation_is_refused_without_email_settings(server: TestServer) -> None:
    resp = await server.client().post(f"{V3}/account/3pid/email/requestToken", {
        "client_secret": "abcdefSECRET", "email": "a@example.org", "send_attempt": 1})
    assert (resp.code, resp.body["errcode"]) == (400, "M_THREEPID_DENIED")
    flows = await server.client().post(f"{V3}/register", {"username": "x", "password": "y"})
    assert flows.body["flows"] == [{"stages": ["m.login.dummy"]}]
