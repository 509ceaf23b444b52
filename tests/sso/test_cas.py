"""CAS single sign-on (cas_config), as SyTest's 12login/02cas.pl and
10apidoc/13ui-auth.pl walk it: a CAS server on a loopback port validates the
tickets (the browser's visit to the CAS login page is skipped, as there)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest_twisted
from twisted.internet import reactor
from twisted.web import resource, server

from tests.harness import TestServer
from tests.sso.provider import Browser

LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"
CLIENT = "https://client?p=http%3A%2F%2Fserver"


def cas_answer(user: str, attributes: dict[str, str]) -> bytes:
    attrs = "".join(f"<cas:{k}>{v}</cas:{k}>" for k, v in attributes.items())
    return (f"<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>"
            f"<cas:authenticationSuccess><cas:user>{user}</cas:user>"
            f"<cas:attributes>{attrs}</cas:attributes>"
            f"</cas:authenticationSuccess></cas:serviceResponse>").encode()


class CasServer(resource.Resource):
    """ticket -> (user, attributes); records the service URLs it is asked about."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.tickets: dict[str, tuple[str, dict[str, str]]] = {}
        self.services: list[str] = []

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        if request.path != b"/cas/proxyValidate":
            request.setResponseCode(404)
            return b""
        ticket = request.args.get(b"ticket", [b""])[0].decode()
        self.services.append(request.args.get(b"service", [b""])[0].decode())
        if ticket not in self.tickets:
            return (b"<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>"
                    b"<cas:authenticationFailure code='INVALID_TICKET'>no</cas:authentication"
                    b"Failure></cas:serviceResponse>")
        return cas_answer(*self.tickets.pop(ticket))


@pytest_twisted.async_yield_fixture
async def cas() -> AsyncIterator[tuple[CasServer, str]]:
    site = CasServer()
    port = reactor.listenTCP(0, server.Site(site), interface="127.0.0.1")  # type: ignore
    yield site, f"http://127.0.0.1:{port.getHost().port}/cas"
    await port.stopListening()


async def cas_server(make_server: Any, url: str, **extra: Any) -> TestServer:
    srv: TestServer = await make_server(
        cas_config={"enabled": True, "server_url": url, **extra},
        ip_range_whitelist=["127.0.0.0/8"])
    srv.hs.config.public_baseurl = srv.base_url + "/"
    return srv


async def ticket(srv: TestServer, site: CasServer, user: str, *,
                 attributes: dict[str, str] | None = None, **args: str) -> Any:
    site.tickets["goldenticket"] = (user, attributes or {})
    query = urlencode({**args, "ticket": "goldenticket"})
    return await srv.client().get(f"/_matrix/client/r0/login/cas/ticket?{query}")


def token_in(page: Any) -> str:
    body = page.body.decode() if isinstance(page.body, bytes) else str(page.body)
    href = unescape(body.split('id="continue" href="', 1)[1].split('"', 1)[0])
    return parse_qs(urlsplit(href).query)["loginToken"][0]


async def cas_login(srv: TestServer, site: CasServer, user: str, **extra: Any) -> Any:
    page = await ticket(srv, site, user, redirectUrl=CLIENT)
    assert page.code == 200, page.body
    return await srv.client().post(LOGIN, {"type": "m.login.token", "token": token_in(page),
                                           **extra})


@pytest_twisted.ensureDeferred
async def test_cas_redirects_to_the_cas_login_page(make_server: Any, cas: Any) -> None:
    site, url = cas
    srv = await cas_server(make_server, url)
    flows = (await srv.client().get(LOGIN)).body["flows"]
    assert {"type": "m.login.cas"} in flows
    assert {"type": "m.login.sso", "identity_providers": [{"id": "cas", "name": "CAS"}]} \
        in flows
    for path in ("/login/sso/redirect", "/login/cas/redirect"):
        resp = await Browser().request("GET", f"{srv.base_url}/_matrix/client/v3{path}?"
                                       + urlencode({"redirectUrl": CLIENT}))
        assert resp.code == 302
        location = resp.location
        assert location is not None and location.startswith(f"{url}/login?")
        service = parse_qs(urlsplit(location).query)["service"][0]
        assert service == (f"{srv.base_url}/_matrix/client/r0/login/cas/ticket?redirectUrl="
                           "https%3A%2F%2Fclient%3Fp%3Dhttp%253A%252F%252Fserver")


