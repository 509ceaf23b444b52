"""The outbound federation client over real TLS on loopback.

A peer is either another test homeserver or a small HTTPS site started by the
test (certificate from the test CA) that echoes what it received, so a test
can see exactly what a remote server would: the Host header, the body and an
X-Matrix signature it can verify with our public key.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
import pytest_twisted
from OpenSSL import crypto
from signedjson.key import get_verify_key
from signedjson.sign import verify_signed_json
from twisted.internet import protocol, ssl
from twisted.internet import reactor as _reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from homeserver.config import ConfigError, build_config
from homeserver.federation.client import FederationError, RequestFailed
from homeserver.federation.request_auth import parse_x_matrix, request_json
from homeserver.federation.tls import server_tls_options
from tests.federation.ca import TestCA, make_test_ca
from tests.federation.harness import restart, take_down
from tests.harness import TestServer

reactor: Any = _reactor


class _Peer(Resource):
    """A remote server that answers every request by describing it."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []

    def render(self, request: Any) -> Any:
        seen = {
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "host": request.getHeader("host"),
            "authorization": [v.decode() for v in
                              request.requestHeaders.getRawHeaders(b"authorization", [])],
            "content_type": request.getHeader("content-type"),
            "body": request.content.read().decode(),
            "client_port": request.getClientAddress().port,
        }
        self.requests.append(seen)
        path = request.path.decode()
        if path == "/big":
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"pad": "x" * 2_000_000}).encode()
        if path == "/big-chunked":
            # no Content-Length: the limit must apply while streaming
            request.setHeader(b"content-type", b"application/json")
            request.write(b'{"pad": "')
            for _ in range(40):
                request.write(b"x" * 50_000)
            request.write(b'"}')
            request.finish()
            return NOT_DONE_YET
        if path == "/not-json":
            return b"<html>hello</html>"
        if path == "/missing":
            request.setResponseCode(404)
            return json.dumps({"errcode": "M_NOT_FOUND", "error": "no"}).encode()
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(seen).encode()


def _tls_options(cert_path: str, key_path: str) -> ssl.CertificateOptions:
    with open(cert_path, "rb") as f:
        cert = crypto.load_certificate(crypto.FILETYPE_PEM, f.read())
    with open(key_path, "rb") as f:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
    return ssl.CertificateOptions(privateKey=key, certificate=cert)


class PeerSite:
    """An HTTPS peer on 127.0.0.1; ``name`` is its server name (localhost:P)."""

    def __init__(self, ca: TestCA, label: str, **issue: Any) -> None:
        self.peer = _Peer()
        cert, key = ca.issue(label, **issue)
        self.port = reactor.listenSSL(0, Site(self.peer), _tls_options(cert, key),
                                      interface="127.0.0.1")
        self.name = f"localhost:{self.port.getHost().port}"

    async def stop(self) -> None:
        await self.port.stopListening()


@pytest_twisted.async_yield_fixture
async def peers(test_ca: TestCA, tmp_path: Any) -> Any:
    """A factory of HTTPS peers: ``peers(ca=None, **ca.issue kwargs)``."""
    made: list[PeerSite] = []

    def factory(ca: TestCA | None = None, **issue: Any) -> PeerSite:
        site = PeerSite(ca or test_ca, f"peer{len(made)}", **issue)
        made.append(site)
        return site

    yield factory
    for site in made:
        await site.stop()


def _name(srv: TestServer) -> str:
    return str(srv.hs.hostname)


@pytest_twisted.ensureDeferred
async def test_server_reaches_another_server_over_verified_tls(federation: Any) -> None:
    a = await federation()
    b = await federation()

    try:
        body = await a.hs.federation_client.get_json(_name(b), "/_matrix/federation/v1/version")
    except FederationError as e:
        # the route may not exist yet; a Matrix 404 still proves TLS and HTTP worked
        assert (e.code, e.errcode) == (404, "M_UNRECOGNIZED")
    else:
        assert "server" in body


