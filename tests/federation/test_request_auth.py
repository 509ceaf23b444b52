"""X-Matrix request authentication, as a peer server sees it over real HTTPS."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq
from signedjson.key import generate_signing_key
from signedjson.types import SigningKey
from twisted.internet import ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from homeserver.federation.request_auth import authorization_headers
from homeserver.http.request import HttpRequest
from homeserver.http.router import AUTH_FEDERATION
from tests.federation.ca import TestCA
from tests.harness import Response, TestServer

ECHO = "/_matrix/federation/v1/test_echo"


async def echo(req: HttpRequest) -> tuple[int, Any]:
    content = req.json() if req.method == "PUT" else None
    return 200, {"origin": req.origin, "content": content}


def add_echo_routes(srv: TestServer) -> None:
    # Router.add works on a running server: the test route lives only here
    srv.hs.router.add("GET", ECHO, echo, auth=AUTH_FEDERATION)
    srv.hs.router.add("PUT", ECHO, echo, auth=AUTH_FEDERATION)


class Peer:
    """Sends requests to a federating test server as some origin would."""

    def __init__(self, target: TestServer, ca: TestCA) -> None:
        from twisted.internet import reactor

        with open(ca.ca_cert_path, "rb") as f:
            root = ssl.Certificate.loadPEM(f.read())
        self.agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=root))
        self.target = target
        self.port = target.server_name.split(":")[1]  # type: ignore[attr-defined]

    async def send(self, method: str, path: str, body: Any = None, *,
                   auth: list[bytes] | None = None, raw: bytes | None = None) -> Response:
        headers: dict[bytes, list[bytes]] = {}
        if auth:
            headers[b"Authorization"] = auth
        data = raw if raw is not None else (
            json.dumps(body).encode("utf-8") if body is not None else None)
        if data is not None:
            headers[b"Content-Type"] = [b"application/json"]
        resp = await treq.request(method, f"https://localhost:{self.port}{path}", data=data,
                                  headers=headers, agent=self.agent)
        content = await resp.content()
        return Response(resp.code, json.loads(content) if content else None)

    async def signed(self, origin: str, key: SigningKey, method: str, path: str,
                     body: Any = None, *, destination: str | None = None,
                     signed_body: Any = None, signed_path: str | None = None,
                     extra: list[bytes] | None = None) -> Response:
        """A request signed by ``origin`` with ``key``; ``signed_*`` sign
        something other than what is sent (tampering)."""
        dest = destination or self.target.server_name  # type: ignore[attr-defined]
        auth = authorization_headers(
            origin, key, method, signed_path or path, dest,
            signed_body if signed_body is not None else body)
        return await self.send(method, path, body, auth=(extra or []) + auth)


def assert_unauthorized(resp: Response) -> None:
    assert (resp.code, resp.body["errcode"]) == (401, "M_UNAUTHORIZED")


@pytest_twisted.ensureDeferred
async def test_signed_request_reaches_handler_with_its_origin(federation: Any,
                                                              test_ca: TestCA) -> None:
    a = await federation()
    b = await federation()
    add_echo_routes(b)
    peer = Peer(b, test_ca)
    a_key = a.hs.signing_key

    get = await peer.signed(a.server_name, a_key, "GET", f"{ECHO}?since=s1&q=a%20b")
    put = await peer.signed(a.server_name, a_key, "PUT", ECHO, {"pdus": [], "n": 1})
    # a Bearer header beside the X-Matrix one is ignored
    mixed = await peer.signed(a.server_name, a_key, "GET", ECHO, extra=[b"Bearer xyz"])

    assert (get.code, get.body["origin"]) == (200, a.server_name)
    assert (put.code, put.body) == (200, {"origin": a.server_name,
                                          "content": {"pdus": [], "n": 1}})
    assert (mixed.code, mixed.body["origin"]) == (200, a.server_name)


@pytest_twisted.ensureDeferred
async def test_badly_signed_requests_are_unauthorized(federation: Any,
                                                      test_ca: TestCA) -> None:
    a = await federation()
    b = await federation()
    add_echo_routes(b)
    peer = Peer(b, test_ca)
    a_name, a_key = a.server_name, a.hs.signing_key
    # same key ID as a's real key, different key
    forged_key = generate_signing_key(a_key.version)

    unsigned = await peer.send("GET", ECHO)
    bearer_only = await peer.send("GET", ECHO, auth=[b"Bearer xyz"])
    forged = await peer.signed(a_name, forged_key, "GET", ECHO)
    wrong_destination = await peer.signed(a_name, a_key, "GET", ECHO,
                                          destination="elsewhere.example")
    tampered_body = await peer.signed(a_name, a_key, "PUT", ECHO, {"n": 2},
                                      signed_body={"n": 1})
    tampered_query = await peer.signed(a_name, a_key, "GET", f"{ECHO}?limit=1000",
                                       signed_path=f"{ECHO}?limit=1")
    body_not_signed = await peer.signed(a_name, a_key, "PUT", ECHO, {"n": 1},
                                        signed_body={})
    as_b_itself = await peer.signed(b.server_name, b.hs.signing_key, "GET", ECHO)
    unknown_key = await peer.signed(a_name, generate_signing_key("nope"), "GET", ECHO)

    for resp in (unsigned, bearer_only, forged, wrong_destination, tampered_body,
                 tampered_query, body_not_signed, as_b_itself, unknown_key):
        assert_unauthorized(resp)
    # a header naming no valid server (a port that is not a number) is a
    # bad request, as Synapse answers it
    for name in ("not a server!", "localhost:http"):
        malformed = await peer.signed(name, a_key, "GET", ECHO)
        assert (malformed.code, malformed.body["errcode"]) == (400, "M_UNAUTHORIZED")
    # the genuine request still works after all that
    good = await peer.signed(a_name, a_key, "GET", ECHO)
    assert (good.code, good.body["origin"]) == (200, a_name)


@pytest_twisted.ensureDeferred
async def test_server_outside_the_whitelist_is_forbidden(federation: Any,
                                                         test_ca: TestCA) -> None:
    a = await federation()
    b = await federation(federation_domain_whitelist=["friend.example"])
    add_echo_routes(b)
    peer = Peer(b, test_ca)

    resp = await peer.signed(a.server_name, a.hs.signing_key, "GET", ECHO)

    assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN")
