"""The media repository over real HTTP: uploads, downloads, thumbnails, safety headers."""

from __future__ import annotations

import io
from typing import Any

import pytest
import pytest_twisted
from PIL import Image
from twisted.internet import reactor, ssl
from twisted.web.server import Site
from twisted.web.static import Data

from tests.federation.ca import make_test_ca
from tests.harness import TestServer

UPLOAD = "/_matrix/media/v3/upload"
V1 = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"


def png(width: int = 400, height: int = 300) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


async def upload(client: Any, data: bytes, content_type: str = "image/png",
                 filename: str | None = None) -> Any:
    params = {"filename": filename} if filename is not None else None
    return await client.post(UPLOAD, raw=data, headers={"Content-Type": content_type},
                             params=params)


def media_id(uri: str) -> str:
    assert uri.startswith("mxc://test.local/")
    return uri.rsplit("/", 1)[1]


@pytest_twisted.ensureDeferred
async def test_uploaded_image_downloads_as_uploaded(server: TestServer) -> None:
    alice = await server.register("alice")
    data = png()
    resp = await upload(alice, data, filename="cat.png")
    assert resp.code == 200
    mid = media_id(resp.body["content_uri"])

    got = await alice.get(f"{V1}/download/test.local/{mid}")

    assert got.code == 200
    assert got.body == data
    assert got.header("content-type") == "image/png"
    assert got.header("content-disposition") == "inline; filename=cat.png"
    assert got.header("x-content-type-options") == "nosniff"
    assert got.header("cross-origin-resource-policy") == "cross-origin"
    assert "sandbox" in (got.header("content-security-policy") or "")


@pytest_twisted.ensureDeferred
async def test_authenticated_download_needs_a_token(server: TestServer) -> None:
    alice = await server.register("alice")
    mid = media_id((await upload(alice, png())).body["content_uri"])

    resp = await server.client().get(f"{V1}/download/test.local/{mid}")

    assert resp.code == 401


@pytest_twisted.ensureDeferred
async def test_legacy_download_refuses_media_uploaded_with_authenticated_media(
        server: TestServer) -> None:
    alice = await server.register("alice")
    mid = media_id((await upload(alice, png())).body["content_uri"])

    resp = await server.client().get(f"{LEGACY}/download/test.local/{mid}")
    thumb = await server.client().get(f"{LEGACY}/thumbnail/test.local/{mid}",
                                      params={"width": "32", "height": "32"})

    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    assert thumb.code == 404


@pytest_twisted.ensureDeferred
async def test_legacy_download_serves_media_when_authenticated_media_is_off(
        make_server: Any) -> None:
    server = await make_server(enable_authenticated_media=False)
    alice = await server.register("alice")
    data = b"hello world"
    mid = media_id((await upload(alice, data, "text/plain", "a.txt")).body["content_uri"])

    resp = await server.client().get(f"{LEGACY}/download/test.local/{mid}/other.txt")

    assert (resp.code, resp.body) == (200, data)
    assert resp.header("content-type") == "text/plain; charset=utf-8"
    assert resp.header("content-disposition") == "inline; filename=other.txt"


@pytest_twisted.ensureDeferred
async def test_thumbnail_scale_and_crop(server: TestServer) -> None:
    alice = await server.register("alice")
    mid = media_id((await upload(alice, png(400, 300))).body["content_uri"])

    crop = await alice.get(f"{V1}/thumbnail/test.local/{mid}",
                           params={"width": "32", "height": "32", "method": "crop"})
    scale = await alice.get(f"{V1}/thumbnail/test.local/{mid}",
                            params={"width": "100", "height": "100", "method": "scale"})

    assert crop.code == 200 and crop.header("content-type") == "image/png"
    assert Image.open(io.BytesIO(crop.body)).size == (32, 32)
    assert scale.code == 200
    # the closest common size covering 100x100 is 320x240, aspect kept
    assert Image.open(io.BytesIO(scale.body)).size == (320, 240)


@pytest_twisted.ensureDeferred
async def test_dynamic_thumbnails_are_made_at_the_asked_size(make_server: Any) -> None:
    server = await make_server(dynamic_thumbnails=True)
    alice = await server.register("alice")
    mid = media_id((await upload(alice, png(400, 300))).body["content_uri"])

    resp = await alice.get(f"{V1}/thumbnail/test.local/{mid}",
                           params={"width": "50", "height": "70", "method": "crop"})

    assert Image.open(io.BytesIO(resp.body)).size == (50, 70)