@pytest_twisted.ensureDeferred
async def test_request_is_signed_with_x_matrix_and_carries_canonical_json(
        federation: Any, peers: Any) -> None:
    a = await federation()
    peer = peers()
    content = {"b": 1, "a": ["é", 2]}

    seen = await a.hs.federation_client.put_json(
        peer.name, "/_matrix/federation/v1/send/t%201", content, args={"x": ["1", "2"], "y": "z"})

    assert seen["method"] == "PUT"
    assert seen["uri"] == "/_matrix/federation/v1/send/t%201?x=1&x=2&y=z"
    assert seen["host"] == peer.name
    assert seen["content_type"] == "application/json"
    assert seen["body"] == '{"a":["é",2],"b":1}'
    [header] = seen["authorization"]
    params = parse_x_matrix(header)
    assert params is not None
    assert (params["origin"], params["destination"]) == (_name(a), peer.name)
    signed = request_json("PUT", seen["uri"], _name(a), peer.name, content)
    signed["signatures"] = {_name(a): {params["key"]: params["sig"]}}
    verify_key = get_verify_key(a.hs.signing_key)
    verify_signed_json(signed, _name(a), verify_key)  # raises if the signature is wrong


@pytest_twisted.ensureDeferred
async def test_unsigned_request_has_no_authorization(federation: Any, peers: Any) -> None:
    a = await federation()
    peer = peers()

    seen = await a.hs.federation_client.get_json(peer.name, "/_matrix/key/v2/server",
                                                 sign=False)

    assert seen["authorization"] == []
    assert seen["method"] == "GET"


@pytest_twisted.ensureDeferred
async def test_error_status_raises_federation_error_with_errcode(
        federation: Any, peers: Any) -> None:
    a = await federation()
    peer = peers()

    with pytest.raises(FederationError) as info:
        await a.hs.federation_client.get_json(peer.name, "/missing")

    assert (info.value.code, info.value.errcode) == (404, "M_NOT_FOUND")
    assert info.value.body == {"errcode": "M_NOT_FOUND", "error": "no"}


@pytest_twisted.ensureDeferred
async def test_certificate_for_another_name_is_refused(federation: Any, peers: Any) -> None:
    a = await federation()
    peer = peers(hostnames=("other.example",), ips=())

    with pytest.raises(RequestFailed):
        await a.hs.federation_client.get_json(peer.name, "/_matrix/federation/v1/version")
    assert peer.peer.requests == []


@pytest_twisted.ensureDeferred
async def test_certificate_from_untrusted_ca_is_refused(
        federation: Any, peers: Any, tmp_path: Any) -> None:
    a = await federation()
    stranger = make_test_ca(str(tmp_path / "other-ca"))
    peer = peers(ca=stranger)

    with pytest.raises(RequestFailed):
        await a.hs.federation_client.get_json(peer.name, "/_matrix/federation/v1/version")
    assert peer.peer.requests == []


@pytest_twisted.ensureDeferred
async def test_unverified_mode_accepts_any_certificate(
        federation: Any, peers: Any, tmp_path: Any) -> None:
    a = await federation(federation_verify_certificates=False)
    stranger = make_test_ca(str(tmp_path / "other-ca"))
    peer = peers(ca=stranger)

    seen = await a.hs.federation_client.get_json(peer.name, "/ok")

    assert seen["uri"] == "/ok"


@pytest_twisted.ensureDeferred
async def test_destination_outside_domain_whitelist_is_never_contacted(
        federation: Any, peers: Any) -> None:
    a = await federation(federation_domain_whitelist=["friend.example"])
    peer = peers()

    with pytest.raises(RequestFailed):
        await a.hs.federation_client.get_json(peer.name, "/ok")
    assert peer.peer.requests == []


@pytest_twisted.ensureDeferred
async def test_blocked_ip_range_is_never_contacted(federation: Any, peers: Any) -> None:
    a = await federation(ip_range_whitelist=[])  # loopback is in the default blacklist
    peer = peers()

    with pytest.raises(RequestFailed):
        await a.hs.federation_client.get_json(peer.name, "/ok")
    with pytest.raises(RequestFailed):  # an IP literal is checked the same way
        await a.hs.federation_client.get_json(f"127.0.0.1:{peer.port.getHost().port}", "/ok")
    assert peer.peer.requests == []


@pytest_twisted.ensureDeferred
async def test_server_never_sends_to_itself(federation: Any) -> None:
    a = await federation()

    with pytest.raises(RequestFailed):
        await a.hs.federation_client.get_json(_name(a), "/_matrix/federation/v1/version")


