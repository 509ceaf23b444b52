"""org.matrix.login.jwt (jwt_config), with tokens minted by joserfc."""

from __future__ import annotations

import time
from typing import Any

import pytest_twisted
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from tests.harness import TestServer

LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"
SECRET = "a-shared-secret-of-at-least-32-bytes!"
HMAC = {"jwt_config": {"enabled": True, "secret": SECRET, "algorithm": "HS256",
                       "issuer": "https://app.example.org",
                       "audiences": ["matrix"], "display_name_claim": "name"}}


def mint(claims: dict[str, Any], key: Any = None, alg: str = "HS256") -> str:
    base = {"iss": "https://app.example.org", "aud": "matrix", "exp": int(time.time()) + 60}
    return jwt.encode({"alg": alg}, {**base, **claims},
                      key if key is not None else OctKey.import_key(SECRET))


async def jwt_login(server: TestServer, token: str) -> Any:
    return await server.client().post(LOGIN, {"type": "org.matrix.login.jwt",
                                              "token": token})


@pytest_twisted.ensureDeferred
async def test_first_jwt_login_creates_the_user_and_later_ones_find_it(
        make_server: Any) -> None:
    server = await make_server(**HMAC)
    flows = (await server.client().get(LOGIN)).body["flows"]
    assert {"type": "org.matrix.login.jwt"} in flows
    first = await jwt_login(server, mint({"sub": "carol", "name": "Carol C."}))
    assert first.code == 200, first.body
    assert first.body["user_id"] == "@carol:test.local"
    me = server.client(first.body["access_token"])
    assert (await me.get(WHOAMI)).body["user_id"] == "@carol:test.local"
    profile = await me.get("/_matrix/client/v3/profile/@carol:test.local/displayname")
    assert profile.body == {"displayname": "Carol C."}
    second = await jwt_login(server, mint({"sub": "carol"}))
    assert second.body["user_id"] == "@carol:test.local"
    assert second.body["device_id"] != first.body["device_id"]


@pytest_twisted.ensureDeferred
async def test_bad_jwts_are_refused(make_server: Any) -> None:
    server = await make_server(**HMAC)
    wrong_key = OctKey.import_key("another-secret-another-secret-xx")
    cases = {
        "wrong signature": mint({"sub": "dave"}, wrong_key),
        "expired": mint({"sub": "dave", "exp": int(time.time()) - 120}),
        "not yet valid": mint({"sub": "dave", "nbf": int(time.time()) + 3600}),
        "wrong issuer": mint({"sub": "dave", "iss": "https://evil.example.org"}),
        "wrong audience": mint({"sub": "dave", "aud": "someone-else"}),
        "no subject": mint({}),
        "bad username": mint({"sub": "dave smith"}),
        "another server's user": mint({"sub": "@dave:elsewhere.org"}),
        "not a JWT": "not.a.jwt",
    }
    for why, token in cases.items():
        resp = await jwt_login(server, token)
        assert (resp.code, resp.body["errcode"]) == (403, "M_FORBIDDEN"), why
    # nothing was created along the way
    assert await server.hs.stores.users.get_user("@dave:test.local") is None


@pytest_twisted.ensureDeferred
async def test_only_the_configured_algorithm_is_accepted(make_server: Any) -> None:
    rsa = RSAKey.generate_key(2048)
    server = await make_server(jwt_config={
        "enabled": True, "algorithm": "RS256",
        "secret": rsa.as_pem(private=False).decode()})
    ok = await jwt_login(server, jwt.encode({"alg": "RS256"}, {"sub": "erin"}, rsa))
    assert ok.code == 200, ok.body
    # an HMAC token "signed" with the public key must not pass as RS256
    forged = await jwt_login(server, mint({"sub": "erin"}))
    assert (forged.code, forged.body["errcode"]) == (403, "M_FORBIDDEN")
    # no audience configured: a token naming one is refused (as Synapse)
    aud = await jwt_login(server, jwt.encode({"alg": "RS256"},
                                             {"sub": "erin", "aud": "x"}, rsa))
    assert aud.code == 403


@pytest_twisted.ensureDeferred
async def test_jwt_login_is_unknown_when_disabled(server: TestServer) -> None:
    resp = await jwt_login(server, mint({"sub": "frank"}))
    assert (resp.code, resp.body["errcode"]) == (400, "M_UNKNOWN")