@pytest_twisted.ensureDeferred
async def test_mislabelled_upload_is_served_as_uploaded_but_not_thumbnailed(
        server: TestServer) -> None:
    alice = await server.register("alice")
    mid = media_id((await upload(alice, b"<script>alert(1)</script>", "image/png",
                                 "x.png")).body["content_uri"])

    thumb = await alice.get(f"{V1}/thumbnail/test.local/{mid}",
                            params={"width": "32", "height": "32"})
    got = await alice.get(f"{V1}/download/test.local/{mid}")

    assert thumb.code == 400 and thumb.body["errcode"] == "M_UNKNOWN"
    assert got.body == b"<script>alert(1)</script>"
    assert got.header("x-content-type-options") == "nosniff"


@pytest_twisted.ensureDeferred
async def test_unsafe_types_are_attachments(server: TestServer) -> None:
    alice = await server.register("alice")
    mid = media_id((await upload(alice, b"<html><script>x</script></html>", "text/html",
                                 "page.html")).body["content_uri"])

    got = await alice.get(f"{V1}/download/test.local/{mid}")

    assert got.header("content-disposition") == "attachment; filename=page.html"


@pytest_twisted.ensureDeferred
async def test_odd_filenames_are_rfc5987_encoded(server: TestServer) -> None:
    alice = await server.register("alice")
    name = 'ünï "quoted"; x=1\r\n.txt'
    mid = media_id((await upload(alice, b"x", "text/plain", name)).body["content_uri"])

    got = await alice.get(f"{V1}/download/test.local/{mid}")

    assert got.header("content-disposition") == (
        "inline; filename*=utf-8''%C3%BCn%C3%AF%20%22quoted%22%3B%20x%3D1%0D%0A.txt")


