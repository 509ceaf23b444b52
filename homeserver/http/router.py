"""A segment-trie router: ``/_matrix/client/v3/profile/{userId}/displayname``.

Paths are matched on the raw, percent-encoded path split at ``/`` (so an
encoded ``%2F`` inside a parameter stays inside it), then each parameter is
URL-decoded. An unknown path is 404 M_UNRECOGNIZED; a known path with the
wrong method is 405 M_UNRECOGNIZED, as the spec asks.

Every client-server route under ``/_matrix/client/v3/`` is also served under
the older ``/_matrix/client/r0/`` prefix, which the spec's v3 replaced without
changing the endpoints, and which Synapse and older clients (and SyTest)
still use. That is done here, once, not by a second row per endpoint.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from homeserver.errors import Codes, MatrixError

if TYPE_CHECKING:
    from homeserver.http.request import HttpRequest

Handler = Callable[["HttpRequest"], Awaitable[tuple[int, Any]]]
# an endpoint as a module declares it: a module-level function taking what it
# uses (the API layer's context, usually the HomeServer) and the request
EndpointFunction = Callable[[Any, "HttpRequest"], Awaitable[tuple[int, Any]]]

# Who must authenticate: every request, or only optionally, or nobody.
AUTH_REQUIRED = "required"
AUTH_OPTIONAL = "optional"
AUTH_NONE = "none"
# a server-server request: the X-Matrix Authorization header names and signs
# its origin (``federation/request_auth.py``); the handler reads ``req.origin``
AUTH_FEDERATION = "federation"
# a server admin's access token (the users row's ``admin`` flag): 401 without
# a token, 403 M_FORBIDDEN for anyone else (the /_synapse/admin/ API)
AUTH_ADMIN = "admin"

CLIENT_V3_PREFIX = "/_matrix/client/v3/"
CLIENT_R0_PREFIX = "/_matrix/client/r0/"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    auth: str = AUTH_REQUIRED
    allow_guest: bool = False
    # None: the server's max_client_json_size
    max_body: int | None = None
    # the access log and metrics name this route by its pattern
    name: str = ""


@dataclass(frozen=True)
class Endpoint:
    """One row of a module's endpoint table (``ENDPOINTS``): the function is
    importable and testable alone; the router binds its context at start."""

    method: str
    pattern: str
    function: EndpointFunction
    auth: str = AUTH_REQUIRED
    allow_guest: bool = False
    max_body: int | None = None


@dataclass
class _Node:
    static: dict[str, "_Node"] = field(default_factory=dict)
    param: "_Node | None" = None
    param_name: str = ""
    routes: dict[str, Route] = field(default_factory=dict)


class Router:
    def __init__(self) -> None:
        self._root = _Node()

    def add(self, method: str, pattern: str, handler: Handler, *, auth: str = AUTH_REQUIRED,
            allow_guest: bool = False, max_body: int | None = None) -> None:
        self._add(method, pattern, handler, auth, allow_guest, max_body)
        if pattern.startswith(CLIENT_V3_PREFIX):
            self._add(method, CLIENT_R0_PREFIX + pattern[len(CLIENT_V3_PREFIX):], handler,
                      auth, allow_guest, max_body)

    def _add(self, method: str, pattern: str, handler: Handler, auth: str,
             allow_guest: bool, max_body: int | None) -> None:
        node = self._root
        for segment in pattern.strip("/").split("/"):
            if segment.startswith("{") and segment.endswith("}"):
                name = segment[1:-1]
                if node.param is None:
                    node.param = _Node(param_name=name)
                elif node.param.param_name != name:
                    raise ValueError(f"{pattern}: parameter {name} clashes with "
                                     f"{node.param.param_name}")
                node = node.param
            else:
                node = node.static.setdefault(segment, _Node())
        if method in node.routes:
            raise ValueError(f"route {method} {pattern} registered twice")
        node.routes[method] = Route(method, pattern, handler, auth, allow_guest, max_body,
                                    pattern)

    def add_endpoints(self, context: Any, endpoints: Iterable[Endpoint]) -> None:
        """Route each row of an endpoint table, its function bound to ``context``."""
        for e in endpoints:
            self.add(e.method, e.pattern, functools.partial(e.function, context),
                     auth=e.auth, allow_guest=e.allow_guest, max_body=e.max_body)

    def match(self, method: str, raw_path: bytes) -> tuple[Route, dict[str, str]]:
        """The route for ``method`` and ``raw_path`` and its decoded parameters."""
        segments = raw_path.strip(b"/").split(b"/")
        node: _Node | None = self._root
        raw_params: list[tuple[str, bytes]] = []
        for seg in segments:
            assert node is not None
            try:
                key = seg.decode("ascii")
            except UnicodeDecodeError:
                key = None
            if key is not None and key in node.static:
                node = node.static[key]
            elif node.param is not None and seg:
                node = node.param
                raw_params.append((node.param_name, seg))
            else:
                node = None
                break
        if node is None or not node.routes:
            raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
        route = node.routes.get(method)
        if route is None:
            if method == "HEAD" and "GET" in node.routes:
                route = node.routes["GET"]
            else:
                raise MatrixError(405, Codes.UNRECOGNIZED, "Unrecognized request")
        params: dict[str, str] = {}
        for name, raw in raw_params:
            try:
                params[name] = unquote_to_bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  f"Path parameter {name} is not valid UTF-8") from None
            if "\x00" in params[name]:
                # no identifier holds NUL, and PostgreSQL text cannot store it
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  f"Path parameter {name} may not contain NUL")
        return route, params

    def has_path(self, raw_path: bytes) -> bool:
        try:
            self.match("GET", raw_path)
        except MatrixError as e:
            return e.status == 405
        return True
