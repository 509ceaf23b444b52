"""Parsing request bodies and query strings at the edge, with Matrix errors.

JSON bodies are size-limited (64 KiB for client JSON by default) and
depth-limited; NaN and Infinity, invalid UTF-8 and non-object top levels are
refused. Query parameters are read as strings, integers or booleans with
M_INVALID_PARAM for anything else.

Text no column can hold is refused here, once, for every endpoint:

- a lone UTF-16 surrogate (``"\\ud800"`` in JSON; the raw body is valid
  UTF-8, so only an escape can make one) anywhere in a body: 400 M_NOT_JSON,
  as Synapse answers for invalid unicode. It has no UTF-8 form, so neither
  engine stores it and no response could carry it back.
- NUL (``"\\u0000"``), which PostgreSQL's text refuses, anywhere in a body,
  in a query parameter or a path parameter: 400 M_INVALID_PARAM. Identifiers,
  tokens, device IDs, passwords and the rest never need one. Free-form content
  kept as JSON is the exception (``allow_nul``: event content, account data,
  to-device messages, and server-server bodies, which carry remote events):
  Synapse stores a NUL there (in JSON it stays an escape), and so do we; the
  stores that copy event text into columns of their own (search) drop it.

Both checks cost a regex scan of the body text for the escape; only a body
that has one (a client that escapes all non-ASCII writes emoji as surrogate
pairs, which are fine) is walked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from homeserver.errors import Codes, MatrixError, invalid_param, missing_param

MAX_JSON_DEPTH = 64

# the JSON escapes that can decode to NUL or to a UTF-16 surrogate; a body
# without one holds neither (raw NUL is not valid inside a JSON string and
# raw surrogates are not valid UTF-8)
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_depth_ok(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``value`` nests no deeper than ``limit`` (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in item)
    return True


def _unstorable_text(value: Any) -> str | None:
    """"surrogate" when a string (key or value) in ``value`` holds a lone
    surrogate, else "nul" when one holds NUL, else None."""
    found: str | None = None
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                stack.append(key)
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "surrogate"
        if isinstance(item, str) and "\x00" in item:
            found = "nul"
    return found


def decode_json(raw: bytes, max_size: int, *, allow_empty_object: bool = False,
                allow_nul: bool = False) -> Any:
    """Decode a JSON body or raise the Matrix error a client should see.

    ``allow_nul`` keeps NUL in strings (event content, see the module
    docstring); lone surrogates are refused regardless."""
    if len(raw) > max_size:
        raise MatrixError(413, Codes.TOO_LARGE,
                          f"Request body too large (limit is {max_size} bytes)")
    if not raw.strip():
        if allow_empty_object:
            return {}
        raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MatrixError(400, Codes.NOT_JSON, "Content not JSON: invalid UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise MatrixError(400, Codes.BAD_JSON, "JSON nested too deeply.") from None
    except ValueError:
        raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.") from None
    if not json_depth_ok(value):
        raise MatrixError(400, Codes.BAD_JSON,
                          f"JSON nested too deeply (limit is {MAX_JSON_DEPTH} levels).")
    if _SUSPECT_ESCAPE.search(text) is not None:
        problem = _unstorable_text(value)
        if problem == "surrogate":
            raise MatrixError(400, Codes.NOT_JSON,
                              "Content not JSON: a string holds a lone UTF-16 surrogate.")
        if problem == "nul" and not allow_nul:
            raise MatrixError(400, Codes.INVALID_PARAM, "Strings may not contain NUL (\\u0000).")
    return value


def require_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, "Content must be a JSON object.")
    return value


# --- typed field access for parsed bodies ---------------------------------------

_MISSING = object()


def get_str(body: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    """A string field; missing -> default (or M_MISSING_PARAM), wrong type -> M_BAD_JSON."""
    value = body.get(key, _MISSING)
    if value is _MISSING or value is None and default is not _MISSING:
        if default is _MISSING:
            raise missing_param(key)
        return default
    if not isinstance(value, str):
        raise MatrixError(400, Codes.BAD_JSON, f"'{key}' must be a string")
    return value


def get_bool(body: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise missing_param(key)
        return default
    if not isinstance(value, bool):
        raise MatrixError(400, Codes.BAD_JSON, f"'{key}' must be a boolean")
    return value


def get_int(body: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise missing_param(key)
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise MatrixError(400, Codes.BAD_JSON, f"'{key}' must be an integer")
    return value


def get_object(body: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise missing_param(key)
        return default
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, f"'{key}' must be an object")
    return value


# --- query strings ---------------------------------------------------------------

def check_query_args(args: dict[bytes, list[bytes]]) -> None:
    """Refuse a query string with NUL in any name or value (400 M_INVALID_PARAM):
    no parameter is a place for one, and a stored or looked-up NUL fails on
    PostgreSQL. Percent-decoded UTF-8 cannot yield a surrogate."""
    for name, values in args.items():
        if b"\x00" in name or any(b"\x00" in v for v in values):
            raise invalid_param("Query parameters may not contain NUL")


def query_str(args: dict[bytes, list[bytes]], name: str, default: Any = _MISSING) -> Any:
    values = args.get(name.encode("ascii"))
    if not values:
        if default is _MISSING:
            raise missing_param(name)
        return default
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_param(f"Query parameter {name!r} is not valid UTF-8") from None


def query_int(args: dict[bytes, list[bytes]], name: str, default: Any = _MISSING) -> Any:
    raw = query_str(args, name, None)
    if raw is None:
        if default is _MISSING:
            raise missing_param(name)
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid_param(f"Query parameter {name!r} must be an integer") from None


def query_bool(args: dict[bytes, list[bytes]], name: str, default: Any = _MISSING) -> Any:
    raw = query_str(args, name, None)
    if raw is None:
        if default is _MISSING:
            raise missing_param(name)
        return default
    if raw in ("true", "false"):
        return raw == "true"
    raise invalid_param(f"Query parameter {name!r} must be 'true' or 'false'")
