"""The HTTP client for every outbound server-server request. (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homeserver.server import HomeServer

QueryArgs = dict[str, str | list[str]]


class RequestFailed(Exception):
    """The destination could not be reached or gave no usable answer: DNS,
    connection, TLS, timeout, a refused (private) address, a body too large
    or not JSON."""


class FederationError(Exception):
    """The destination answered with an HTTP error status."""

    def __init__(self, code: int, errcode: str | None, body: Any) -> None:
        super().__init__(f"{code} {errcode}")
        self.code = code
        self.errcode = errcode
        self.body = body


class FederationClient:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs

    async def get_json(self, destination: str, path: str, args: QueryArgs | None = None, *,
                       timeout_ms: int | None = None, sign: bool = True) -> Any:
        raise NotImplementedError

    async def put_json(self, destination: str, path: str, body: Any, *,
                       args: QueryArgs | None = None, timeout_ms: int | None = None) -> Any:
        raise NotImplementedError

    async def post_json(self, destination: str, path: str, body: Any, *,
                        args: QueryArgs | None = None, timeout_ms: int | None = None) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass
