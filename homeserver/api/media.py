"""The content repository API: uploads, downloads, thumbnails, config, previews.

Authenticated (``/_matrix/client/v1/media/...``, Matrix 1.11) and legacy
(``/_matrix/media/v3/...`` and ``r0``) endpoints share one repository
(``media/repository.py``); the legacy download and thumbnail take no access
token and, with ``enable_authenticated_media``, do not serve media uploaded
after the switch. Media goes out as raw bytes (``RawResponse``) with the
safety headers of ``media/serving.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import query_bool, query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.resource import RawResponse
from homeserver.http.router import AUTH_NONE, AUTH_REQUIRED, Router
from homeserver.media.preview import UrlPreviewer
from homeserver.media.repository import (
    DEFAULT_TIMEOUT_MS,
    MAX_TIMEOUT_MS,
    MediaFile,
    get_media_repository,
)
from homeserver.media.serving import media_headers, served_content_type

if TYPE_CHECKING:
    from homeserver.server import HomeServer

CLIENT_V1 = "/_matrix/client/v1/media"
LEGACY = ("/_matrix/media/v3", "/_matrix/media/r0")


def _upload_type(req: HttpRequest) -> str:
    value = req.header("Content-Type") or "application/octet-stream"
    if len(value) > 255 or not value.isprintable():
        raise MatrixError(400, Codes.INVALID_PARAM, "Bad Content-Type header")
    return value


def _filename(req: HttpRequest) -> str | None:
    name = query_str(req.args, "filename", None)
    if name is not None and (len(name) > 255 or "\x00" in name):
        raise MatrixError(400, Codes.INVALID_PARAM, "Bad filename")
    return name or None


def _timeout(req: HttpRequest) -> int:
    timeout = query_int(req.args, "timeout_ms", DEFAULT_TIMEOUT_MS)
    return max(0, min(int(timeout), MAX_TIMEOUT_MS))


def _respond(media: MediaFile, filename: str | None = None) -> tuple[int, Any]:
    name = filename if filename is not None else media.upload_name
    return 200, RawResponse(media.data, served_content_type(media.media_type),
                            media_headers(media.media_type, name))


def register_routes(hs: "HomeServer", router: Router) -> None:
    repo = get_media_repository(hs)
    previewer = UrlPreviewer(hs, repo)
    max_upload = int(hs.config.max_upload_size)

    async def post_upload(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/media/v3/upload"""
        data = req.content()
        uri = await repo.upload(req.user_id, data, _upload_type(req), _filename(req))
        return 200, {"content_uri": uri}

    async def post_create(req: HttpRequest) -> tuple[int, Any]:
        """POST /_matrix/media/v1/create"""
        uri, expires = await repo.create(req.user_id)
        return 200, {"content_uri": uri, "unused_expires_at": expires}

    async def put_upload(req: HttpRequest) -> tuple[int, Any]:
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}"""
        data = req.content()
        await repo.upload_reserved(req.user_id, req.params["serverName"],
                                   req.params["mediaId"], data, _upload_type(req),
                                   _filename(req))
        return 200, {}

    def download(legacy: bool) -> Any:
        async def handler(req: HttpRequest) -> tuple[int, Any]:
            """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]"""
            allow_remote = query_bool(req.args, "allow_remote", True) if legacy else True
            media = await repo.get_media(req.params["serverName"], req.params["mediaId"],
                                         allow_remote=allow_remote, timeout_ms=_timeout(req),
                                         legacy=legacy)
            return _respond(media, req.params.get("fileName"))
        return handler

    def thumbnail(legacy: bool) -> Any:
        async def handler(req: HttpRequest) -> tuple[int, Any]:
            """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"""
            allow_remote = query_bool(req.args, "allow_remote", True) if legacy else True
            media = await repo.get_thumbnail(
                req.params["serverName"], req.params["mediaId"],
                query_int(req.args, "width"), query_int(req.args, "height"),
                query_str(req.args, "method", "scale"),
                animated=query_bool(req.args, "animated", False), allow_remote=allow_remote,
                timeout_ms=_timeout(req), legacy=legacy)
            return _respond(media)
        return handler

    async def get_config(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/client/v1/media/config"""
        return 200, {"m.upload.size": max_upload}

    async def get_preview(req: HttpRequest) -> tuple[int, Any]:
        """GET /_matrix/client/v1/media/preview_url"""
        return 200, await previewer.preview(query_str(req.args, "url"), req.user_id)

    router.add("GET", f"{CLIENT_V1}/download/{{serverName}}/{{mediaId}}", download(False))
    router.add("GET", f"{CLIENT_V1}/download/{{serverName}}/{{mediaId}}/{{fileName}}",
               download(False))
    router.add("GET", f"{CLIENT_V1}/thumbnail/{{serverName}}/{{mediaId}}", thumbnail(False))
    router.add("GET", f"{CLIENT_V1}/config", get_config)
    router.add("GET", f"{CLIENT_V1}/preview_url", get_preview)
    router.add("POST", "/_matrix/media/v1/create", post_create)
    for prefix in LEGACY:
        router.add("POST", f"{prefix}/upload", post_upload, max_body=max_upload)
        router.add("PUT", f"{prefix}/upload/{{serverName}}/{{mediaId}}", put_upload,
                   max_body=max_upload)
        router.add("GET", f"{prefix}/download/{{serverName}}/{{mediaId}}", download(True),
                   auth=AUTH_NONE)
        router.add("GET", f"{prefix}/download/{{serverName}}/{{mediaId}}/{{fileName}}",
                   download(True), auth=AUTH_NONE)
        router.add("GET", f"{prefix}/thumbnail/{{serverName}}/{{mediaId}}", thumbnail(True),
                   auth=AUTH_NONE)
        # the legacy config and preview still need an access token (as on Synapse)
        router.add("GET", f"{prefix}/config", get_config, auth=AUTH_REQUIRED)
        router.add("GET", f"{prefix}/preview_url", get_preview, auth=AUTH_REQUIRED)
