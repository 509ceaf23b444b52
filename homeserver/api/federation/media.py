"""Our media for other servers: /_matrix/federation/v1/media/{download,thumbnail}.

Signed requests only (``AUTH_FEDERATION``). Only media uploaded here is
served (never media we cached from a third server), as multipart/mixed: a
JSON metadata part (``{}``) then the file, per the spec. A reserved media ID
not uploaded yet is waited on up to ``timeout_ms``, then 504
M_NOT_YET_UPLOADED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.api.federation import FEDERATION_V1
from homeserver.http.parse import query_bool, query_int, query_str
from homeserver.http.request import HttpRequest
from homeserver.http.resource import RawResponse
from homeserver.http.router import AUTH_FEDERATION, Endpoint, Router
from homeserver.media.repository import DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, MediaFile
from homeserver.media.serving import build_multipart

if TYPE_CHECKING:
    from homeserver.media.repository import MediaRepository
    from homeserver.server import HomeServer


@dataclass(frozen=True)
class FederationMedia:
    """What the media endpoints use: the repository, and our name (only
    media uploaded here is served)."""

    repo: "MediaRepository"
    hostname: str


def _multipart(media: MediaFile) -> tuple[int, Any]:
    content_type, body = build_multipart(media.media_type, media.upload_name, media.data)
    return 200, RawResponse(body, content_type, {"X-Content-Type-Options": "nosniff"})


def _timeout(req: HttpRequest) -> int:
    return max(0, min(int(query_int(req.args, "timeout_ms", DEFAULT_TIMEOUT_MS)),
                      MAX_TIMEOUT_MS))


async def get_download(media: FederationMedia, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/media/download/{mediaId}"""
    found = await media.repo.get_media(media.hostname, req.params["mediaId"],
                                       allow_remote=False, timeout_ms=_timeout(req))
    return _multipart(found)


async def get_thumbnail(media: FederationMedia, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/federation/v1/media/thumbnail/{mediaId}"""
    found = await media.repo.get_thumbnail(
        media.hostname, req.params["mediaId"], query_int(req.args, "width"),
        query_int(req.args, "height"), query_str(req.args, "method", "scale"),
        animated=query_bool(req.args, "animated", False), allow_remote=False,
        timeout_ms=_timeout(req))
    return _multipart(found)


ENDPOINTS = (
    Endpoint("GET", f"{FEDERATION_V1}/media/download/{{mediaId}}", get_download,
             auth=AUTH_FEDERATION),
    Endpoint("GET", f"{FEDERATION_V1}/media/thumbnail/{{mediaId}}", get_thumbnail,
             auth=AUTH_FEDERATION),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(FederationMedia(hs.media_repository, hs.hostname), ENDPOINTS)
