"""The HTTP layer every endpoint shares: auth, errors, the access log, path parameters."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted

from homeserver.http.request import HttpRequest
from tests.harness import TestServer

V3 = "/_matrix/client/v3"


@pytest.fixture
def access_log() -> Iterator[list[logging.LogRecord]]:
    """The access log lines written while the test runs (a live list)."""
    lines: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record)

    logger = logging.getLogger("homeserver.access")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def messages(lines: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in lines]


# --- access tokens --------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_missing_token_is_401_missing_token(server: TestServer) -> None:
    resp = await server.client().get(f"{V3}/capabilities")
    assert resp.code == 401
    assert resp.body["errcode"] == "M_MISSING_TOKEN"


@pytest_twisted.ensureDeferred
async def test_unknown_token_is_401_unknown_token_without_soft_logout(
        server: TestServer) -> None:
    resp = await server.client("hs_at_not_a_token_we_issued").get(f"{V3}/capabilities")
    assert resp.code == 401
    assert resp.body["errcode"] == "M_UNKNOWN_TOKEN"
    assert resp.body["soft_logout"] is False


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cGFzcw==", "Bearer", "Bearer   ",
                                    "token-without-scheme"])
@pytest_twisted.ensureDeferred
async def test_malformed_authorization_header_is_401(server: TestServer, header: str) -> None:
    resp = await server.client().get(f"{V3}/capabilities", token=None,
                                     headers={"Authorization": header})
    assert resp.code == 401
    assert resp.body["errcode"] in ("M_MISSING_TOKEN", "M_UNKNOWN_TOKEN")


@pytest_twisted.ensureDeferred
async def test_bearer_scheme_is_case_insensitive(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await server.client().get(f"{V3}/capabilities", token=None,
                                     headers={"Authorization": f"bearer {alice.access_token}"})
    assert resp.code == 200


@pytest_twisted.ensureDeferred
async def test_token_in_query_string_works_and_is_redacted_in_the_access_log(
        server: TestServer, access_log: list[logging.LogRecord]) -> None:
    alice = await server.register("alice")
    token = alice.access_token
    assert token is not None

    resp = await server.client().get(f"{V3}/capabilities", token=None,
                                     params={"access_token": token, "other": "kept"})

    assert resp.code == 200
    [line] = messages(access_log)
    assert token not in line
    assert "access_token=<redacted>" in line
    assert "other=kept" in line
    assert f" {alice.user_id} " in line  # who made the request is logged, not how


@pytest_twisted.ensureDeferred
async def test_tokens_never_reach_the_access_log(
        server: TestServer, access_log: list[logging.LogRecord]) -> None:
    alice = await server.register("alice")
    token = alice.access_token
    assert token is not None
    await alice.get(f"{V3}/capabilities")
    await server.client().get(f"{V3}/capabilities", token=None,
                              params={"access_token": token + "x"})
    await server.client().get(f"{V3}/capabilities?foo=1&access_token={token}&bar=2", token=None)
    # an encoded parameter name authenticates just the same
    resp = await server.client().get(f"{V3}/capabilities?access%5Ftoken={token}", token=None)
    assert resp.code == 200
    await server.client().get(f"{V3}/capabilities?access_token=a&access_token={token}",
                              token=None)
    assert len(access_log) == 5
    assert not any(token in line for line in messages(access_log))


# --- errors -----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_unexpected_exception_is_500_unknown_without_a_traceback(
        server: TestServer, caplog: pytest.LogCaptureFixture) -> None:
    async def boom(req: HttpRequest) -> tuple[int, Any]:
        raise RuntimeError("secret internal detail")

    server.hs.router.add("GET", "/_test/boom", boom, auth="none")

    resp = await server.client().get("/_test/boom")

    assert resp.code == 500
    assert resp.body == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert resp.header("Content-Type") == "application/json"
    # the operator gets the traceback, in the server log
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in errors)
    # and the server carries on
    assert (await server.client().get("/_matrix/client/versions")).code == 200


@pytest_twisted.ensureDeferred
async def test_handler_returning_garbage_is_500_not_a_hang(server: TestServer) -> None:
    async def unserialisable(req: HttpRequest) -> tuple[int, Any]:
        return 200, {"set": {1, 2}}

    server.hs.router.add("GET", "/_test/garbage", unserialisable, auth="none")
    resp = await server.client().get("/_test/garbage")
    assert resp.code == 500
    assert resp.body["errcode"] == "M_UNKNOWN"


@pytest_twisted.ensureDeferred
async def test_errors_carry_cors_headers(server: TestServer) -> None:
    resp = await server.client().get(f"{V3}/capabilities")
    assert resp.code == 401
    assert resp.header("Access-Control-Allow-Origin") == "*"


@pytest_twisted.ensureDeferred
async def test_one_access_log_line_per_request(
        server: TestServer, access_log: list[logging.LogRecord]) -> None:
    async def boom(req: HttpRequest) -> tuple[int, Any]:
        raise RuntimeError("boom")

    server.hs.router.add("GET", "/_test/boom", boom, auth="none")
    client = server.client()
    requests = [
        ("GET", "/_matrix/client/versions", 200),
        ("GET", f"{V3}/capabilities", 401),
        ("GET", f"{V3}/no/such/endpoint", 404),
        ("POST", "/_matrix/client/versions", 405),
        ("OPTIONS", f"{V3}/capabilities", 204),
        ("GET", "/_test/boom", 500),
    ]
    for method, path, code in requests:
        assert (await client.request(method, path)).code == code

    lines = messages(access_log)
    assert len(lines) == len(requests)
    for line, (method, path, code) in zip(lines, requests, strict=True):
        assert f" {method} {path} {code} " in line


# --- path parameters and methods ----------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_path_parameters_are_url_decoded(server: TestServer) -> None:
    alice = await server.register("alice")
    assert alice.user_id == "@alice:test.local"
    await alice.put(f"{V3}/profile/%40alice%3Atest.local/displayname", {"displayname": "Al"})
    for path in (f"{V3}/profile/@alice:test.local/displayname",
                 f"{V3}/profile/%40alice%3Atest.local/displayname",
                 f"{V3}/profile/%40alice%3atest%2elocal/displayname"):
        resp = await server.client().get(path)
        assert (resp.code, resp.body) == (200, {"displayname": "Al"}), path


@pytest_twisted.ensureDeferred
async def test_encoded_slash_stays_inside_its_parameter(server: TestServer) -> None:
    seen: list[str] = []

    async def echo(req: HttpRequest) -> tuple[int, Any]:
        seen.append(req.params["thing"])
        return 200, {"thing": req.params["thing"]}

    server.hs.router.add("GET", "/_test/echo/{thing}/end", echo, auth="none")
    resp = await server.client().get("/_test/echo/a%2Fb%20c%E2%98%83/end")
    assert (resp.code, resp.body) == (200, {"thing": "a/b c\u2603"})
    # a raw slash is a different path
    assert (await server.client().get("/_test/echo/a/b/end")).code == 404


@pytest_twisted.ensureDeferred
async def test_path_parameter_that_is_not_utf8_is_400(server: TestServer) -> None:
    resp = await server.client().get(f"{V3}/profile/%40al%FFice%3Atest.local/displayname")
    assert resp.code == 400
    assert resp.body["errcode"] == "M_INVALID_PARAM"


@pytest_twisted.ensureDeferred
async def test_head_is_answered_like_get_without_a_body(server: TestServer) -> None:
    resp = await server.client().request("HEAD", "/_matrix/client/versions")
    assert resp.code == 200
    assert resp.body is None


@pytest_twisted.ensureDeferred
async def test_success_responses_are_json_and_not_cached(server: TestServer) -> None:
    resp = await server.client().get("/_matrix/client/versions")
    assert resp.header("Content-Type") == "application/json"
    assert "no-store" in (resp.header("Cache-Control") or "")
