"""The key exchange: /_matrix/key/v2/server and the notary /_matrix/key/v2/query.

All unauthenticated (a server needs our key before it can check anything we
sign). The logic is in ``federation/keys.py``; here we parse and validate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError
from homeserver.events.identifiers import is_valid_server_name
from homeserver.http.parse import query_int
from homeserver.http.router import AUTH_NONE, Endpoint, Router

if TYPE_CHECKING:
    from homeserver.context import ServerContext
    from homeserver.federation.keys import KeyRing
    from homeserver.http.request import HttpRequest
    from homeserver.server import HomeServer

KEY_V2 = "/_matrix/key/v2"

# servers per POST /query: each may cost us an outbound fetch
MAX_QUERY_SERVERS = 100


def _bad_json(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg)


def _check_server_name(server_name: str) -> None:
    if not is_valid_server_name(server_name):
        raise MatrixError(400, Codes.INVALID_PARAM, f"Not a valid server name: {server_name!r}")


@dataclass(frozen=True)
class KeyServer:
    """What the key endpoints use: the key ring, and the clock for the
    default ``minimum_valid_until_ts``."""

    keyring: "KeyRing"
    ctx: "ServerContext"


def _key_queries(server_keys: Any, now: int) -> list[tuple[str, list[str], int]]:
    """(server, key IDs, minimum_valid_until_ts) for each server of a POST
    /query body's ``server_keys`` (400 for anything malformed)."""
    if not isinstance(server_keys, dict):
        raise _bad_json("'server_keys' must be an object")
    if len(server_keys) > MAX_QUERY_SERVERS:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          f"At most {MAX_QUERY_SERVERS} servers per query")
    queries: list[tuple[str, list[str], int]] = []
    for server_name, criteria in server_keys.items():
        _check_server_name(server_name)
        if not isinstance(criteria, dict):
            raise _bad_json(f"server_keys.{server_name} must be an object")
        minimums: list[int] = []
        for key_id, criterion in criteria.items():
            if not isinstance(criterion, dict):
                raise _bad_json(f"server_keys.{server_name}.{key_id} must be an object")
            value = criterion.get("minimum_valid_until_ts", now)
            if not isinstance(value, int) or isinstance(value, bool):
                raise _bad_json("minimum_valid_until_ts must be an integer")
            minimums.append(value)
        # one fetch answers for every key: ask for the strictest criterion
        minimum = max(minimums, default=now)
        queries.append((server_name, list(criteria), minimum))
    return queries


async def get_server_keys(keys: KeyServer, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_matrix/key/v2/server (and the deprecated .../server/{keyId})"""
    return 200, keys.keyring.own_key_response()


async def query_one(keys: KeyServer, req: "HttpRequest") -> tuple[int, Any]:
    """GET /_matrix/key/v2/query/{serverName} (and the deprecated .../{keyId})"""
    server_name = req.params["serverName"]
    _check_server_name(server_name)
    minimum = query_int(req.args, "minimum_valid_until_ts", None)
    if minimum is None:
        minimum = keys.ctx.now_ms()
    # the deprecated form names one key (Synapse still serves it)
    key_id = req.params.get("keyId")
    responses = await keys.keyring.notary_key_responses(
        server_name, [key_id] if key_id else [], minimum)
    return 200, {"server_keys": responses}


async def query_many(keys: KeyServer, req: "HttpRequest") -> tuple[int, Any]:
    """POST /_matrix/key/v2/query"""
    body = req.json()
    queries = _key_queries(body.get("server_keys"), keys.ctx.now_ms())
    results: list[dict[str, Any]] = []
    for server_name, key_ids, minimum in queries:
        results.extend(await keys.keyring.notary_key_responses(server_name, key_ids, minimum))
    return 200, {"server_keys": results}


ENDPOINTS = (
    Endpoint("GET", f"{KEY_V2}/server", get_server_keys, auth=AUTH_NONE),
    Endpoint("GET", f"{KEY_V2}/server/{{keyId}}", get_server_keys, auth=AUTH_NONE),
    Endpoint("GET", f"{KEY_V2}/query/{{serverName}}", query_one, auth=AUTH_NONE),
    Endpoint("GET", f"{KEY_V2}/query/{{serverName}}/{{keyId}}", query_one, auth=AUTH_NONE),
    Endpoint("POST", f"{KEY_V2}/query", query_many, auth=AUTH_NONE),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    router.add_endpoints(KeyServer(hs.keyring, hs.ctx), ENDPOINTS)
