"""The web client's files at / of the client listener (http/webclient.py).

Each test serves a small bundle laid out as Vite writes one (index.html,
hashed files under assets/) from tmp_path, next to a file outside it that
no path may reach.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import pytest_twisted

from tests.harness import Response, TestServer

INDEX = b"<!doctype html><title>client</title><script type=module src=/assets/app-1a2b3c.js>"
APP_JS = b"console.log('hello');\n" * 200  # large enough to be worth compressing
SECRET = b"not for the web"


def make_bundle(tmp_path: Path) -> str:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "assets" / "app-1a2b3c.js").write_bytes(APP_JS)
    (root / "assets" / "style-9f8e7d.css").write_bytes(b"body{margin:0}")
    (root / "assets" / "crypto-aa11.wasm").write_bytes(b"\0asm\1\0\0\0")
    (root / "favicon.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / ".env").write_bytes(SECRET)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.txt", root / "assets" / "linked.txt")
    return str(root)


async def serve(make_server: Any, tmp_path: Path) -> TestServer:
    return await make_server(web_client={"enabled": True, "path": make_bundle(tmp_path)})


async def get(server: TestServer, path: str, **kw: Any) -> Response:
    return await server.client().get(path, **kw)


@pytest_twisted.ensureDeferred
async def test_root_serves_index_html_revalidated_with_a_strict_policy(
        make_server: Any, tmp_path: Path) -> None:
    server = await serve(make_server, tmp_path)
    resp = await get(server, "/")
    assert resp.code == 200
    assert resp.body == INDEX
    assert resp.header("content-type") == "text/html; charset=utf-8"
    assert resp.header("cache-control") == "no-cache"
    assert resp.header("etag")
    policy = resp.header("content-security-policy") or ""
    assert "script-src 'self' 'wasm-unsafe-eval'" in policy
    assert "frame-ancestors 'none'" in policy


@pytest_twisted.ensureDeferred
async def test_client_routes_fall_back_to_index_html(make_server: Any, tmp_path: Path) -> None:
    server = await serve(make_server, tmp_path)
    for path in ("/login", "/room/%21abc%3Atest.local", "/rooms/deep/link"):
        resp = await get(server, path)
        assert (resp.code, resp.body) == (200, INDEX), path


@pytest_twisted.ensureDeferred
async def test_hashed_assets_are_cached_for_a_year_with_their_types(
        make_server: Any, tmp_path: Path) -> None:
    server = await serve(make_server, tmp_path)
    for path, content_type in (("/assets/app-1a2b3c.js", "text/javascript; charset=utf-8"),
                               ("/assets/style-9f8e7d.css", "text/css; charset=utf-8"),
                               ("/assets/crypto-aa11.wasm", "application/wasm")):
        resp = await get(server, path)
        assert resp.code == 200, path
        assert resp.header("content-type") == content_type
        assert resp.header("cache-control") == "public, max-age=31536000, immutable"
        assert resp.header("x-content-type-options") == "nosniff"
    icon = await get(server, "/favicon.svg")
    assert icon.header("content-type") == "image/svg+xml"
    assert icon.header("cache-control") == "no-cache"


@pytest_twisted.ensureDeferred
async def test_a_missing_file_is_404_not_the_index(make_server: Any, tmp_path: Path) -> None:
    server = await serve(make_server, tmp_path)
    resp = await get(server, "/assets/app-000000.js")
    assert resp.code == 404
    assert resp.body != INDEX


@pytest_twisted.ensureDeferred
async def test_no_path_reaches_outside_the_bundle_or_its_dotfiles(
        make_server: Any, tmp_path: Path) -> None:
    server = await serve(make_server, tmp_path)
    for path in ("/..%2fsecret.txt", "/%2e%2e/secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt",
                 "/assets/..%5c..%5csecret.txt", "/.env", "/assets/linked.txt",
                 "/%00index.html", "/%ff"):
        resp = await get(server, path)
        assert resp.code == 404, path
        assert resp.body != SECRET and SECRET not in (resp.body or b""), path


@pytest_twisted.ensureDeferred
async def test_the_api_paths_are_never_shadowed(make_server: Any, tmp_path: Path) -> None:
    root = make_bundle(tmp_path)
    # a bundle that happens to hold files under the API's names
    for name in ("_matrix", "_synapse", ".well-known"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    Path(root, "health").write_bytes(b"from the bundle")
    server = await make_server(web_client={"enabled": True, "path": root})
    versions = await get(server, "/_matrix/client/versions")
    assert versions.code == 200 and "versions" in versions.body
    unknown = await get(server, "/_matrix/client/v3/no_such_endpoint")
    assert unknown.code == 404 and unknown.body["errcode"] == "M_UNRECOGNIZED"
    synapse = await get(server, "/_synapse/no_such_thing")
    assert synapse.code == 404 and synapse.body["errcode"] == "M_UNRECOGNIZED"
    wellknown = await get(server, "/.well-known/matrix/client")
    assert wellknown.code == 200 and "m.homeserver" in wellknown.body
    health = await get(server, "/health")
    assert (health.code, health.body) == (200, b"OK")


@pytest_twisted.ensureDeferred
async def test_revalidation_and_gzip(make_server: Any, tmp_path: Path) -> None:
    server = await serve(make_server, tmp_path)
    first = await get(server, "/assets/app-1a2b3c.js")
    etag = first.header("etag") or ""
    again = await get(server, "/assets/app-1a2b3c.js", headers={"If-None-Match": etag})
    assert again.code == 304
    # a plain Agent: treq would decode the gzip itself
    from twisted.internet import reactor
    from twisted.web.client import Agent, readBody
    from twisted.web.http_headers import Headers

    url = (server.base_url + "/assets/app-1a2b3c.js").encode("ascii")
    zipped = await Agent(reactor).request(b"GET", url, Headers({b"Accept-Encoding": [b"gzip"]}))
    assert zipped.headers.getRawHeaders(b"content-encoding") == [b"gzip"]
    body = await readBody(zipped)
    assert len(body) < len(APP_JS)
    assert gzip.decompress(body) == APP_JS


@pytest_twisted.ensureDeferred
async def test_a_rebuilt_file_is_served_without_a_restart(
        make_server: Any, tmp_path: Path) -> None:
    server = await serve(make_server, tmp_path)
    assert (await get(server, "/")).body == INDEX
    index = tmp_path / "dist" / "index.html"
    index.write_bytes(INDEX + b"<!-- rebuilt -->")
    os.utime(index, ns=(0, 10**18))
    assert (await get(server, "/")).body == INDEX + b"<!-- rebuilt -->"


@pytest_twisted.ensureDeferred
async def test_an_unbuilt_client_says_how_to_build_it(make_server: Any, tmp_path: Path) -> None:
    empty = tmp_path / "nothing-built"
    empty.mkdir()
    server = await make_server(web_client={"enabled": True, "path": str(empty)})
    resp = await get(server, "/")
    assert resp.code == 404
    assert b"make webclient" in resp.body
    assert (await get(server, "/_matrix/client/versions")).code == 200


@pytest_twisted.ensureDeferred
async def test_disabled_by_default(make_server: Any, tmp_path: Path) -> None:
    make_bundle(tmp_path)
    server = await make_server()
    resp = await get(server, "/")
    assert resp.code == 404
    assert resp.body["errcode"] == "M_UNRECOGNIZED"
