"""The OpenID provider of the SSO tests (``node/provider.js``: the npm
package oidc-provider) and a small browser to walk its pages.

``Browser`` is what a user's browser does in the flow: it keeps cookies,
follows redirects, and fills in and submits the provider's login and
consent forms, all over real HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urljoin

import pytest
from treq.client import HTTPClient
from twisted.internet import defer, protocol, reactor
from twisted.web.client import Agent

NODE_DIR = os.path.join(os.path.dirname(__file__), "node")
NODE = shutil.which("node")
MISSING = NODE is None or not os.path.isdir(os.path.join(NODE_DIR, "node_modules",
                                                        "oidc-provider"))
# in CI a missing provider is a failure (the tests must run), elsewhere a skip
if MISSING and os.environ.get("CI"):
    raise RuntimeError("CI: node and tests/sso/node/node_modules are needed "
                       "(make test installs them with npm)")
needs_provider = pytest.mark.skipif(
    MISSING, reason="needs node and tests/sso/node/node_modules (make test installs it)")


class _Provider(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ready: defer.Deferred[str] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._out = b""
        self.err = b""

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self._out += data
        while b"\n" in self._out and not self.ready.called:
            line, self._out = self._out.split(b"\n", 1)
            if line.startswith(b"{"):
                self.ready.callback(json.loads(line)["issuer"])

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"provider.js died: {self.err.decode()}"))
        self.ended.callback(None)


@dataclass
class OpenIdProvider:
    issuer: str
    _proto: _Provider

    async def stop(self) -> None:
        if self._proto.transport is not None:
            self._proto.transport.closeStdin()
        await self._proto.ended


async def start_provider() -> OpenIdProvider:
    assert NODE is not None
    proto = _Provider()
    reactor.spawnProcess(proto, NODE, [NODE, "provider.js"],  # type: ignore[attr-defined]
                         env=dict(os.environ), path=NODE_DIR)
    issuer = await proto.ready
    return OpenIdProvider(issuer, proto)


@dataclass
class Page:
    code: int
    url: str
    headers: dict[str, list[str]]
    body: str

    @property
    def location(self) -> str | None:
        values = self.headers.get("location")
        return urljoin(self.url, values[0]) if values else None


class _Forms(HTMLParser):
    """Every form of a page: its action and its fields' values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: dict[str, str] = {}
        self._link: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in a:
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and "id" in a:
            self.links[a["id"]] = a.get("href", "")


def forms_of(page: Page) -> list[tuple[str, dict[str, str]]]:
    parser = _Forms()
    parser.feed(page.body)
    return [(urljoin(page.url, action or page.url), fields) for action, fields in parser.forms]


def link_of(page: Page, link_id: str) -> str:
    parser = _Forms()
    parser.feed(page.body)
    return parser.links[link_id]


class Browser:
    """Cookies, redirects and forms, as a user's browser would."""

    def __init__(self) -> None:
        self.cookies = CookieJar()
        self._http = HTTPClient(Agent(reactor), cookiejar=self.cookies)

    async def request(self, method: str, url: str, form: dict[str, str] | None = None) -> Page:
        kwargs: dict[str, Any] = {"allow_redirects": False}
        if form is not None:
            kwargs["data"] = form
        resp = await self._http.request(method, url, **kwargs)
        body = await resp.content()
        headers = {k.decode().lower(): [v.decode() for v in vs]
                   for k, vs in resp.headers.getAllRawHeaders()}
        return Page(resp.code, url, headers, body.decode("utf-8", "replace"))

    async def follow(self, page: Page, stop_at: str = "\x00") -> Page:
        """Follow redirects until a page, or a redirect to ``stop_at...``."""
        for _ in range(20):
            location = page.location
            if page.code not in (301, 302, 303, 307) or location is None or \
                    location.startswith(stop_at):
                return page
            page = await self.request("GET", location)
        raise AssertionError("too many redirects")

    async def sign_in_at_provider(self, page: Page, login: str,
                                  stop_at: str = "\x00") -> Page:
        """Fill in the provider's login form, then its consent form; the page
        the provider finally redirects to (or the redirect to ``stop_at``)."""
        page = await self.follow(page, stop_at)
        for _ in range(3):
            if page.code != 200 or "<form" not in page.body:
                return page
            action, fields = forms_of(page)[0]
            if fields.get("prompt") == "login":
                fields.update({"login": login, "password": "any password"})
            elif fields.get("prompt") != "consent":
                return page
            page = await self.follow(await self.request("POST", action, fields), stop_at)
        return page
