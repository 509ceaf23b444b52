"""Media copies in an S3-compatible object store, against a real S3 API server
(moto's, started here), configured as synapse-s3-storage-provider is."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import pytest_twisted
from moto.server import ThreadedMotoServer
from twisted.internet import reactor, task, threads

from tests.federation.harness import free_port
from tests.harness import TestServer
from tests.media.test_media import V1, media_id, png, upload

CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing",
               "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


_buckets = iter(range(1_000_000))


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


async def new_bucket(endpoint: str) -> str:
    name = f"media-{next(_buckets)}"
    await threads.deferToThread(s3_client(endpoint).create_bucket, Bucket=name)
    return name


async def keys(endpoint: str, bucket: str) -> list[str]:
    answer = await threads.deferToThread(s3_client(endpoint).list_objects_v2, Bucket=bucket)
    return sorted(obj["Key"] for obj in answer.get("Contents", []))


def local_file(server: TestServer, mid: str) -> str:
    return os.path.join(server.hs.media_repository.base_dir, "local_content", mid[:2],
                        mid[2:4], mid[4:])


def synapse_entry(endpoint: str, bucket: str, **flags: Any) -> dict[str, Any]:
    """An entry as synapse-s3-storage-provider's README writes it."""
    return {"module": "s3_storage_provider.S3StorageProviderBackend", **flags,
            "config": {"bucket": bucket, "endpoint_url": endpoint, **CREDENTIALS}}


async def eventually(check: Any, timeout: float = 10.0) -> Any:
    waited = 0.0
    while True:
        result = await check()
        if result:
            return result
        if waited > timeout:
            raise AssertionError("not reached in time")
        await task.deferLater(reactor, 0.05, lambda: None)
        waited += 0.05


@pytest_twisted.ensureDeferred
async def test_uploads_and_thumbnails_are_copied_and_served_back_from_the_bucket(
        make_server: Any, s3_endpoint: str) -> None:
    bucket = await new_bucket(s3_endpoint)
    server: TestServer = await make_server(media_storage_providers=[synapse_entry(
        s3_endpoint, bucket, store_local=True, store_remote=True, store_synchronous=True)])
    alice = await server.register("alice")
    data = png()
    resp = await upload(alice, data, filename="cat.png")
    assert resp.code == 200, resp.body
    mid = media_id(resp.body["content_uri"])
    # the copy is there when the upload is answered (store_synchronous)
    stored = await keys(s3_endpoint, bucket)
    assert f"local_content/{mid[:2]}/{mid[2:4]}/{mid[4:]}" in stored
    # the thumbnails, made after the upload, follow
    await eventually(lambda: _has_thumbnails(s3_endpoint, bucket, mid))

    # this node's disk loses the file (thumbnails may still be being written
    # beside it: only the original goes): the bucket still has it
    os.remove(local_file(server, mid))
    got = await alice.get(f"{V1}/download/test.local/{mid}")
    assert got.code == 200 and got.body == data
    thumb = await alice.get(f"{V1}/thumbnail/test.local/{mid}",
                            params={"width": "32", "height": "32", "method": "scale"})
    assert thumb.code == 200 and thumb.header("content-type") == "image/png"


async def _has_thumbnails(endpoint: str, bucket: str, mid: str) -> bool:
    return any(k.startswith(f"local_thumbnails/{mid[:2]}/{mid[2:4]}/{mid[4:]}/")
               for k in await keys(endpoint, bucket))


@pytest_twisted.ensureDeferred
async def test_synapse_defaults_only_read_from_the_bucket(make_server: Any,
                                                          s3_endpoint: str) -> None:
    # synapse-s3-storage-provider without store_local: a source to read
    # from (media moved there by its upload script), never written
    bucket = await new_bucket(s3_endpoint)
    server: TestServer = await make_server(
        media_storage_providers=[synapse_entry(s3_endpoint, bucket)])
    alice = await server.register("alice")
    resp = await upload(alice, png())
    assert resp.code == 200
    mid = media_id(resp.body["content_uri"])
    assert await keys(s3_endpoint, bucket) == []
    # what an operator's offload script put there is served once the disk lost it
    path = f"local_content/{mid[:2]}/{mid[2:4]}/{mid[4:]}"
    await threads.deferToThread(s3_client(s3_endpoint).put_object, Bucket=bucket, Key=path,
                                Body=b"offloaded bytes")
    os.remove(local_file(server, mid))
    got = await alice.get(f"{V1}/download/test.local/{mid}")
    assert got.code == 200 and got.body == b"offloaded bytes"


@pytest_twisted.ensureDeferred
async def test_an_unreachable_bucket_does_not_fail_uploads(make_server: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server: TestServer = await make_server(media_storage_providers=[{
        "type": "s3", "bucket": "nowhere", "endpoint_url": dead, **CREDENTIALS}])
    alice = await server.register("alice")
    data = png()
    resp = await upload(alice, data)
    assert resp.code == 200
    got = await alice.get(f"{V1}/download/test.local/{media_id(resp.body['content_uri'])}")
    assert got.code == 200 and got.body == data


@pytest.mark.parametrize("entry,named", [
    ({"module": "some_other.Provider", "config": {"bucket": "b"}}, "module"),
    ({"module": "s3_storage_provider.S3StorageProviderBackend", "config": {}},
     "config.bucket"),
    ({"type": "gcs"}, "type"),
])
def test_bad_provider_entries_name_what_is_wrong(entry: dict[str, Any], named: str) -> None:
    from homeserver.media.storage_providers import build_providers
    with pytest.raises(ValueError, match=rf"media_storage_providers\[0\]\.{named}"):
        build_providers(reactor, [entry])
