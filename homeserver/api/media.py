"""The content repository API: uploads, downloads, thumbnails, config, previews.

Authenticated (``/_matrix/client/v1/media/...``, Matrix 1.11) and legacy
(``/_matrix/media/v3/...`` and ``r0``) endpoints share one repository
(``media/repository.py``); the legacy download and thumbnail take no access
token and, with ``enable_authenticated_media``, do not serve media uploaded
after the switch. Media goes out as raw bytes (``RawResponse``) with the
safety headers of ``media/serving.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import query_bool, query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.resource import RawResponse
from homeserver.http.router import AUTH_NONE, AUTH_REQUIRED, Endpoint, Router
from homeserver.media.repository import DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, MediaFile
from homeserver.media.serving import media_headers, served_content_type

if TYPE_CHECKING:
    from homeserver.media.preview import UrlPreviewer
    from homeserver.media.repository import MediaRepository
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


@dataclass(frozen=True)
class Media:
    """What the media endpoints use: the repository, the URL previewer and
    the configured upload limit."""

    repo: "MediaRepository"
    previewer: "UrlPreviewer"
    max_upload: int


async def post_upload(media: Media, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/media/v3/upload"""
    data = req.content()
    uri = await media.repo.upload(req.user_id, data, _upload_type(req), _filename(req))
    return 200, {"content_uri": uri}


async def post_create(media: Media, req: HttpRequest) -> tuple[int, Any]:
    """POST /_matrix/media/v1/create"""
    uri, expires = await media.repo.create(req.user_id)
    return 200, {"content_uri": uri, "unused_expires_at": expires}


async def put_upload(media: Media, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}"""
    data = req.content()
    await media.repo.upload_reserved(req.user_id, req.params["serverName"],
                                     req.params["mediaId"], data, _upload_type(req),
                                     _filename(req))
    return 200, {}


async def _download(media: Media, req: HttpRequest, legacy: bool) -> tuple[int, Any]:
    allow_remote = query_bool(req.args, "allow_remote", True) if legacy else True
    found = await media.repo.get_media(req.params["serverName"], req.params["mediaId"],
                                       allow_remote=allow_remote, timeout_ms=_timeout(req),
                                       legacy=legacy)
    return _respond(found, req.params.get("fileName"))


async def get_download(media: Media, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]"""
    return await _download(media, req, False)


async def get_download_legacy(media: Media, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}]"""
    return await _download(media, req, True)


async def _thumbnail(media: Media, req: HttpRequest, legacy: bool) -> tuple[int, Any]:
    allow_remote = query_bool(req.args, "allow_remote", True) if legacy else True
    found = await media.repo.get_thumbnail(
        req.params["serverName"], req.params["mediaId"],
        query_int(req.args, "width"), query_int(req.args, "height"),
        query_str(req.args, "method", "scale"),
        animated=query_bool(req.args, "animated", False), allow_remote=allow_remote,
        timeout_ms=_timeout(req), legacy=legacy)
    return _respond(found)


async def get_thumbnail(media: Media, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"""
    return await _thumbnail(media, req, False)


async def get_thumbnail_legacy(media: Media, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}"""
    return await _thumbnail(media, req, True)


async def get_config(media: Media, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/media/config"""
    return 200, {"m.upload.size": media.max_upload}


async def get_preview(media: Media, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v1/media/preview_url"""
    return 200, await media.previewer.preview(query_str(req.args, "url"), req.user_id)


def _legacy(prefix: str) -> tuple[Endpoint, ...]:
    return (
        Endpoint("GET", f"{prefix}/download/{{serverName}}/{{mediaId}}", get_download_legacy,
                 auth=AUTH_NONE),
        Endpoint("GET", f"{prefix}/download/{{serverName}}/{{mediaId}}/{{fileName}}",
                 get_download_legacy, auth=AUTH_NONE),
        Endpoint("GET", f"{prefix}/thumbnail/{{serverName}}/{{mediaId}}", get_thumbnail_legacy,
                 auth=AUTH_NONE),
        # the legacy config and preview still need an access token (as on Synapse)
        Endpoint("GET", f"{prefix}/config", get_config, auth=AUTH_REQUIRED),
        Endpoint("GET", f"{prefix}/preview_url", get_preview, auth=AUTH_REQUIRED),
    )


ENDPOINTS = (
    Endpoint("GET", f"{CLIENT_V1}/download/{{serverName}}/{{mediaId}}", get_download),
    Endpoint("GET", f"{CLIENT_V1}/download/{{serverName}}/{{mediaId}}/{{fileName}}",
             get_download),
    Endpoint("GET", f"{CLIENT_V1}/thumbnail/{{serverName}}/{{mediaId}}", get_thumbnail),
    Endpoint("GET", f"{CLIENT_V1}/config", get_config),
    Endpoint("GET", f"{CLIENT_V1}/preview_url", get_preview),
    Endpoint("POST", "/_matrix/media/v1/create", post_create),
    *(e for prefix in LEGACY for e in _legacy(prefix)),
)

# their body limit is the configured max_upload_size, set at registration
UPLOAD_ENDPOINTS = tuple(e for prefix in LEGACY for e in (
    Endpoint("POST", f"{prefix}/upload", post_upload),
    Endpoint("PUT", f"{prefix}/upload/{{serverName}}/{{mediaId}}", put_upload),
))


def register_routes(hs: "HomeServer", router: Router) -> None:
    media = Media(hs.media_repository, hs.url_previewer, int(hs.config.max_upload_size))
    router.add_endpoints(media, ENDPOINTS)
    router.add_endpoints(media, (replace(e, max_body=media.max_upload)
                                 for e in UPLOAD_ENDPOINTS))