@pytest_twisted.ensureDeferred
async def test_silent_peer_fails_within_the_timeout(federation: Any) -> None:
    a = await federation(federation={"client_timeout": "500ms"})
    accepted: list[Any] = []

    class Silent(protocol.Protocol):
        def connectionMade(self) -> None:  # noqa: N802
            accepted.append(self)

    factory = protocol.Factory.forProtocol(Silent)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        start = time.monotonic()
        with pytest.raises(RequestFailed):
            await a.hs.federation_client.get_json(f"localhost:{port.getHost().port}", "/ok")
        elapsed = time.monotonic() - start
    finally:
        for p in accepted:
            p.transport.abortConnection()
        await port.stopListening()
    assert accepted
    assert 0.4 < elapsed < 3


@pytest_twisted.ensureDeferred
async def test_oversized_response_is_refused(federation: Any, peers: Any) -> None:
    a = await federation()
    peer = peers()
    client = a.hs.federation_client

    with pytest.raises(RequestFailed):
        await client.get_json(peer.name, "/big", max_size=1_000_000)
    with pytest.raises(RequestFailed):
        await client.get_json(peer.name, "/big-chunked", max_size=1_000_000)
    # within the limit the same answers are fine
    assert len((await client.get_json(peer.name, "/big-chunked"))["pad"]) == 2_000_000


@pytest_twisted.ensureDeferred
async def test_answer_that_is_not_json_is_refused(federation: Any, peers: Any) -> None:
    a = await federation()
    peer = peers()

    with pytest.raises(RequestFailed):
        await a.hs.federation_client.get_json(peer.name, "/not-json")


@pytest_twisted.ensureDeferred
async def test_connections_to_a_peer_are_reused(federation: Any, peers: Any) -> None:
    a = await federation()
    peer = peers()

    first = await a.hs.federation_client.get_json(peer.name, "/one")
    second = await a.hs.federation_client.put_json(peer.name, "/two", {})

    assert first["client_port"] == second["client_port"]


@pytest_twisted.ensureDeferred
async def test_restarted_server_keeps_its_name_key_and_data(federation: Any) -> None:
    a = await federation()
    b = await federation()
    alice = await b.register("alice")
    key_before = get_verify_key(b.hs.signing_key).encode()
    with contextlib.suppress(FederationError):  # a pooled connection now exists
        await a.hs.federation_client.get_json(_name(b), "/_matrix/federation/v1/version")

    await take_down(b)
    with pytest.raises(RequestFailed):
        await a.hs.federation_client.get_json(_name(b), "/_matrix/federation/v1/version")
    await restart(b)

    assert get_verify_key(b.hs.signing_key).encode() == key_before
    whoami = await alice.get("/_matrix/client/v3/account/whoami")
    assert (whoami.code, whoami.body["user_id"]) == (200, alice.user_id)
    try:
        await a.hs.federation_client.get_json(_name(b), "/_matrix/federation/v1/version")
    except FederationError as e:
        assert e.code == 404


def test_listener_tls_config_errors_are_clear(test_ca: TestCA, tmp_path: Any) -> None:
    cert, key = test_ca.issue("listener")
    base = {"server_name": "me.test",
            "database": {"name": "sqlite3", "args": {"database": ":memory:"}}}

    with pytest.raises(ConfigError, match="tls_certificate_path"):
        server_tls_options(build_config({**base, "tls_certificate_path": "missing.crt",
                                         "tls_private_key_path": key}, str(tmp_path)))
    with pytest.raises(ConfigError, match="tls_private_key_path"):
        server_tls_options(build_config({**base, "tls_certificate_path": cert},
                                        str(tmp_path)))
    # a chain file: the leaf, then the CA; relative paths are relative to the config dir
    chain = tmp_path / "chain.pem"
    with open(cert, "rb") as leaf, open(test_ca.ca_cert_path, "rb") as root:
        chain.write_bytes(leaf.read() + root.read())
    options = server_tls_options(build_config({**base, "tls_certificate_path": "chain.pem",
                                               "tls_private_key_path": key}, str(tmp_path)))
    assert len(options.extraCertChain) == 1
