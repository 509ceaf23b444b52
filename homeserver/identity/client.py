"""Requests to identity servers (the Identity Service API, v2).

A client names the identity server (``id_server``: a host and optional port)
and hands us its access token for it (``id_access_token``); we call
``https://{id_server}/_matrix/identity/v2/...`` with ``Authorization: Bearer``.
The identity server is a place someone else chose, so every connection goes
through the outbound guard (``http/outbound.py``: ``ip_range_blacklist``),
and its certificate is checked unless the operator set
``use_insecure_ssl_client_just_for_testing_do_not_use``.

``/3pid/unbind`` takes no access token: as Synapse does, we sign the request
with our server key (an X-Matrix header, as for federation), which proves
the binding's user is ours.

Failures: a non-2xx answer raises ``IdentityServerError`` with its status;
anything else (connection, TLS, timeout, not JSON) raises
``IdentityServerUnreachable``. Callers turn either into a client error.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import urllib.parse
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.web.http_headers import Headers

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.identifiers import is_valid_server_name
from homeserver.federation.discovery import read_body
from homeserver.federation.request_auth import authorization_headers
from homeserver.http.outbound import IPFilter, guarded_agent, https_policy

if TYPE_CHECKING:
    from homeserver.context import ServerContext

logger = logging.getLogger(__name__)

TIMEOUT_S = 30.0
MAX_BODY = 1024 * 1024
IS_V2 = "/_matrix/identity/v2"


class IdentityServerError(Exception):
    """The identity server answered with an error status."""

    def __init__(self, code: int, body: Any) -> None:
        super().__init__(f"identity server answered {code}")
        self.code = code
        self.body = body


class IdentityServerUnreachable(Exception):
    """No usable answer from the identity server."""


def check_id_server(id_server: str) -> bool:
    """Whether ``id_server`` is a host[:port] we may put in a URL."""
    return bool(id_server) and is_valid_server_name(id_server)


def lookup_hash(medium: str, address: str, pepper: str) -> str:
    """The ``sha256`` lookup hash of the Identity Service API."""
    digest = hashlib.sha256(f"{address} {medium} {pepper}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class IdentityServerClient:
    def __init__(self, ctx: "ServerContext") -> None:
        self.ctx = ctx
        self._pool: Any = None  # with the first request: Twisted's HTTP client loads then
        self._agent: Any = None

    def _agent_for_requests(self) -> Any:
        if self._agent is None:
            from twisted.web.client import HTTPConnectionPool

            self._pool = HTTPConnectionPool(self.ctx.reactor)
            self._pool.maxPersistentPerHost = 2
            self._agent = guarded_agent(self.ctx.reactor, IPFilter.from_config(self.ctx.config),
                                        connect_timeout_s=TIMEOUT_S, pool=self._pool,
                                        context_factory=https_policy(self.ctx.config))
        return self._agent

    async def request(self, method: str, url: str, body: Any = None, *,
                      access_token: str | None = None,
                      extra_headers: list[tuple[bytes, bytes]] | None = None) -> Any:
        """One JSON request to a full URL; the parsed JSON answer."""
        headers = Headers({b"User-Agent": [b"homeserver"]})
        producer: Any = None
        if body is not None:
            data = encode_canonical_json(body)
            headers.addRawHeader(b"Content-Type", b"application/json")
            from twisted.web.client import FileBodyProducer

            producer = FileBodyProducer(io.BytesIO(data))
        if access_token is not None:
            headers.addRawHeader(b"Authorization", b"Bearer " + access_token.encode("utf-8"))
        for name, value in extra_headers or []:
            headers.addRawHeader(name, value)

        async def send() -> tuple[int, bytes]:
            agent = self._agent_for_requests()
            response = await agent.request(method.encode("ascii"), url.encode("utf-8"),
                                           headers, producer)
            return response.code, await read_body(response, MAX_BODY)

        d = defer.ensureDeferred(send())
        d.addTimeout(TIMEOUT_S, self.ctx.reactor)
        try:
            code, raw = await d
        except Exception as e:
            logger.info("%s %s failed: %s", method, url.split("?")[0], e)
            raise IdentityServerUnreachable(f"{type(e).__name__}: {e}") from None
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = None
        if not 200 <= code < 300:
            logger.info("%s %s -> %d", method, url.split("?")[0], code)
            raise IdentityServerError(code, parsed)
        if not isinstance(parsed, dict):
            raise IdentityServerUnreachable("the answer is not a JSON object")
        return parsed

    # -- the Identity Service API calls we make -----------------------------

    async def lookup_3pid(self, id_server: str, access_token: str, medium: str,
                          address: str) -> str | None:
        """The user ID bound to the address, if any (hashed v2 lookup)."""
        base = f"https://{id_server}{IS_V2}"
        details = await self.request("GET", f"{base}/hash_details", access_token=access_token)
        algorithms = details.get("algorithms")
        pepper = details.get("lookup_pepper")
        if not isinstance(algorithms, list) or not isinstance(pepper, str):
            raise IdentityServerUnreachable("hash_details answer is malformed")
        if "sha256" in algorithms:
            key, algorithm = lookup_hash(medium, address, pepper), "sha256"
        elif "none" in algorithms:
            key, algorithm = f"{address} {medium}", "none"
        else:
            raise IdentityServerUnreachable("no lookup algorithm in common")
        answer = await self.request("POST", f"{base}/lookup",
                                    {"addresses": [key], "algorithm": algorithm,
                                     "pepper": pepper}, access_token=access_token)
        mappings = answer.get("mappings")
        found = mappings.get(key) if isinstance(mappings, dict) else None
        return found if isinstance(found, str) else None

    async def store_invite(self, id_server: str, access_token: str,
                           params: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request(
            "POST", f"https://{id_server}{IS_V2}/store-invite", params,
            access_token=access_token)
        return answer

    async def bind(self, id_server: str, access_token: str, sid: str, client_secret: str,
                   mxid: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request(
            "POST", f"https://{id_server}{IS_V2}/3pid/bind",
            {"sid": sid, "client_secret": client_secret, "mxid": mxid},
            access_token=access_token)
        return answer

    async def unbind(self, id_server: str, mxid: str, medium: str, address: str) -> None:
        path = f"{IS_V2}/3pid/unbind"
        body = {"mxid": mxid, "threepid": {"medium": medium, "address": address}}
        auth = authorization_headers(self.ctx.hostname, self.ctx.signing_key, "POST", path,
                                     id_server, body)
        await self.request("POST", f"https://{id_server}{path}", body,
                           extra_headers=[(b"Authorization", v) for v in auth])

    async def key_is_valid(self, key_validity_url: str, public_key: str) -> bool:
        """Whether the identity server still vouches for ``public_key``."""
        if not key_validity_url.startswith(("https://", "http://")):
            return False
        sep = "&" if "?" in key_validity_url else "?"
        url = key_validity_url + sep + urllib.parse.urlencode({"public_key": public_key})
        answer = await self.request("GET", url)
        return answer.get("valid") is True

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.closeCachedConnections()
