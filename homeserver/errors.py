"""Matrix error codes and the one exception type that carries them to clients.

Neutral ground: domain code (rooms, accounts, federation, storage) raises
these without importing the HTTP layer, which only serialises them.

Every error a client sees is ``{"errcode": "M_...", "error": "..."}`` with the
right HTTP status; handlers raise ``MatrixError`` (or a helper below) and the
HTTP layer serialises it. Nothing else builds error bodies.
"""

from __future__ import annotations

from typing import Any


class Codes:
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    FORBIDDEN = "M_FORBIDDEN"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    NOT_FOUND = "M_NOT_FOUND"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    PROFILE_TOO_LARGE = "M_PROFILE_TOO_LARGE"
    KEY_TOO_LARGE = "M_KEY_TOO_LARGE"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    UNKNOWN = "M_UNKNOWN"
    USER_IN_USE = "M_USER_IN_USE"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    EXCLUSIVE = "M_EXCLUSIVE"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    USER_SUSPENDED = "M_USER_SUSPENDED"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    CAPTCHA_NEEDED = "M_CAPTCHA_NEEDED"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    THREEPID_DENIED = "M_THREEPID_DENIED"
    THREEPID_IN_USE = "M_THREEPID_IN_USE"
    THREEPID_AUTH_FAILED = "M_THREEPID_AUTH_FAILED"
    THREEPID_NOT_FOUND = "M_THREEPID_NOT_FOUND"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"
    SERVER_NOT_TRUSTED = "M_SERVER_NOT_TRUSTED"
    BAD_ALIAS = "M_BAD_ALIAS"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    UNABLE_TO_GRANT_JOIN = "M_UNABLE_TO_GRANT_JOIN"
    UNABLE_AUTHORISE_JOIN = "M_UNABLE_TO_AUTHORISE_JOIN"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    DUPLICATE_ANNOTATION = "M_DUPLICATE_ANNOTATION"
    INVALID_SIGNATURE = "M_INVALID_SIGNATURE"
    WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
    # sliding sync (MSC4186): the connection's pos is unknown or expired
    UNKNOWN_POS = "M_UNKNOWN_POS"


class MatrixError(Exception):
    """An error for the client: an HTTP status, an errcode and a message."""

    def __init__(self, status: int, errcode: str, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.status = status
        self.errcode = errcode
        self.msg = msg
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.msg}
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"MatrixError({self.status}, {self.errcode!r}, {self.msg!r})"


class InteractiveAuthIncomplete(Exception):
    """A user-interactive auth step is needed: the 401 body of the UIA flow."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("user-interactive auth required")
        self.body = body


def bad_json(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg)


def missing_param(name: str) -> MatrixError:
    return MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter: {name}")


def invalid_param(msg: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, msg)


def forbidden(msg: str) -> MatrixError:
    return MatrixError(403, Codes.FORBIDDEN, msg)


def not_found(msg: str = "Not found") -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, msg)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    err = MatrixError(429, Codes.LIMIT_EXCEEDED, "Too many requests",
                      retry_after_ms=retry_after_ms)
    err.headers["Retry-After"] = str(max(1, (retry_after_ms + 999) // 1000))
    return err
