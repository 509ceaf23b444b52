"""What a handler receives: the request, its path parameters and its requester."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.web.server import Request

from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import decode_json, require_object


@dataclass(frozen=True)
class Requester:
    """Who is making an authenticated request."""

    user_id: str
    device_id: str | None
    access_token_id: int
    is_guest: bool = False
    # an application service's request (its as_token): the service
    # (appservice/registration.py ApplicationService), else None
    app_service: Any = None


class SizeLimitedRequest(Request):
    """A Twisted request that stops buffering a body past the server's limit.

    Twisted reads the whole body before the resource sees the request; without
    this an endless upload would fill memory or disk. Past the limit the rest
    of the body is dropped and the request answers 413 M_TOO_LARGE.
    """

    max_body_size = 64 * 1024 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Twisted would parse a POST form body (multipart or urlencoded) into
        # the query arguments before the resource runs, and answer a malformed
        # one with a bare 400 of its own; bodies here are read by handlers
        self._parsePOSTFormSubmission = False
        self.body_size = 0
        self.body_too_large = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body_size:
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.body_size > self.max_body_size:
            self.body_too_large = True
            return
        if not self.body_too_large:
            super().handleContentChunk(data)


class HttpRequest:
    """A request as handlers see it."""

    def __init__(self, request: Request, params: dict[str, str], max_json: int,
                 client_ip: str, *, nul_in_json: bool = False) -> None:
        self.raw = request
        self.params = params
        self.args: dict[bytes, list[bytes]] = request.args or {}
        self.method = request.method.decode("ascii", "replace")
        self.client_ip = client_ip
        self.requester: Requester | None = None
        # the authenticated origin server of a federation request
        self.origin: str = ""
        self._max_json = max_json
        # a server-server body may carry a remote event whose content holds
        # NUL, which we store as Synapse does (see http/parse.py)
        self._nul_in_json = nul_in_json
        self._json: Any = None
        self.user_agent = (request.getHeader(b"User-Agent") or b"").decode("utf-8", "replace")

    @property
    def user_id(self) -> str:
        """The authenticated user (only on routes that require auth)."""
        assert self.requester is not None
        return self.requester.user_id

    def content(self) -> bytes:
        if getattr(self.raw, "body_too_large", False):
            raise MatrixError(413, Codes.TOO_LARGE, "Request body too large")
        if self.raw.content is None:
            return b""
        try:
            self.raw.content.seek(0)
            return bytes(self.raw.content.read())
        except ValueError:  # the client went away and Twisted closed the body
            raise MatrixError(400, Codes.UNKNOWN, "The request body is gone") from None

    def json(self, *, allow_empty: bool = False, allow_nul: bool = False) -> dict[str, Any]:
        """The body as a JSON object, with size and depth limits applied.

        Strings holding NUL are refused unless ``allow_nul`` (event content);
        lone surrogates always are."""
        if self._json is None:
            if getattr(self.raw, "body_too_large", False):
                raise MatrixError(413, Codes.TOO_LARGE,
                                  f"Request body too large (limit is {self._max_json} bytes)")
            self._json = require_object(decode_json(
                self.content(), self._max_json, allow_empty_object=allow_empty,
                allow_nul=allow_nul or self._nul_in_json))
        return self._json  # type: ignore[no-any-return]

    def any_json(self) -> Any:
        """The body as any JSON value (account data and filters are objects too)."""
        return self.json()

    def header(self, name: str) -> str | None:
        value = self.raw.getHeader(name.encode("ascii"))
        return value.decode("utf-8", "replace") if value is not None else None


async def until_done_or_gone(req: "HttpRequest", d: Any) -> tuple[int, Any]:
    """Await a long-poll's deferred ``d``; cancel it if the client goes away
    (then 200 with an empty body: nothing is written to a closed connection)."""
    from twisted.internet import defer

    gone_away: list[bool] = []

    def gone(_: Any) -> None:
        gone_away.append(True)
        d.cancel()

    req.raw.notifyFinish().addErrback(gone)
    try:
        body = await d
    except (defer.CancelledError, defer.FirstError):
        if not gone_away:
            raise
        return 200, {}
    return 200, body