@pytest_twisted.ensureDeferred
async def test_zero_byte_upload_is_allowed(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await upload(alice, b"", "application/octet-stream")
    mid = media_id(resp.body["content_uri"])

    got = await alice.get(f"{V1}/download/test.local/{mid}")

    assert got.code == 200
    assert got.body is None  # the harness's reading of an empty body


@pytest_twisted.ensureDeferred
async def test_oversize_upload_is_refused(make_server: Any) -> None:
    server = await make_server(max_upload_size=1000)
    alice = await server.register("alice")

    resp = await upload(alice, b"x" * 1001, "application/octet-stream")
    config = await alice.get(f"{V1}/config")

    assert (resp.code, resp.body["errcode"]) == (413, "M_TOO_LARGE")
    assert config.body == {"m.upload.size": 1000}


@pytest_twisted.ensureDeferred
async def test_unknown_media_is_not_found(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(f"{V1}/download/test.local/doesnotexist")
    bad = await alice.get(f"{V1}/download/test.local/..%2F..%2Fetc")
    assert (resp.code, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    assert bad.code == 404


@pytest_twisted.ensureDeferred
async def test_asynchronous_upload(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    created = await alice.post("/_matrix/media/v1/create", {})
    assert created.code == 200
    uri = created.body["content_uri"]
    mid = media_id(uri)
    assert created.body["unused_expires_at"] > 0

    waiting = await alice.get(f"{V1}/download/test.local/{mid}", params={"timeout_ms": "50"})
    assert (waiting.code, waiting.body["errcode"]) == (504, "M_NOT_YET_UPLOADED")

    by_bob = await bob.put(f"{LEGACY}/upload/test.local/{mid}", raw=b"data",
                           headers={"Content-Type": "text/plain"})
    assert by_bob.code == 403

    # a download waiting for the upload is answered when it lands
    from twisted.internet import defer
    pending = defer.ensureDeferred(alice.get(f"{V1}/download/test.local/{mid}",
                                             params={"timeout_ms": "10000"}))
    put = await alice.put(f"{LEGACY}/upload/test.local/{mid}", raw=b"data",
                          headers={"Content-Type": "text/plain"})
    assert (put.code, put.body) == (200, {})
    got = await pending
    assert (got.code, got.body) == (200, b"data")

    again = await alice.put(f"{LEGACY}/upload/test.local/{mid}", raw=b"other",
                            headers={"Content-Type": "text/plain"})
    assert (again.code, again.body["errcode"]) == (409, "M_CANNOT_OVERWRITE_MEDIA")


@pytest_twisted.ensureDeferred
async def test_pending_uploads_are_limited(make_server: Any) -> None:
    server = await make_server(max_pending_media_uploads=2)
    alice = await server.register("alice")
    codes = [(await alice.post("/_matrix/media/v1/create", {})).code for _ in range(3)]
    assert codes == [200, 200, 429]


@pytest_twisted.ensureDeferred
async def test_url_preview_is_off_by_default(server: TestServer) -> None:
    alice = await server.register("alice")
    resp = await alice.get(f"{V1}/preview_url", params={"url": "https://example.org/"})
    assert resp.code == 404


@pytest_twisted.ensureDeferred
async def test_url_preview_never_reaches_private_addresses(make_server: Any) -> None:
    server = await make_server(url_preview_enabled=True)
    alice = await server.register("alice")
    # our own listener on loopback: a private address, blocked even by name
    port = server.hs.ports[0].getHost().port
    literal = await alice.get(f"{V1}/preview_url",
                              params={"url": f"http://127.0.0.1:{port}/_matrix/client/versions"})
    by_name = await alice.get(f"{V1}/preview_url",
                              params={"url": f"http://localhost:{port}/"})
    assert literal.code == 403
    assert by_name.code in (502, 403)


@pytest_twisted.ensureDeferred
async def test_url_preview_reads_opengraph_from_an_allowed_host(make_server: Any) -> None:
    server = await make_server(url_preview_enabled=True, enable_authenticated_media=False,
                               url_preview_ip_range_whitelist=["127.0.0.1/32"])
    alice = await server.register("alice")
    # a page served by our own legacy media endpoint is a web page like any other
    html = (b"<html><head><title>Fallback</title><meta property='og:title' content='Hi &amp; "
            b"bye'><meta name='description' content='A page'></head></html>")
    mid = media_id((await upload(alice, html, "text/html")).body["content_uri"])
    port = server.hs.ports[0].getHost().port
    url = f"http://127.0.0.1:{port}/_matrix/media/v3/download/test.local/{mid}"

    resp = await alice.get(f"{V1}/preview_url", params={"url": url})

    assert resp.code == 200
    assert resp.body == {"og:title": "Hi & bye", "og:description": "A page"}


@pytest_twisted.ensureDeferred
async def test_images_over_max_image_pixels_are_not_thumbnailed(make_server: Any) -> None:
    server = await make_server(max_image_pixels=10_000)
    alice = await server.register("alice")
    mid = media_id((await upload(alice, png(200, 200))).body["content_uri"])

    resp = await alice.get(f"{V1}/thumbnail/test.local/{mid}",
                           params={"width": "32", "height": "32", "method": "crop"})

    assert resp.code == 400


@pytest_twisted.ensureDeferred
async def test_animated_thumbnail_of_a_gif_is_animated_webp(make_server: Any) -> None:
    server = await make_server()
    alice = await server.register("alice")
    frames = [Image.new("RGB", (100, 100), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    mid = media_id((await upload(alice, buf.getvalue(), "image/gif")).body["content_uri"])

    moving = await alice.get(f"{V1}/thumbnail/test.local/{mid}",
                             params={"width": "32", "height": "32", "method": "crop",
                                     "animated": "true"})
    still = await alice.get(f"{V1}/thumbnail/test.local/{mid}",
                            params={"width": "32", "height": "32", "method": "crop"})

    assert moving.header("content-type") == "image/webp"
    assert getattr(Image.open(io.BytesIO(moving.body)), "n_frames", 1) == 2
    assert still.header("content-type") == "image/png"


@pytest.mark.parametrize("insecure", [False, True])
@pytest_twisted.ensureDeferred
async def test_url_preview_checks_certificates_unless_the_test_only_key_is_on(
        make_server: Any, tmp_path: Any, insecure: bool) -> None:
    # a page on HTTPS with a certificate from a CA the system does not trust
    ca = make_test_ca(str(tmp_path / "ca"))
    cert_path, key_path = ca.issue("page", ips=("127.0.0.1",))
    page = Data(b"<html><head><meta property='og:title' content='Secret page'></head></html>",
                "text/html")
    page.isLeaf = True
    port = reactor.listenSSL(0, Site(page),  # type: ignore[attr-defined]
                             ssl.DefaultOpenSSLContextFactory(key_path, cert_path),
                             interface="127.0.0.1")
    try:
        server = await make_server(url_preview_enabled=True,
                                   url_preview_ip_range_whitelist=["127.0.0.1/32"],
                                   use_insecure_ssl_client_just_for_testing_do_not_use=insecure)
        alice = await server.register("alice")
        url = f"https://127.0.0.1:{port.getHost().port}/"

        resp = await alice.get(f"{V1}/preview_url", params={"url": url})

        if insecure:
            assert (resp.code, resp.body) == (200, {"og:title": "Secret page"})
        else:
            assert resp.code != 200 and "errcode" in resp.body
    finally:
        await port.stopListening()
