"""URL previews (``/preview_url``): the OpenGraph data of a web page.

Off unless ``url_preview_enabled``. A preview makes this server fetch any
URL a user names, so every connection (the first and each redirect) goes
through a reactor whose name resolver drops addresses in
``url_preview_ip_range_blacklist`` (minus ``..._whitelist``), the same
filter federation uses (``http/outbound.py``); an IP literal in the
URL is checked before anything is sent. At most ``max_spider_size`` bytes
are read. An image URL previews as the image itself (stored as media); an
HTML page as its ``og:*`` tags, falling back to ``<title>`` and the meta
description, with ``og:image`` fetched and stored as media too. Previews
are kept in memory for an hour.
"""

from __future__ import annotations

import logging
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from twisted.internet import defer
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.web.http_headers import Headers

from homeserver.errors import Codes, MatrixError
from homeserver.federation.discovery import is_ip_literal, read_body
from homeserver.http.outbound import IPFilter, guarded_agent, https_policy

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.media.repository import MediaRepository

logger = logging.getLogger(__name__)

CACHE_MS = 3_600_000
FETCH_TIMEOUT_S = 30.0
USER_AGENT = b"homeserver URL preview"


class _OpenGraphParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.title: str | None = None
        self.description: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v or "" for k, v in attrs}
        if tag == "meta":
            prop = a.get("property") or a.get("name") or ""
            if prop.startswith("og:") and prop not in self.og:
                self.og[prop] = a.get("content", "")[:1000]
            elif prop.lower() == "description" and self.description is None:
                self.description = a.get("content", "")[:1000]
        elif tag == "title" and self.title is None:
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = ((self.title or "") + data)[:1000]


def parse_html(html: str) -> dict[str, str]:
    """The OpenGraph tags of ``html``, with title/description fallbacks."""
    parser = _OpenGraphParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        pass  # whatever was parsed before the garbage is still good
    og = dict(parser.og)
    if "og:title" not in og and parser.title:
        og["og:title"] = parser.title.strip()
    if "og:description" not in og and parser.description:
        og["og:description"] = parser.description.strip()
    return og


class UrlPreviewer:
    def __init__(self, ctx: "ServerContext", repo: "MediaRepository") -> None:
        self.ctx = ctx
        self.repo = repo
        config = ctx.config
        self.enabled: bool = config.url_preview_enabled
        self.ip_filter = IPFilter(config.url_preview_ip_range_blacklist or [],
                                  config.url_preview_ip_range_whitelist or [])
        self.max_size: int = config.max_spider_size
        self._agent: Any = None  # with the first preview: Twisted's HTTP client loads then
        self._cache: dict[str, tuple[int, dict[str, Any]]] = {}

    async def preview(self, url: str, user_id: str) -> dict[str, Any]:
        if not self.enabled:
            raise MatrixError(404, Codes.UNRECOGNIZED, "URL previews are disabled")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MatrixError(400, Codes.INVALID_PARAM, "Only http(s) URLs can be previewed")
        if is_ip_literal(parts.hostname) and not self.ip_filter.allowed(parts.hostname):
            raise MatrixError(403, Codes.UNKNOWN, "IP address blocked")
        now = self.ctx.now_ms()
        cached = self._cache.get(url)
        if cached is not None and cached[0] > now:
            return cached[1]
        body, media_type, final_url = await self._fetch(url)
        og: dict[str, Any]
        if media_type.startswith("image/"):
            og = await self._image(body, media_type, url, user_id)
        elif media_type in ("text/html", "application/xhtml+xml"):
            og = parse_html(body.decode("utf-8", "replace"))
            image_url = og.get("og:image")
            if image_url:
                og.pop("og:image")
                try:
                    image, image_type, _ = await self._fetch(urljoin(final_url, image_url))
                    if image_type.startswith("image/"):
                        og.update(await self._image(image, image_type, url, user_id))
                except MatrixError:
                    pass  # a page without its picture is still a preview
        else:
            og = {}
        self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[url] = (now + CACHE_MS, og)
        return og

    async def _image(self, data: bytes, media_type: str, url: str,
                     user_id: str) -> dict[str, Any]:
        mxc = await self.repo.upload(user_id, data, media_type, None)
        og: dict[str, Any] = {"og:image": mxc, "og:image:type": media_type,
                              "matrix:image:size": len(data)}
        try:
            from io import BytesIO

            from PIL import Image
            with Image.open(BytesIO(data)) as img:
                og["og:image:width"], og["og:image:height"] = img.size
        except Exception:
            pass
        return og

    async def _fetch(self, url: str) -> tuple[bytes, str, str]:
        d = defer.ensureDeferred(self._get(url))
        d.addTimeout(FETCH_TIMEOUT_S, self.ctx.reactor)
        try:
            return await d
        except MatrixError:
            raise
        except (defer.CancelledError, TxTimeoutError):
            raise MatrixError(504, Codes.UNKNOWN, "Timed out fetching the URL") from None
        except Exception as e:
            logger.info("preview of %s failed: %s", url, e)
            raise MatrixError(502, Codes.UNKNOWN, "Could not fetch the URL") from None

    async def _get(self, url: str) -> tuple[bytes, str, str]:
        if self._agent is None:
            from twisted.web.client import RedirectAgent

            inner: Any = guarded_agent(self.ctx.reactor, self.ip_filter,
                                       connect_timeout_s=FETCH_TIMEOUT_S,
                                       context_factory=https_policy(self.ctx.config))
            self._agent = RedirectAgent(inner)
        response = await self._agent.request(b"GET", url.encode("ascii", "strict"),
                                             Headers({b"User-Agent": [USER_AGENT]}), None)
        body = await read_body(response, self.max_size)
        if response.code != 200:
            raise MatrixError(502, Codes.UNKNOWN, f"The URL answered {response.code}")
        types = response.headers.getRawHeaders(b"Content-Type") or [b"application/octet-stream"]
        media_type = types[0].decode("latin-1").split(";")[0].strip().lower()
        final = response.request.absoluteURI.decode("ascii", "replace")
        return body, media_type, final