@pytest_twisted.ensureDeferred
async def test_new_cas_user_logs_in_and_is_found_again(make_server: Any, cas: Any) -> None:
    site, url = cas
    srv = await cas_server(make_server, url, displayname_attribute="displayName")
    page = await ticket(srv, site, "cas_user!", attributes={"displayName": "Cas User"},
                        redirectUrl=CLIENT)
    # the ticket was checked with the same service URL the browser carried
    assert site.services[-1].endswith("/login/cas/ticket?redirectUrl="
                                      "https%3A%2F%2Fclient%3Fp%3Dhttp%253A%252F%252Fserver")
    assert page.code == 200  # not whitelisted: the confirmation page
    login = await srv.client().post(LOGIN, {"type": "m.login.token", "token": token_in(page)})
    assert login.body["user_id"] == "@cas_user=21:test.local"
    me = srv.client(login.body["access_token"])
    name = await me.get("/_matrix/client/v3/profile/@cas_user=21:test.local/displayname")
    assert name.body == {"displayname": "Cas User"}
    again = await cas_login(srv, site, "cas_user!")
    assert again.body["user_id"] == "@cas_user=21:test.local"


@pytest_twisted.ensureDeferred
async def test_bad_tickets_and_missing_attributes_are_refused(make_server: Any,
                                                             cas: Any) -> None:
    site, url = cas
    srv = await cas_server(make_server, url, required_attributes={"userGroup": "staff"})
    query = urlencode({"redirectUrl": CLIENT, "ticket": "forged"})
    forged = await srv.client().get(f"/_matrix/client/v3/login/cas/ticket?{query}")
    assert forged.code == 400
    outsider = await ticket(srv, site, "mallory", attributes={"userGroup": "guests"},
                            redirectUrl=CLIENT)
    assert outsider.code == 403
    assert await srv.hs.stores.users.get_user("@mallory:test.local") is None
    member = await ticket(srv, site, "sam", attributes={"userGroup": "staff"},
                          redirectUrl=CLIENT)
    assert member.code == 200


@pytest_twisted.ensureDeferred
async def test_interactive_auth_with_cas(make_server: Any, cas: Any) -> None:
    site, url = cas
    srv = await cas_server(make_server, url)
    alice = await srv.register("alice")
    # CAS's alice is the account alice: the login links the two
    login = await cas_login(srv, site, alice.user_id.split(":")[0][1:], device_id="CASDEV")
    assert login.body["user_id"] == alice.user_id
    asked = await alice.delete("/_matrix/client/v3/devices/CASDEV", {})
    assert asked.code == 401
    assert {"stages": ["m.login.sso"]} in asked.body["flows"]
    session = asked.body["session"]
    fallback = await srv.client().get(
        f"/_matrix/client/v3/auth/m.login.sso/fallback/web?session={session}")
    assert fallback.code == 200 and f"{url}/login?" in unescape(fallback.body.decode())
    done = await ticket(srv, site, "alice", session=session)
    assert done.code == 200 and b"authDone" in done.body
    deleted = await alice.delete("/_matrix/client/v3/devices/CASDEV", {"auth": {
        "session": session}})
    assert deleted.code == 200, deleted.body
    assert (await alice.get("/_matrix/client/v3/devices/CASDEV")).code == 404


@pytest_twisted.ensureDeferred
async def test_interactive_auth_with_cas_must_be_the_same_user(make_server: Any,
                                                               cas: Any) -> None:
    site, url = cas
    srv = await cas_server(make_server, url)
    alice = await srv.register("alice")
    await cas_login(srv, site, "alice", device_id="CASDEV")
    session = (await alice.delete("/_matrix/client/v3/devices/CASDEV", {})).body["session"]
    await ticket(srv, site, "cas_user", session=session)
    refused = await alice.delete("/_matrix/client/v3/devices/CASDEV", {"auth": {
        "session": session}})
    assert (refused.code, refused.body["errcode"]) == (403, "M_FORBIDDEN")
    assert (await alice.get("/_matrix/client/v3/devices/CASDEV")).code == 200
