"""Query parameters the admin API shares, parsed as Synapse parses them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.http.parse import query_int, query_str


def non_negative(args: dict[bytes, list[bytes]], name: str, default: int) -> int:
    value: int = query_int(args, name, default)
    # past 2**62 a value would overflow PostgreSQL's BIGINT (a 500)
    if value < 0 or value > 2**62:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          f"Query parameter {name} must be a string representing a "
                          "positive integer.")
    return value


def order_and_dir(args: dict[bytes, list[bytes]], allowed: Collection[str],
                  default: str) -> tuple[str, bool]:
    """``order_by`` (one of ``allowed``) and whether ``dir`` is ``b``."""
    order_by: str = query_str(args, "order_by", default)
    if order_by not in allowed:
        raise MatrixError(400, Codes.INVALID_PARAM, "Unknown value for order_by")
    direction = query_str(args, "dir", "f")
    if direction not in ("f", "b"):
        raise MatrixError(400, Codes.INVALID_PARAM, "Unknown direction: " + direction)
    return order_by, direction == "b"


def body_bool(body: dict[str, Any], key: str, default: Any = None) -> Any:
    value = body.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise MatrixError(400, Codes.BAD_JSON, f"'{key}' must be a boolean")
    return value


def body_str(body: dict[str, Any], key: str, max_len: int = 1000) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise MatrixError(400, Codes.INVALID_PARAM, f"'{key}' must be a string of at most "
                          f"{max_len} characters")
    return value
