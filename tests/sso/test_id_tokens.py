"""The ID token checks of accounts/oidc.py, against a provider whose answers
the test writes (served over loopback HTTP through the outbound guard):
expired, wrongly signed, for another client or issuer, another nonce, a
rotated key, an algorithm not allowed."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from twisted.internet import reactor
from twisted.web import resource, server

from homeserver.accounts.oidc import OidcClient, OidcError
from tests.harness import TestServer

NONCE = "the-nonce"


class FakeProvider(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.issuer = ""
        self.keys: list[RSAKey] = []
        self.id_token: str | None = None
        self.token_status = 200
        self.jwks_fetches = 0

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        if request.path == b"/.well-known/openid-configuration":
            return json.dumps({
                "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/auth",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "code_challenge_methods_supported": ["S256"]}).encode()
        if request.path == b"/jwks":
            self.jwks_fetches += 1
            return json.dumps(KeySet(self.keys).as_dict(private=False)).encode()  # type: ignore
        request.setResponseCode(404)
        return b"{}"

    def render_POST(self, request: Any) -> bytes:  # noqa: N802
        request.setResponseCode(self.token_status)
        if self.token_status != 200:
            return b'{"error": "invalid_grant"}'
        body: dict[str, Any] = {"access_token": "at", "token_type": "Bearer"}
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return json.dumps(body).encode()


@pytest_twisted.async_yield_fixture
async def fake() -> AsyncIterator[FakeProvider]:
    site = FakeProvider()
    port = reactor.listenTCP(0, server.Site(site), interface="127.0.0.1")  # type: ignore
    site.issuer = f"http://127.0.0.1:{port.getHost().port}"
    site.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1"})]
    yield site
    await port.stopListening()


def claims(fake: FakeProvider, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": fake.issuer, "aud": "homeserver", "sub": "subject-1", "iat": now,
            "exp": now + 300, "nonce": NONCE, **extra}


def sign(key: Any, body: dict[str, Any], alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": key.kid}, body, key)


async def client_for(make_server: Any, fake: FakeProvider) -> OidcClient:
    srv: TestServer = await make_server(ip_range_whitelist=["127.0.0.0/8"], oidc_providers=[{
        "idp_id": "fake", "issuer": fake.issuer, "client_id": "homeserver",
        "client_secret": "s", "skip_verification": True}])
    assert srv.hs.sso is not None
    return srv.hs.sso.clients["oidc-fake"]


@pytest_twisted.ensureDeferred
async def test_a_good_id_token_gives_its_claims(make_server: Any, fake: FakeProvider) -> None:
    client = await client_for(make_server, fake)
    fake.id_token = sign(fake.keys[0], claims(fake, name="Alice"))
    got = await client.exchange_code("code", NONCE, "verifier")
    assert (got["sub"], got["name"]) == ("subject-1", "Alice")


@pytest.mark.parametrize("why,change", [
    ("expired", {"exp": int(time.time()) - 600, "iat": int(time.time()) - 900}),
    ("another client", {"aud": "someone-else"}),
    ("another issuer", {"iss": "https://evil.example.org"}),
    ("another nonce", {"nonce": "replayed"}),
    ("no nonce", {"nonce": None}),
    ("several audiences, not for us", {"aud": ["homeserver", "other"], "azp": "other"}),
])
@pytest_twisted.ensureDeferred
async def test_bad_id_tokens_are_refused(make_server: Any, fake: FakeProvider, why: str,
                                         change: dict[str, Any]) -> None:
    client = await client_for(make_server, fake)
    body = {k: v for k, v in claims(fake, **change).items() if v is not None}
    fake.id_token = sign(fake.keys[0], body)
    with pytest.raises(OidcError):
        await client.exchange_code("code", NONCE, None)


@pytest_twisted.ensureDeferred
async def test_wrong_signatures_and_algorithms_are_refused(make_server: Any,
                                                          fake: FakeProvider) -> None:
    client = await client_for(make_server, fake)
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    fake.id_token = sign(impostor, claims(fake))
    with pytest.raises(OidcError, match="not valid"):
        await client.exchange_code("code", NONCE, None)
    hmac = OctKey.import_key("a-secret-that-is-long-enough-for-hs256", parameters={"kid": "k1"})
    fake.id_token = sign(hmac, claims(fake), "HS256")
    with pytest.raises(OidcError, match="not valid"):
        await client.exchange_code("code", NONCE, None)
    fake.id_token = None
    with pytest.raises(OidcError, match="no ID token"):
        await client.exchange_code("code", NONCE, None)
    fake.token_status = 400
    with pytest.raises(OidcError, match="refused: invalid_grant"):
        await client.exchange_code("code", NONCE, None)


@pytest_twisted.ensureDeferred
async def test_a_rotated_key_is_fetched_once(make_server: Any, fake: FakeProvider) -> None:
    client = await client_for(make_server, fake)
    fake.id_token = sign(fake.keys[0], claims(fake))
    await client.exchange_code("code", NONCE, None)
    assert fake.jwks_fetches == 1
    fake.keys = [RSAKey.generate_key(2048, parameters={"kid": "k2"})]
    fake.id_token = sign(fake.keys[0], claims(fake))
    got = await client.exchange_code("code", NONCE, None)
    assert got["sub"] == "subject-1" and fake.jwks_fetches == 2
