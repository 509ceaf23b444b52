"""The X-Matrix Authorization header: signing our requests, checking theirs.

server-server-api.md "Request Authentication": the origin signs the JSON
object ``{"method", "uri", "origin", "destination", "content"?}`` (``uri``
is the path with its query string, as sent) and sends, per signature,

    Authorization: X-Matrix origin="a.example",destination="b.example",key="ed25519:1",sig="..."

The receiver rebuilds that object from the request it got, fetches the
origin's key (``federation/keys.py``) and checks the signature. Values may
be quoted or not; parameter names are case-insensitive.
(being written: ``FederationAuth.authenticate``)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from signedjson.sign import sign_json
from signedjson.types import SigningKey

if TYPE_CHECKING:
    from homeserver.http.request import HttpRequest
    from homeserver.server import HomeServer

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
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs

    async def authenticate(self, req: "HttpRequest") -> str:
        """The origin server of ``req`` (401 M_UNAUTHORIZED if unsigned or
        wrongly signed, 403 M_FORBIDDEN if not allowed to federate)."""
        raise NotImplementedError
