"""Where media bytes live: the storage-provider interface and its providers.

A provider stores and fetches whole files by a relative path such as
``local_content/ab/cd/efgh...`` (paths are made by ``media/paths.py`` from
IDs we generate or have validated, so they never climb out of the store).
The local-disk provider under ``media_store_path`` is always the primary
store; ``media_storage_providers`` adds copies elsewhere (S3-compatible
object stores), written after each local write and read from when the local
file is missing (say, a fresh node behind a shared bucket), as Synapse's
storage providers do.

Blocking file and network I/O runs in the reactor's thread pool. Local
files are the owner's only (directories 0700, files 0600): media in private
rooms is no business of other accounts on the host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from typing import Any, Protocol

from twisted.internet import threads

logger = logging.getLogger(__name__)


class StorageProvider(Protocol):
    """A place to keep media files."""

    async def store(self, path: str, data: bytes) -> None: ...

    async def fetch(self, path: str) -> bytes | None:
        """The file's bytes, or None if this provider does not have it."""
        ...


class LocalStorageProvider:
    """Files on local disk under one directory."""

    def __init__(self, reactor: Any, base_dir: str) -> None:
        self.reactor = reactor
        self.base_dir = os.path.abspath(base_dir)
        # a store an older version made 0755: closing the top closes it all
        try:
            if os.stat(self.base_dir).st_mode & 0o077:
                os.chmod(self.base_dir, 0o700)
        except FileNotFoundError:
            pass
        except PermissionError:
            logger.warning("could not make the media store %s private (mode 0700)",
                           self.base_dir)

    def _full(self, path: str) -> str:
        full = os.path.abspath(os.path.join(self.base_dir, path))
        if not full.startswith(self.base_dir + os.sep):
            raise ValueError(f"media path escapes the store: {path!r}")
        return full

    async def store(self, path: str, data: bytes) -> None:
        full = self._full(path)

        def write() -> None:
            _make_private_dirs(self.base_dir, os.path.dirname(full))
            # write then rename: a reader never sees half a file, and two
            # writers of one path (a thumbnail generated on upload and on
            # request at once) each rename their own temporary file
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(full),
                                       prefix=os.path.basename(full) + ".tmp")
            try:
                # mkstemp made it 0600, which is what we want
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, full)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), write)

    async def fetch(self, path: str) -> bytes | None:
        full = self._full(path)

        def read() -> bytes | None:
            try:
                with open(full, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None
        return await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                               read)


    async def delete(self, path: str) -> None:
        """Remove a file, or a directory and everything under it; nothing
        there is fine."""
        full = self._full(path)

        def remove() -> None:
            if os.path.isdir(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(full)
        await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), remove)


