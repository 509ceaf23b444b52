"""matrix-nio uploads, downloads and thumbnails media on our server."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import nio
import pytest_twisted
from PIL import Image

from tests.harness import TestServer
from tests.interop.test_nio import call, new_client


@pytest_twisted.async_yield_fixture
async def clients(server: TestServer) -> AsyncIterator[list[nio.AsyncClient]]:
    made: list[nio.AsyncClient] = []
    yield made
    for client in made:
        await call(client.close())


@pytest_twisted.ensureDeferred
async def test_nio_uploads_downloads_and_thumbnails(server: TestServer,
                                                   clients: list[Any]) -> None:
    alice = await server.register("alice")
    client = new_client(server, clients, alice.user_id or "")
    client.access_token = alice.access_token
    client.user_id = alice.user_id
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (0, 200, 0)).save(buf, "JPEG")
    data = buf.getvalue()

    uploaded, _ = await call(client.upload(io.BytesIO(data), content_type="image/jpeg",
                                           filename="green.jpg", filesize=len(data)))
    assert isinstance(uploaded, nio.UploadResponse), uploaded

    downloaded = await call(client.download(uploaded.content_uri))
    assert isinstance(downloaded, nio.MemoryDownloadResponse), downloaded
    assert downloaded.body == data
    assert downloaded.content_type == "image/jpeg"
    assert downloaded.filename == "green.jpg"

    _, server_name, media_id = uploaded.content_uri.rsplit("/", 2)
    thumb = await call(client.thumbnail(server_name, media_id, 96, 96,
                                        nio.api.ResizingMethod.crop))
    assert isinstance(thumb, nio.ThumbnailResponse), thumb
    assert thumb.content_type == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.body)).size == (96, 96)
