"""The media repository: uploads, downloads, thumbnails and remote media.

Design:
- A file is written once under its media ID and never changes, so every
  response is cacheable and nothing needs locking. IDs are 24 random
  letters; the bytes go to ``MediaStorage`` (local disk under
  ``media_store_path``, plus any ``media_storage_providers``), the metadata
  to ``storage/media.py``.
- Asynchronous upload (``/_matrix/media/v1/create``): the ID is reserved for
  ``unused_expiration_time``; one PUT fills it (a second gets 409
  M_CANNOT_OVERWRITE_MEDIA); a download of a reserved ID waits up to
  ``timeout_ms`` (woken in-process when the upload lands) and then answers
  504 M_NOT_YET_UPLOADED.
- Thumbnails: the ``thumbnail_sizes`` are made in the background after an
  upload; a request is served the configured size closest to what it asks
  (``dynamic_thumbnails``: exactly what it asks); a size not made yet is
  made on demand and kept. Pillow runs in a
  thread, behind the ``max_image_pixels`` guard.
- Remote media (``mxc://other.server/...``) is fetched once over federation
  (``remote.py``), cached under a file ID of our own, and thumbnailed here
  like local media. Concurrent requests for the same uncached media share
  one fetch.
- ``enable_authenticated_media``: media uploaded or first fetched while it
  is on is marked ``authenticated`` and the legacy unauthenticated
  endpoints answer 404 for it; media from before the switch stays reachable
  there, as Synapse does.
- Quarantined media (the admin API, ``admin/media.py``) answers 404 to every
  download and thumbnail, local or federation, as if it were not there.
  Each download or thumbnail notes the media's last access in memory; the
  times are written in one batch every ``ACCESS_FLUSH_S`` (deleting old media
  and purging the remote cache go by them).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, threads

from homeserver.errors import Codes, MatrixError
from homeserver.federation.client import RequestFailed
from homeserver.media.remote import RemoteMediaNotFound, RemoteMediaNotYetUploaded
from homeserver.media.storage_providers import (
    LocalStorageProvider,
    MediaStorage,
    build_providers,
)
from homeserver.media.thumbnailer import ThumbnailError, ThumbnailResult, make_thumbnail
from homeserver.storage.media import LocalMedia, MediaStore, RemoteMedia, Thumbnail

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.media.remote import RemoteMediaFetcher
    from homeserver.moderation.gate import ModerationGate

logger = logging.getLogger(__name__)

MEDIA_ID_RE = re.compile(r"[A-Za-z0-9_\-]{1,255}")
# what a server name in an mxc URI may look like (host, [IPv6], optional port)
SERVER_NAME_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]{1,255})(:\d{1,5})?")
DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 120_000
_ALPHABET = string.ascii_letters
ACCESS_FLUSH_S = 10.0


def not_found() -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, "Not found")


@dataclass(frozen=True)
class MediaFile:
    """What a download or thumbnail request is answered with."""

    data: bytes
    media_type: str
    upload_name: str | None


class MediaRepository:
    def __init__(self, ctx: "ServerContext", store: MediaStore,
                 fetcher: "RemoteMediaFetcher") -> None:
        self.ctx = ctx
        config = ctx.config
        self.store = store
        self.fetcher = fetcher
        base = config.media_store_path or "media_store"
        self.base_dir = os.path.join(config.config_dir, base)
        self.storage = MediaStorage(LocalStorageProvider(ctx.reactor, self.base_dir),
                                    build_providers(ctx.reactor, config.media_storage_providers),
                                    ctx.run_in_background)
        self.max_upload_size: int = config.max_upload_size
        self.max_image_pixels: int = config.max_image_pixels
        self.dynamic_thumbnails: bool = config.dynamic_thumbnails
        self.thumbnail_sizes: list[dict[str, Any]] = config.thumbnail_sizes
        self.authenticated_only: bool = config.enable_authenticated_media
        # reserved media IDs someone waits on -> their waiters
        self._upload_waiters: dict[str, list[defer.Deferred[None]]] = {}
        # remote media being fetched -> the requests waiting for it
        self._fetching: dict[tuple[str, str], list[defer.Deferred[RemoteMedia]]] = {}
        # last accesses not written yet: local media ID / (origin, media ID) -> ms
        self._accessed_local: dict[str, int] = {}
        self._accessed_remote: dict[tuple[str, str], int] = {}
        self._access_timer: Any = None
        # one flush at a time: a flush that finds nothing noted still waits
        # for one under way, so a caller selecting media by age next sees it
        self._flush_lock = defer.DeferredLock()
        # spam checker modules' check_media_file_for_spam: set by HomeServer._wire_late
        self.gate: "ModerationGate | None" = None

    # -- access times --

    def _note_access(self, origin: str, media_id: str) -> None:
        now = self.ctx.now_ms()
        if origin:
            self._accessed_remote[(origin, media_id)] = now
        else:
            self._accessed_local[media_id] = now
        if self._access_timer is None:
            self._access_timer = self.ctx.clock.callLater(
                ACCESS_FLUSH_S, lambda: self.ctx.run_in_background(self.flush_access_times()))

    async def flush_access_times(self) -> None:
        """Write the noted access times now (the admin API calls it before
        it selects media by age)."""
        if self._access_timer is not None and self._access_timer.active():
            self._access_timer.cancel()
        self._access_timer = None
        await self._flush_lock.acquire()
        try:
            local, remote = self._accessed_local, self._accessed_remote
            if not local and not remote:
                return
            self._accessed_local, self._accessed_remote = {}, {}
            await self.store.record_access(local, remote)
        finally:
            self._flush_lock.release()

    async def stop(self) -> None:
        await self.flush_access_times()

    # -- paths (from validated IDs only) --

    @staticmethod
    def _split(file_id: str) -> str:
        return os.path.join(file_id[0:2], file_id[2:4], file_id[4:])

    def _local_path(self, media_id: str) -> str:
        return os.path.join("local_content", self._split(media_id))

    def _remote_path(self, origin: str, file_id: str) -> str:
        return os.path.join("remote_content", origin.replace(":", "_"), self._split(file_id))

    def _thumbnail_path(self, origin: str, file_id: str, thumb: Thumbnail) -> str:
        where = (os.path.join("local_thumbnails", self._split(file_id)) if not origin else
                 os.path.join("remote_thumbnails", origin.replace(":", "_"),
                              self._split(file_id)))
        subtype = thumb.media_type.split("/")[-1]
        return os.path.join(where, f"{thumb.width}-{thumb.height}-{thumb.method}-{subtype}")

    @staticmethod
    def new_media_id() -> str:
        return "".join(secrets.choice(_ALPHABET) for _ in range(24))

    # -- deletion (the admin API's; the database rows go first) --

    async def delete_local_files(self, media_id: str) -> None:
        """Remove a local file and its thumbnails from the local store (as on
        Synapse, copies in other storage providers stay)."""
        if not MEDIA_ID_RE.fullmatch(media_id):
            return
        await self.storage.local.delete(self._local_path(media_id))
        await self.storage.local.delete(os.path.join("local_thumbnails", self._split(media_id)))

    async def delete_remote_files(self, origin: str, file_id: str) -> None:
        if not MEDIA_ID_RE.fullmatch(file_id):
            return
        await self.storage.local.delete(self._remote_path(origin, file_id))
        await self.storage.local.delete(os.path.join(
            "remote_thumbnails", origin.replace(":", "_"), self._split(file_id)))

    # -- uploads --

    def check_size(self, data: bytes) -> None:
        if len(data) > self.max_upload_size:
            raise MatrixError(413, Codes.TOO_LARGE,
                              f"Upload is over the limit of {self.max_upload_size} bytes")

    async def upload(self, user_id: str, data: bytes, media_type: str,
                     upload_name: str | None) -> str:
        """Store a new file; its ``mxc://`` URI."""
        self.check_size(data)
        if self.gate is not None:
            await self.gate.check_media(user_id, data, media_type, upload_name)
        media_id = self.new_media_id()
        await self.storage.store(self._local_path(media_id), data)
        now = self.ctx.now_ms()
        await self.store.store_local_media(LocalMedia(
            media_id, user_id, now, None, now, media_type, len(data), upload_name,
            self.authenticated_only))
        self._after_upload(media_id, data, media_type)
        return f"mxc://{self.ctx.hostname}/{media_id}"

    async def create(self, user_id: str) -> tuple[str, int]:
        """Reserve a media ID for a later upload: its URI and expiry (ms)."""
        media_id = self.new_media_id()
        now = self.ctx.now_ms()
        expires = now + int(self.ctx.config.unused_expiration_time)
        ok = await self.store.reserve_local_media(media_id, user_id, now, expires,
                                                  int(self.ctx.config.max_pending_media_uploads))
        if not ok:
            raise MatrixError(429, Codes.LIMIT_EXCEEDED,
                              "Too many pending media uploads; upload or wait for them "
                              "to expire", retry_after_ms=60_000)
        return f"mxc://{self.ctx.hostname}/{media_id}", expires

    async def upload_reserved(self, user_id: str, server_name: str, media_id: str, data: bytes,
                              media_type: str, upload_name: str | None) -> None:
        """Fill a media ID reserved with ``create``."""
        if server_name != self.ctx.hostname or not MEDIA_ID_RE.fullmatch(media_id):
            raise not_found()
        media = await self.store.get_local_media(media_id)
        if media is None:
            raise not_found()
        if media.user_id != user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "This media ID was not created by you")
        if media.uploaded_ts is not None:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content")
        if media.expires_ts is not None and media.expires_ts <= self.ctx.now_ms():
            raise not_found()
        self.check_size(data)
        if self.gate is not None:
            await self.gate.check_media(user_id, data, media_type, upload_name)
        await self.storage.store(self._local_path(media_id), data)
        done = await self.store.complete_local_media(media_id, self.ctx.now_ms(), media_type,
                                                     len(data), upload_name,
                                                     self.authenticated_only)
        if not done:
            # a concurrent PUT won; its bytes and ours went to the same path,
            # and both are whole files, but the record is the winner's
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content")
        for waiter in self._upload_waiters.pop(media_id, []):
            if not waiter.called:
                waiter.callback(None)
        self._after_upload(media_id, data, media_type)

    def _after_upload(self, media_id: str, data: bytes, media_type: str) -> None:
        self.ctx.run_in_background(self._make_thumbnails("", media_id, media_id, data,
                                                         media_type))

    async def _make_thumbnails(self, origin: str, media_id: str, file_id: str, data: bytes,
                               media_type: str) -> None:
        for size in self.thumbnail_sizes:
            try:
                await self._generate(origin, media_id, file_id, data, media_type,
                                     size["width"], size["height"], size["method"], False)
            except ThumbnailError as e:
                logger.debug("no thumbnails for %s: %s", media_id, e)
                return

    async def _generate(self, origin: str, media_id: str, file_id: str, data: bytes,
                        media_type: str, width: int, height: int, method: str,
                        animated: bool) -> ThumbnailResult:
        result: ThumbnailResult = await threads.deferToThreadPool(
            self.ctx.reactor, self.ctx.reactor.getThreadPool(), make_thumbnail, data, media_type,
            width, height, method, self.max_image_pixels, animated)
        thumb = Thumbnail(width, height, method, result.media_type, len(result.data))
        await self.storage.store(self._thumbnail_path(origin, file_id, thumb), result.data)
        await self.store.store_thumbnail(origin, media_id, thumb)
        return result

    # -- downloads --

    async def _wait_for_upload(self, media_id: str, timeout_ms: int) -> None:
        d: defer.Deferred[None] = defer.Deferred()
        self._upload_waiters.setdefault(media_id, []).append(d)
        def expire() -> None:
            if not d.called:
                d.callback(None)
        timer = self.ctx.clock.callLater(timeout_ms / 1000, expire)
        try:
            await d
        finally:
            if timer.active():
                timer.cancel()
            waiters = self._upload_waiters.get(media_id)
            if waiters is not None and d in waiters:
                waiters.remove(d)
                if not waiters:
                    del self._upload_waiters[media_id]

    async def _local_media(self, media_id: str, timeout_ms: int) -> LocalMedia:
        if not MEDIA_ID_RE.fullmatch(media_id):
            raise not_found()
        media = await self.store.get_local_media(media_id)
        if media is None:
            raise not_found()
        if media.uploaded_ts is None:
            if media.expires_ts is not None and media.expires_ts <= self.ctx.now_ms():
                raise not_found()
            await self._wait_for_upload(media_id, timeout_ms)
            media = await self.store.get_local_media(media_id)
            if media is None or media.uploaded_ts is None:
                raise MatrixError(504, "M_NOT_YET_UPLOADED",
                                  "The media has not been uploaded yet")
        return media

    async def _read(self, path: str) -> bytes:
        data = await self.storage.fetch(path)
        if data is None:
            logger.warning("media file %s is missing from the store", path)
            raise not_found()
        return data

    async def _resolve(self, server_name: str, media_id: str, *, allow_remote: bool,
                       timeout_ms: int, legacy: bool) -> tuple[str, str, str, str, str | None]:
        """(origin, file_id, path, media_type, upload_name) of any media we can serve."""
        if not MEDIA_ID_RE.fullmatch(media_id) or not SERVER_NAME_RE.fullmatch(server_name):
            raise not_found()
        if server_name == self.ctx.hostname:
            media = await self._local_media(media_id, timeout_ms)
            if (legacy and media.authenticated) or media.quarantined_by is not None:
                raise not_found()
            assert media.media_type is not None
            self._note_access("", media_id)
            return ("", media_id, self._local_path(media_id), media.media_type,
                    media.upload_name)
        remote = await self.store.get_remote_media(server_name, media_id)
        if remote is None:
            if not allow_remote:
                raise not_found()
            if legacy and self.authenticated_only:
                # new remote media is reachable only through the authenticated API
                raise not_found()
            remote = await self._fetch_remote(server_name, media_id, timeout_ms)
        if (legacy and remote.authenticated) or remote.quarantined_by is not None:
            raise not_found()
        self._note_access(server_name, media_id)
        return (server_name, remote.file_id, self._remote_path(server_name, remote.file_id),
                remote.media_type, remote.upload_name)

    async def get_media(self, server_name: str, media_id: str, *, allow_remote: bool = True,
                        timeout_ms: int = DEFAULT_TIMEOUT_MS, legacy: bool = False) -> MediaFile:
        _, _, path, media_type, name = await self._resolve(
            server_name, media_id, allow_remote=allow_remote, timeout_ms=timeout_ms,
            legacy=legacy)
        return MediaFile(await self._read(path), media_type, name)

    async def _fetch_remote(self, origin: str, media_id: str, timeout_ms: int) -> RemoteMedia:
        key = (origin, media_id)
        if key in self._fetching:
            d: defer.Deferred[RemoteMedia] = defer.Deferred()
            self._fetching[key].append(d)
            return await d
        self._fetching[key] = []
        try:
            media = await self._fetch_remote_once(origin, media_id, timeout_ms)
        except BaseException as e:
            for waiter in self._fetching.pop(key, []):
                waiter.errback(e)
            raise
        for waiter in self._fetching.pop(key, []):
            waiter.callback(media)
        return media

    async def _fetch_remote_once(self, origin: str, media_id: str,
                                 timeout_ms: int) -> RemoteMedia:
        try:
            fetched = await self.fetcher.fetch(origin, media_id,
                                               max_size=self.max_upload_size,
                                               timeout_ms=timeout_ms)
        except RemoteMediaNotFound:
            raise not_found() from None
        except RemoteMediaNotYetUploaded:
            raise MatrixError(504, "M_NOT_YET_UPLOADED",
                              "The media has not been uploaded yet") from None
        except RequestFailed as e:
            logger.info("could not fetch mxc://%s/%s: %s", origin, media_id, e)
            raise MatrixError(502, Codes.UNKNOWN,
                              f"Could not fetch the media from {origin}") from None
        file_id = self.new_media_id()
        await self.storage.store(self._remote_path(origin, file_id), fetched.data)
        media = RemoteMedia(origin, media_id, self.ctx.now_ms(), fetched.media_type,
                            len(fetched.data), fetched.upload_name, file_id,
                            self.authenticated_only)
        await self.store.store_remote_media(media)
        # a concurrent process may have cached it first: serve what is recorded
        stored = await self.store.get_remote_media(origin, media_id)
        return stored or media

    # -- thumbnails --

    def _choose(self, candidates: list[Thumbnail], width: int, height: int, method: str,
                animated: bool) -> Thumbnail | None:
        """The stored thumbnail of exactly this box and method, if made already
        (animated ones are webp when the source moves; static ones never are)."""
        exact = [t for t in candidates if t.method == method
                 and (t.width, t.height) == (width, height)]
        if animated:
            # a static one (made at upload) must not answer: the source may move
            exact = [t for t in exact if t.media_type == "image/webp"]
        else:
            exact = [t for t in exact if t.media_type != "image/webp"]
        return exact[0] if exact else None

    def _size_to_make(self, width: int, height: int, method: str) -> tuple[int, int]:
        if self.dynamic_thumbnails:
            return width, height
        sizes = [(s["width"], s["height"]) for s in self.thumbnail_sizes if s["method"] == method]
        if not sizes:
            return width, height
        covering = [s for s in sizes if s[0] >= width and s[1] >= height]
        if covering:
            return min(covering, key=lambda s: s[0] * s[1])
        return max(sizes, key=lambda s: s[0] * s[1])

    async def get_thumbnail(self, server_name: str, media_id: str, width: int, height: int,
                            method: str, *, animated: bool = False, allow_remote: bool = True,
                            timeout_ms: int = DEFAULT_TIMEOUT_MS,
                            legacy: bool = False) -> MediaFile:
        if width < 1 or height < 1 or width * height > self.max_image_pixels:
            raise MatrixError(400, Codes.INVALID_PARAM, "Thumbnail size out of range")
        if method not in ("crop", "scale"):
            raise MatrixError(400, Codes.INVALID_PARAM, "method must be crop or scale")
        origin, file_id, path, media_type, name = await self._resolve(
            server_name, media_id, allow_remote=allow_remote, timeout_ms=timeout_ms,
            legacy=legacy)
        # the configured size closest to the request (Synapse's rule, simplified:
        # the smallest that covers the box, else the biggest), or exactly the
        # request with dynamic_thumbnails or animated
        make_w, make_h = (width, height) if animated else self._size_to_make(width, height,
                                                                              method)
        chosen = self._choose(await self.store.get_thumbnails(origin, media_id), make_w,
                              make_h, method, animated)
        if chosen is not None:
            data = await self.storage.fetch(self._thumbnail_path(origin, file_id, chosen))
            if data is not None:
                return MediaFile(data, chosen.media_type, None)
        source = await self._read(path)
        try:
            result = await self._generate(origin, media_id, file_id, source, media_type,
                                          make_w, make_h, method, animated)
        except ThumbnailError as e:
            logger.info("cannot thumbnail mxc://%s/%s: %s", server_name, media_id, e)
            raise MatrixError(400, Codes.UNKNOWN,
                              "Cannot generate a thumbnail of this media") from None
        return MediaFile(result.data, result.media_type, None)