def _make_private_dirs(base_dir: str, path: str) -> None:
    """``os.makedirs(path)`` with every directory it creates, from
    ``base_dir`` down, 0700 (makedirs gives ``mode`` only to the last one)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if path != base_dir:
        _make_private_dirs(base_dir, parent)
    else:  # above the store: not ours to restrict
        os.makedirs(parent, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another writer made it first
        os.mkdir(path, 0o700)


class S3StorageProvider:
    """An S3-compatible object store (AWS, MinIO, Ceph...), through boto3.

    boto3 is not a dependency of the homeserver: this provider is available
    only where boto3 is installed, and configuring it elsewhere fails at start.
    """

    def __init__(self, reactor: Any, config: dict[str, Any]) -> None:
        try:
            import boto3  # type: ignore[import-not-found]
        except ImportError:
            raise RuntimeError("media_storage_providers: type s3 needs boto3 installed "
                               "(pip install boto3)") from None
        self.reactor = reactor
        self.bucket = str(config["bucket"])
        self.prefix = str(config.get("prefix") or "")
        self.storage_class = str(config.get("storage_class") or "STANDARD")
        self._client = boto3.client(
            "s3", endpoint_url=config.get("endpoint_url"), region_name=config.get("region_name"),
            aws_access_key_id=config.get("access_key_id"),
            aws_secret_access_key=config.get("secret_access_key"),
            aws_session_token=config.get("session_token"))

    async def store(self, path: str, data: bytes) -> None:
        def put() -> None:
            self._client.put_object(Bucket=self.bucket, Key=self.prefix + path, Body=data,
                                    StorageClass=self.storage_class)
        await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), put)

    async def fetch(self, path: str) -> bytes | None:
        def get() -> bytes | None:
            try:
                obj = self._client.get_object(Bucket=self.bucket, Key=self.prefix + path)
            except self._client.exceptions.NoSuchKey:
                return None
            return bytes(obj["Body"].read())
        return await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                               get)


# Synapse's S3 provider module (synapse-s3-storage-provider): its entries
# carry across unchanged
SYNAPSE_S3_MODULE = "s3_storage_provider.S3StorageProviderBackend"


class ProviderEntry:
    """A provider and what it keeps: Synapse's ``store_local`` (our uploads and
    their thumbnails), ``store_remote`` (copies of other servers' media) and
    ``store_synchronous`` (the upload waits for the copy)."""

    def __init__(self, provider: StorageProvider, store_local: bool = True,
                 store_remote: bool = True, store_synchronous: bool = True) -> None:
        self.provider = provider
        self.store_local = store_local
        self.store_remote = store_remote
        self.store_synchronous = store_synchronous

    def keeps(self, path: str) -> bool:
        if path.startswith(("remote_content", "remote_thumbnails")):
            return self.store_remote
        return self.store_local


def build_providers(reactor: Any, configs: list[dict[str, Any]]) -> list[ProviderEntry]:
    """The extra providers ``media_storage_providers`` names: ours
    (``type: s3`` with the S3 keys beside it) or Synapse's (``module:
    s3_storage_provider.S3StorageProviderBackend`` with them under ``config``)."""
    entries: list[ProviderEntry] = []
    for i, conf in enumerate(configs):
        where = f"media_storage_providers[{i}]"
        if "module" in conf:
            if conf["module"] != SYNAPSE_S3_MODULE:
                raise ValueError(f"{where}.module: unknown provider {conf['module']!r}"
                                 f" (known: {SYNAPSE_S3_MODULE})")
            s3_conf = conf.get("config")
            if not isinstance(s3_conf, dict) or not s3_conf.get("bucket"):
                raise ValueError(f"{where}.config.bucket: must be set")
            # Synapse's defaults for its entries: all three off (a provider
            # only read from unless told to keep copies)
            entries.append(ProviderEntry(
                S3StorageProvider(reactor, s3_conf), bool(conf.get("store_local", False)),
                bool(conf.get("store_remote", False)),
                bool(conf.get("store_synchronous", False))))
        elif conf.get("type") == "s3":
            if not conf.get("bucket"):
                raise ValueError(f"{where}.bucket: must be set")
            entries.append(ProviderEntry(
                S3StorageProvider(reactor, conf), bool(conf.get("store_local", True)),
                bool(conf.get("store_remote", True)),
                bool(conf.get("store_synchronous", True))))
        else:
            raise ValueError(f"{where}.type: unknown provider {conf.get('type')!r}")
    return entries


class MediaStorage:
    """The primary local store plus the extra providers, as one."""

    def __init__(self, local: LocalStorageProvider, extra: list[ProviderEntry],
                 run_in_background: Any = None) -> None:
        self.local = local
        self.extra = extra
        # for copies the writer does not wait for (store_synchronous: false)
        self._background = run_in_background

    async def store(self, path: str, data: bytes) -> None:
        await self.local.store(path, data)
        for entry in self.extra:
            if not entry.keeps(path):
                continue
            if entry.store_synchronous or self._background is None:
                await self._copy(entry, path, data)
            else:
                self._background(self._copy(entry, path, data))

    @staticmethod
    async def _copy(entry: ProviderEntry, path: str, data: bytes) -> None:
        try:
            await entry.provider.store(path, data)
        except Exception:
            # the local copy is the one we serve from; a lost copy
            # elsewhere is an operator's problem, not the uploader's
            logger.exception("could not copy %s to a storage provider", path)

    async def fetch(self, path: str) -> bytes | None:
        data = await self.local.fetch(path)
        if data is not None:
            return data
        for entry in self.extra:
            try:
                data = await entry.provider.fetch(path)
            except Exception:
                logger.exception("could not read %s from a storage provider", path)
                continue
            if data is not None:
                # keep a local copy: the next read is a disk read
                await self.local.store(path, data)
                return data
        return None
