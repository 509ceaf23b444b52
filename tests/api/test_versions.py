"""Discovery endpoints a client calls before anything else."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.harness import TestServer


@pytest_twisted.ensureDeferred
async def test_versions_lists_only_v3_era_versions(server: TestServer) -> None:
    resp = await server.client().get("/_matrix/client/versions")
    assert resp.code == 200
    assert "v1.1" in resp.body["versions"]
    assert not any(v.startswith("r0") for v in resp.body["versions"])


@pytest_twisted.ensureDeferred
async def test_wellknown_points_at_public_baseurl(server: TestServer) -> None:
    resp = await server.client().get("/.well-known/matrix/client")
    assert resp.code == 200
    assert resp.body == {"m.homeserver": {"base_url": "http://127.0.0.1/"}}


@pytest_twisted.ensureDeferred
async def test_capabilities_need_a_token(server: TestServer) -> None:
    resp = await server.client().get("/_matrix/client/v3/capabilities")
    assert resp.code == 401
    assert resp.body["errcode"] == "M_MISSING_TOKEN"


@pytest_twisted.ensureDeferred
async def test_capabilities_say_password_change_is_enabled(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get("/_matrix/client/v3/capabilities")
    assert resp.code == 200
    assert resp.body["capabilities"]["m.change_password"] == {"enabled": True}


@pytest_twisted.ensureDeferred
async def test_cors_preflight_is_answered_without_auth(server: TestServer) -> None:
    resp = await server.client().request("OPTIONS", "/_matrix/client/v3/capabilities")
    assert resp.code == 204
    assert resp.header("Access-Control-Allow-Origin") == "*"
    assert "Authorization" in (resp.header("Access-Control-Allow-Headers") or "")


@pytest_twisted.ensureDeferred
async def test_unknown_path_is_404_unrecognized(server: TestServer) -> None:
    resp = await server.client().get("/_matrix/client/v3/no/such/thing")
    assert (resp.code, resp.body["errcode"]) == (404, "M_UNRECOGNIZED")


@pytest_twisted.ensureDeferred
async def test_wrong_method_is_405_unrecognized(server: TestServer) -> None:
    resp = await server.client().post("/_matrix/client/versions", {})
    assert (resp.code, resp.body["errcode"]) == (405, "M_UNRECOGNIZED")


@pytest_twisted.ensureDeferred
async def test_server_wellknown_is_off_unless_configured(server: TestServer) -> None:
    resp = await server.client().get("/.well-known/matrix/server")
    assert resp.code == 404
    assert resp.body["errcode"] == "M_NOT_FOUND"


@pytest_twisted.ensureDeferred
async def test_server_wellknown_sends_federation_to_port_443(make_server: Any) -> None:
    srv = await make_server(serve_server_wellknown=True)
    resp = await srv.client().get("/.well-known/matrix/server")
    assert resp.code == 200
    assert resp.body == {"m.server": f"{srv.hs.config.server_name}:443"}


@pytest_twisted.ensureDeferred
async def test_client_wellknown_carries_extra_content(make_server: Any) -> None:
    extra = {"org.matrix.msc4143.rtc_foci": [{"type": "livekit",
                                              "livekit_service_url": "https://rtc.example"}]}
    srv = await make_server(extra_well_known_client_content=extra)
    resp = await srv.client().get("/.well-known/matrix/client")
    assert resp.code == 200
    assert resp.body["org.matrix.msc4143.rtc_foci"] == extra["org.matrix.msc4143.rtc_foci"]
    assert resp.body["m.homeserver"] == {"base_url": "http://127.0.0.1/"}
