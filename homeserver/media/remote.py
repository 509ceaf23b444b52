"""Fetching media from the server that holds it, over federation.

First the authenticated federation endpoint
``GET /_matrix/federation/v1/media/download/{mediaId}`` (signed X-Matrix
request; the answer is multipart/mixed: a JSON part, then the file or a
``Location`` to fetch it from). A server too old for it answers 404 or 400
M_UNRECOGNIZED, and we fall back to the legacy
``GET /_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false``.

The federation client (``federation/client.py``) only speaks JSON, so this
module sends its requests through the client's discovery, address filter,
TLS policy and connection pool itself, and reads the body with the same size
limit. ``RemoteMediaFetcher`` is the service (built in ``server.py``) that
holds the federation client and the server's signing identity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from twisted.internet import defer
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.web.http_headers import Headers

from homeserver.federation.client import USER_AGENT, RequestFailed
from homeserver.federation.discovery import BodyTooLarge, read_body
from homeserver.federation.request_auth import authorization_headers
from homeserver.media.serving import (
    MultipartError,
    base_type,
    filename_from_disposition,
    parse_multipart,
)

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.client import FederationClient

logger = logging.getLogger(__name__)


class RemoteMediaNotFound(Exception):
    """The origin answered: it has no such media (or will not give it)."""


class RemoteMediaNotYetUploaded(Exception):
    """The origin holds the ID but the upload has not arrived yet."""


@dataclass(frozen=True)
class FetchedMedia:
    data: bytes
    media_type: str
    upload_name: str | None


@dataclass(frozen=True)
class _Answer:
    code: int
    headers: Headers
    body: bytes


def _header(headers: Headers, name: str) -> str | None:
    values = headers.getRawHeaders(name.encode("ascii"))
    return values[0].decode("latin-1") if values else None


def _errcode(body: bytes) -> str | None:
    import json
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, dict) and isinstance(parsed.get("errcode"), str):
        return str(parsed["errcode"])
    return None


async def _plain_get(agent: Any, url: str, max_size: int) -> tuple[bytes, Headers]:
    response = await agent.request(b"GET", url.encode("ascii"),
                                   Headers({b"User-Agent": [USER_AGENT]}), None)
    body = await read_body(response, max_size)
    if response.code != 200:
        raise RequestFailed(f"the media Location answered {response.code}")
    return body, response.headers


def _check_status(answer: _Answer) -> None:
    if answer.code == 200:
        return
    errcode = _errcode(answer.body)
    if errcode == "M_NOT_YET_UPLOADED" or answer.code == 504:
        raise RemoteMediaNotYetUploaded()
    if answer.code in (404, 403) or errcode == "M_NOT_FOUND":
        raise RemoteMediaNotFound()
    raise RequestFailed(f"the origin answered {answer.code} {errcode}")


def _single(answer: _Answer) -> FetchedMedia:
    _check_status(answer)
    media_type = _header(answer.headers, "Content-Type") or "application/octet-stream"
    return FetchedMedia(answer.body, media_type,
                        filename_from_disposition(_header(answer.headers,
                                                          "Content-Disposition")))


class RemoteMediaFetcher:
    """Fetches remote media through the federation client's discovery, address
    filter and connection pool, signing as this server."""

    def __init__(self, ctx: "ServerContext", federation_client: "FederationClient") -> None:
        self.ctx = ctx
        self.federation_client = federation_client

    async def fetch(self, origin: str, media_id: str, *, max_size: int,
                    timeout_ms: int) -> FetchedMedia:
        """The media ``mxc://{origin}/{media_id}`` as its origin serves it.

        Raises RemoteMediaNotFound, RemoteMediaNotYetUploaded or RequestFailed.
        """
        quoted = quote(media_id, safe="")
        answer = await self._get(
            origin, f"/_matrix/federation/v1/media/download/{quoted}?timeout_ms={timeout_ms}",
            True, max_size, timeout_ms + 5000)
        if answer.code in (400, 404, 405) and _errcode(answer.body) in (None, "M_UNRECOGNIZED"):
            # an origin without the federation media API: the legacy endpoint
            answer = await self._get(
                origin, f"/_matrix/media/v3/download/{quote(origin, safe='')}/{quoted}"
                f"?allow_remote=false&timeout_ms={timeout_ms}", False, max_size,
                timeout_ms + 5000)
            return _single(answer)
        return await self._from_multipart(answer, max_size, timeout_ms)

    async def _from_multipart(self, answer: _Answer, max_size: int,
                              timeout_ms: int) -> FetchedMedia:
        _check_status(answer)
        content_type = _header(answer.headers, "Content-Type") or ""
        try:
            parts = parse_multipart(content_type, answer.body)
        except MultipartError as e:
            raise RequestFailed(f"the origin's media answer is malformed: {e}") from None
        if len(parts) < 2 or base_type(parts[0][0].get("content-type", "")) != "application/json":
            raise RequestFailed("the origin's media answer does not have its two parts")
        headers, data = parts[1]
        location = headers.get("location")
        if location:
            data, loc_headers = await self._follow_location(location, max_size, timeout_ms)
            return FetchedMedia(data, _header(loc_headers, "Content-Type")
                                or "application/octet-stream",
                                filename_from_disposition(_header(loc_headers,
                                                                  "Content-Disposition")))
        return FetchedMedia(data, headers.get("content-type") or "application/octet-stream",
                            filename_from_disposition(headers.get("content-disposition")))

    async def _get(self, destination: str, uri: str, sign: bool, max_size: int,
                   timeout_ms: int) -> _Answer:
        client = self.federation_client
        client.check_destination(destination)

        async def send() -> _Answer:
            target = await client.discovery.resolve(destination)
            headers = Headers({b"User-Agent": [USER_AGENT],
                               b"Host": [target.host_header.encode("ascii")]})
            if sign:
                for value in authorization_headers(self.ctx.hostname, self.ctx.signing_key,
                                                   "GET", uri, destination, None):
                    headers.addRawHeader(b"Authorization", value)
            response = await client._agent_for(target).request(
                b"GET",
                b"matrix-federation://" + destination.encode("ascii") + uri.encode("ascii"),
                headers, None)
            body = await read_body(response, max_size)
            return _Answer(response.code, response.headers, body)

        d = defer.ensureDeferred(send())
        d.addTimeout(timeout_ms / 1000, self.ctx.reactor)
        try:
            return await d
        except (defer.CancelledError, TxTimeoutError):
            raise RequestFailed(f"GET {destination}: no answer within {timeout_ms}ms") from None
        except BodyTooLarge as e:
            raise RequestFailed(f"GET {destination}: {e}") from None
        except RequestFailed:
            raise
        except Exception as e:
            raise RequestFailed(f"GET {destination}: {type(e).__name__}: {e}") from None

    async def _follow_location(self, url: str, max_size: int,
                               timeout_ms: int) -> tuple[bytes, Headers]:
        """The file behind a multipart ``Location`` (a CDN, say): a plain HTTPS
        GET through the federation address filter."""
        if not url.startswith(("https://", "http://")):
            raise RequestFailed("the media Location is not an http(s) URL")
        from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, RedirectAgent

        inner: Any = Agent(self.federation_client.connector.filtering_reactor,
                           contextFactory=BrowserLikePolicyForHTTPS())
        agent = RedirectAgent(inner)
        d = defer.ensureDeferred(_plain_get(agent, url, max_size))
        d.addTimeout(timeout_ms / 1000, self.ctx.reactor)
        try:
            return await d
        except (defer.CancelledError, TxTimeoutError):
            raise RequestFailed("the media Location did not answer in time") from None
        except RequestFailed:
            raise
        except Exception as e:
            raise RequestFailed(f"the media Location failed: {type(e).__name__}: {e}") from None
