"""Talking to a CAS server (Synapse's ``cas_config``): the login URL and
ticket validation.

The browser goes to ``{server_url}/login?service=...``; the CAS server
sends it back to the service URL (our ``/login/cas/ticket``, carrying the
client's ``redirectUrl`` or a UIA ``session``) with a ``ticket``, which we
check at ``{server_url}/proxyValidate`` (``/p3/proxyValidate`` for
``protocol_version: 3``) with the same service URL. The answer is CAS's XML:
``cas:authenticationSuccess`` with ``cas:user`` and ``cas:attributes``.
The request goes through the outbound guard, with a timeout and a size
limit; any failure raises ``CasError`` for the user's error page.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from twisted.internet import defer
from twisted.web.http_headers import Headers

from homeserver.federation.discovery import read_body
from homeserver.http.outbound import IPFilter, guarded_agent, https_policy

if TYPE_CHECKING:
    from homeserver.accounts.sso_config import CasProvider
    from homeserver.context import ServerContext

logger = logging.getLogger(__name__)

TIMEOUT_S = 30.0
MAX_ANSWER_BYTES = 256 * 1024
_CAS = "{http://www.yale.edu/tp/cas}"
TICKET_PATH = "_matrix/client/r0/login/cas/ticket"


class CasError(Exception):
    """The ticket cannot be used; ``str()`` is safe to show the user."""


@dataclass(frozen=True)
class CasUser:
    username: str
    attributes: dict[str, list[str]]


class CasClient:
    def __init__(self, ctx: "ServerContext", provider: "CasProvider") -> None:
        self.ctx = ctx
        self.provider = provider
        self._agent = guarded_agent(ctx.reactor, IPFilter.from_config(ctx.config),
                                    connect_timeout_s=TIMEOUT_S,
                                    context_factory=https_policy(ctx.config))

    def service_url(self, args: dict[str, str]) -> str:
        """Our ticket endpoint with the client's redirect URL or UIA session
        (as Synapse builds it, r0 path included: CAS servers compare it)."""
        return f"{self.ctx.config.public_baseurl}{TICKET_PATH}?{urlencode(args)}"

    def login_url(self, args: dict[str, str]) -> str:
        return f"{self.provider.server_url}/login?{urlencode({'service': self.service_url(args)})}"

    async def validate(self, ticket: str, args: dict[str, str]) -> CasUser:
        path = "/p3/proxyValidate" if self.provider.protocol_version == 3 else "/proxyValidate"
        query = urlencode({"ticket": ticket, "service": self.service_url(args)})
        url = f"{self.provider.server_url}{path}?{query}"

        async def fetch() -> tuple[int, bytes]:
            response = await self._agent.request(
                b"GET", url.encode("utf-8"), Headers({b"User-Agent": [b"homeserver"]}), None)
            return response.code, await read_body(response, MAX_ANSWER_BYTES)

        d = defer.ensureDeferred(fetch())
        d.addTimeout(TIMEOUT_S, self.ctx.reactor)
        try:
            code, body = await d
        except Exception as e:
            logger.warning("CAS: validating a ticket at %s failed: %s", path, e)
            raise CasError("The CAS server could not be reached") from None
        if code != 200:
            raise CasError(f"The CAS server answered {code}")
        return parse_cas_response(body)


def parse_cas_response(body: bytes) -> CasUser:
    """The user of a ``serviceResponse``, or CasError."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise CasError("The CAS server's answer is not XML") from None
    success: Any = root.find(f"{_CAS}authenticationSuccess")
    if success is None:
        failure = root.find(f"{_CAS}authenticationFailure")
        code = failure.get("code") if failure is not None else None
        raise CasError(f"The CAS server refused the ticket ({code or 'no reason given'})")
    user = success.find(f"{_CAS}user")
    if user is None or not (user.text or "").strip():
        raise CasError("The CAS server did not say who you are")
    attributes: dict[str, list[str]] = {}
    found = success.find(f"{_CAS}attributes")
    for child in found if found is not None else ():
        tag = str(child.tag)
        name = tag[len(_CAS):] if tag.startswith(_CAS) else tag
        attributes.setdefault(name, []).append((child.text or "").strip())
    return CasUser((user.text or "").strip(), attributes)
