"""Remote media: a user of one server downloads media uploaded on another.

Two of our servers (``localhost:P``, TLS from the test CA); the second
fetches over the signed federation media API, caches, and thumbnails itself.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

import pytest_twisted
from PIL import Image

from tests.federation.harness import server_name
from tests.federation.test_queries import federation_get

V1 = "/_matrix/client/v1/media"


def png(width: int = 400, height: int = 300) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


@pytest_twisted.ensureDeferred
async def test_remote_media_is_fetched_over_federation_and_cached(federation: Any) -> None:
    hs1 = await federation()
    hs2 = await federation()
    alice = await hs1.register("alice")
    bob = await hs2.register("bob")
    data = png()
    up = await alice.post("/_matrix/media/v3/upload", raw=data,
                          headers={"Content-Type": "image/png"},
                          params={"filename": "blue pic.png"})
    uri = up.body["content_uri"]
    origin, mid = uri[len("mxc://"):].split("/")
    assert origin == server_name(hs1)

    got = await bob.get(f"{V1}/download/{quote(origin)}/{mid}")

    assert got.code == 200
    assert got.body == data
    assert got.header("content-type") == "image/png"
    assert got.header("content-disposition") == "inline; filename*=utf-8''blue%20pic.png"

    thumb = await bob.get(f"{V1}/thumbnail/{quote(origin)}/{mid}",
                          params={"width": "32", "height": "32", "method": "crop"})
    assert thumb.code == 200
    assert Image.open(io.BytesIO(thumb.body)).size == (32, 32)

    # cached: served while the origin is away
    await hs1.hs.stop()
    again = await bob.get(f"{V1}/download/{quote(origin)}/{mid}")
    assert (again.code, again.body) == (200, data)


@pytest_twisted.ensureDeferred
async def test_unknown_remote_media_is_not_found(federation: Any) -> None:
    hs1 = await federation()
    hs2 = await federation()
    bob = await hs2.register("bob")

    resp = await bob.get(f"{V1}/download/{quote(server_name(hs1))}/nosuchmedia")

    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_federation_media_needs_a_signed_request(federation: Any, test_ca: Any) -> None:
    hs1 = await federation()
    alice = await hs1.register("alice")
    up = await alice.post("/_matrix/media/v3/upload", raw=b"x",
                          headers={"Content-Type": "text/plain"})
    mid = up.body["content_uri"].rsplit("/", 1)[1]

    resp = await federation_get(hs1, test_ca, f"/_matrix/federation/v1/media/download/{mid}")

    assert resp.code == 401
