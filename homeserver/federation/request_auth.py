"""The X-Matrix Authorization header: signing our requests, checking theirs.

server-server-api.md "Request Authentication": the origin signs the JSON
object ``{"method", "uri", "origin", "destination", "content"?}`` (``uri``
is the path with its query string, as sent) and sends, per signature,

    Authorization: X-Matrix origin="a.example",destination="b.example",key="ed25519:1",sig="..."

The receiver rebuilds that object from the request it got, fetches the
origin's key (``federation/keys.py``) and checks the signature. Values may
be quoted or not; parameter names are case-insensitive.

Inbound checks (``FederationAuth``): a valid origin server name that is not
ours, the destination (when given) is us, the origin is allowed to
federate (``federation_domain_whitelist``, 403 otherwise), and the
signature verifies with a current key of the origin. Everything else is
401 M_UNAUTHORIZED.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from signedjson.sign import sign_json
from signedjson.types import SigningKey

from homeserver.errors import Codes, MatrixError
from homeserver.events.identifiers import is_valid_server_name
from homeserver.events.signing import SignatureError

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.keys import KeyRing
    from homeserver.federation.sender import FederationSender
    from homeserver.http.request import HttpRequest
    from homeserver.moderation.policy_lists import PolicyLists

logger = logging.getLogger(__name__)

_PARAM = re.compile(r'\s*([A-Za-z0-9_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*(?:,|$)')


def request_json(method: str, uri: str, origin: str, destination: str,
                 content: Any = None) -> dict[str, Any]:
    """The object an X-Matrix signature covers."""
    obj: dict[str, Any] = {"method": method, "uri": uri, "origin": origin,
                           "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def authorization_headers(origin: str, signing_key: SigningKey, method: str, uri: str,
                          destination: str, content: Any = None) -> list[bytes]:
    """The Authorization header values for a request we send (one per signature)."""
    signed = sign_json(request_json(method, uri, origin, destination, content), origin,
                       signing_key)
    return [
        (f'X-Matrix origin="{origin}",destination="{destination}",key="{key_id}",'
         f'sig="{sig}"').encode("ascii")
        for key_id, sig in signed["signatures"][origin].items()
    ]


def parse_x_matrix(header: str) -> dict[str, str] | None:
    """The parameters of an X-Matrix Authorization header (names lower-cased),
    or None when it is not one."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "x-matrix" or not rest:
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            return None
        value = m.group(2)
        if value is not None:
            value = re.sub(r"\\(.)", r"\1", value)
        else:
            value = m.group(3)
        params[m.group(1).lower()] = value
        pos = m.end()
    return params


class FederationAuth:
    """Checks the X-Matrix headers of inbound server-server requests.

    A request may carry several Authorization headers (one per signing key);
    every X-Matrix one must name the same origin and, if it names one, us as
    the destination. Their signatures are gathered into one signed object
    and checked as any signed JSON (``KeyRing.verify_json_for_server``): at
    least one must be by a key of the origin valid now, and none by such a
    key may be bad. The body is parsed here (with the route's size limit) and
    kept for the handler, since the signature covers it.
    """

    def __init__(self, ctx: "ServerContext", keyring: "KeyRing",
                 sender: "FederationSender") -> None:
        self.ctx = ctx
        self.keyring = keyring
        self.sender = sender
        # moderation policy lists (moderation/policy_lists.py): their banned
        # servers are refused as servers outside the whitelist are
        self.policy: "PolicyLists | None" = None

    async def authenticate(self, req: "HttpRequest") -> str:
        """The origin server of ``req`` (401 M_UNAUTHORIZED if unsigned or
        wrongly signed, 403 M_FORBIDDEN if not allowed to federate)."""
        headers = req.raw.requestHeaders.getRawHeaders(b"Authorization") or []
        origin: str | None = None
        signatures: dict[str, str] = {}
        for raw_header in headers:
            try:
                header = raw_header.decode("utf-8")
            except UnicodeDecodeError:
                continue
            params = parse_x_matrix(header)
            if params is None:
                continue
            header_origin = params.get("origin")
            key_id = params.get("key")
            sig = params.get("sig")
            # a malformed header is a bad request (400 M_UNAUTHORIZED, as
            # Synapse answers), e.g. an origin "localhost:http"
            if not header_origin or not key_id or not sig:
                raise _malformed("X-Matrix header lacks origin, key or sig")
            if not is_valid_server_name(header_origin):
                raise _malformed("X-Matrix origin is not a valid server name")
            if origin is not None and header_origin != origin:
                raise _unauthorized("X-Matrix headers name different origins")
            destination = params.get("destination")
            if destination is not None and destination != self.ctx.hostname:
                raise _unauthorized("X-Matrix destination is not this server")
            origin = header_origin
            signatures[key_id] = sig
        if origin is None:
            raise _unauthorized("Missing X-Matrix Authorization header")
        if origin == self.ctx.hostname:
            raise _unauthorized("Requests from our own server name are not accepted")
        whitelist = self.ctx.config.federation_domain_whitelist
        if whitelist is not None and origin not in whitelist:
            raise MatrixError(403, Codes.FORBIDDEN, "Federation denied with this server")
        if self.policy is not None and await self.policy.banned_server(origin) is not None:
            raise MatrixError(403, Codes.FORBIDDEN, "Federation denied with this server")
        try:
            uri = req.raw.uri.decode("utf-8")
        except UnicodeDecodeError:
            raise _unauthorized("Request URI is not UTF-8") from None
        content = req.json() if _has_body(req) else None
        signed = request_json(req.method, uri, origin, self.ctx.hostname, content)
        signed["signatures"] = {origin: signatures}
        try:
            await self.keyring.verify_json_for_server(origin, signed, self.ctx.now_ms())
        except SignatureError as e:
            logger.info("rejecting request %s %s from %s: %s", req.method,
                        uri.partition("?")[0], origin, e)
            raise _unauthorized(f"Failed to verify the request signature of {origin}") from None
        # a server that talks to us is up: retry what we queued for it now
        self.sender.wake_destination(origin)
        return origin


def _unauthorized(msg: str) -> MatrixError:
    return MatrixError(401, Codes.UNAUTHORIZED, msg)


def _malformed(msg: str) -> MatrixError:
    return MatrixError(400, Codes.UNAUTHORIZED, msg)


def _has_body(req: "HttpRequest") -> bool:
    body = req.raw.content
    if body is None:
        return False
    body.seek(0, 2)
    size = body.tell()
    body.seek(0)
    return bool(size)
