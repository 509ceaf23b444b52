"""A small Matrix client for load: the client-server API over one HTTP pool.

Speaks only what any homeserver serves (``/_matrix/client/v3`` and Synapse's
shared-secret admin registration), so one run can measure this server and
Synapse alike. Built on Twisted and treq, the server's own dependencies;
nothing here imports ``homeserver``.

Connections are kept alive in a persistent ``HTTPConnectionPool`` sized to
the load's concurrency, so a run measures requests, not TCP handshakes.
Every request has a timeout; a non-2xx answer raises ``MatrixRequestError``
with the status and errcode. Setup helpers (register, login, create room,
join) retry a 429 after the server's ``retry_after_ms``; ``send_message``
never retries, so a measured request is exactly one request.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import treq
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

CLIENT_V3 = "/_matrix/client/v3"
ADMIN_REGISTER = "/_synapse/admin/v1/register"

T = TypeVar("T")


class MatrixRequestError(Exception):
    """A non-2xx answer: the HTTP status and, when the body had them, errcode and error."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        self.error = body.get("error") if isinstance(body, dict) else None
        self.retry_after_ms = body.get("retry_after_ms") if isinstance(body, dict) else None
        super().__init__(f"{method} {path}: {status} {self.errcode or ''} {self.error or ''}"
                         .rstrip())


@dataclass(frozen=True)
class Session:
    """A logged-in user: what every authenticated request needs."""

    user_id: str
    access_token: str
    device_id: str | None


def check_loopback(base_url: str) -> None:
    """Refuse a base URL that does not resolve only to this machine.

    A load tool pointed at someone else's server is an attack; the harness
    measures servers we start ourselves (or a local Synapse), nothing more.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise ValueError(f"cannot resolve {parts.hostname!r}: {e}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not address.is_loopback:
            raise ValueError(f"{base_url} resolves to {address}, which is not loopback; "
                             "the load tool only targets this machine")


def registration_mac(secret: str, nonce: str, username: str, password: str,
                     admin: bool = False) -> str:
    """Synapse's shared-secret MAC: HMAC-SHA1 of nonce NUL user NUL password NUL (not)admin."""
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(b"\x00".join([nonce.encode("utf-8"), username.encode("utf-8"),
                             password.encode("utf-8"), b"admin" if admin else b"notadmin"]))
    return mac.hexdigest()


class MatrixClient:
    """Requests to one homeserver over a shared, persistent connection pool."""

    def __init__(self, base_url: str, *, connections: int = 20,
                 timeout_s: float = 30.0) -> None:
        check_loopback(base_url)
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = connections
        self._pool.retryAutomatically = False  # a measured request is sent once
        self._http = HTTPClient(Agent(reactor, pool=self._pool, connectTimeout=10))

    async def close(self) -> None:
        await self._pool.closeCachedConnections()

    async def request(self, method: str, path: str, body: Any = None,
                      token: str | None = None) -> Any:
        """One request; the parsed JSON body of a 2xx answer, else MatrixRequestError."""
        headers = {b"Accept": [b"application/json"]}
        data = None
        if body is not None:
            headers[b"Content-Type"] = [b"application/json"]
            data = json.dumps(body).encode("utf-8")
        if token is not None:
            headers[b"Authorization"] = [f"Bearer {token}".encode("ascii")]
        response = await self._http.request(method, self.base_url + path, headers=headers,
                                            data=data, timeout=self.timeout_s)
        raw = await treq.content(response)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if not 200 <= response.code < 300:
            raise MatrixRequestError(method, path, response.code, parsed)
        return parsed

    # --- setup helpers (retry 429) -------------------------------------------------

    async def _retrying(self, call: Callable[[], Awaitable[T]], attempts: int = 20) -> T:
        for attempt in range(attempts):
            try:
                return await call()
            except MatrixRequestError as e:
                if e.status != 429 or attempt == attempts - 1:
                    raise
                delay_ms = e.retry_after_ms if isinstance(e.retry_after_ms, int) else 1000
                await deferLater(reactor, min(delay_ms, 10_000) / 1000)
        raise AssertionError("unreachable")

    async def versions(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/_matrix/client/versions")
        return result

    async def register_shared_secret(self, shared_secret: str, username: str, password: str,
                                     *, admin: bool = False,
                                     inhibit_login: bool = False) -> Session | None:
        """Create an account with the admin API; works with registration closed, and on Synapse.

        Returns the new session, or None with ``inhibit_login``.
        """
        async def attempt() -> Any:
            nonce = (await self.request("GET", ADMIN_REGISTER))["nonce"]
            return await self.request("POST", ADMIN_REGISTER, {
                "nonce": nonce,
                "username": username,
                "password": password,
                "admin": admin,
                "inhibit_login": inhibit_login,
                "mac": registration_mac(shared_secret, nonce, username, password, admin),
            })

        result = await self._retrying(attempt)
        if inhibit_login:
            return None
        return Session(result["user_id"], result["access_token"], result.get("device_id"))

    async def login(self, username: str, password: str,
                    device_id: str | None = None) -> Session:
        """POST /login with m.login.password."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": password,
            "initial_device_display_name": "bench",
        }
        if device_id is not None:
            body["device_id"] = device_id
        result = await self._retrying(lambda: self.request("POST", f"{CLIENT_V3}/login", body))
        return Session(result["user_id"], result["access_token"], result.get("device_id"))

    async def create_room(self, session: Session, **body: Any) -> str:
        """POST /createRoom; keyword arguments are the request body. The new room ID."""
        result = await self._retrying(lambda: self.request(
            "POST", f"{CLIENT_V3}/createRoom", body, session.access_token))
        room_id: str = result["room_id"]
        return room_id

    async def join(self, session: Session, room_id: str) -> None:
        await self._retrying(lambda: self.request(
            "POST", f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}/join", {},
            session.access_token))

    async def messages(self, session: Session, room_id: str, *, direction: str = "b",
                       from_token: str | None = None, limit: int = 100) -> dict[str, Any]:
        """GET /rooms/{roomId}/messages: one page."""
        query = f"?dir={direction}&limit={limit}"
        if from_token is not None:
            query += f"&from={quote(from_token, safe='')}"
        result: dict[str, Any] = await self.request(
            "GET", f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}/messages{query}",
            token=session.access_token)
        return result

    # --- the measured request ------------------------------------------------------

    async def send_message(self, session: Session, room_id: str, txn_id: str,
                           content: dict[str, Any],
                           event_type: str = "m.room.message") -> str:
        """PUT /rooms/{roomId}/send/{eventType}/{txnId}, once. The event ID."""
        path = (f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}/send/"
                f"{quote(event_type, safe='')}/{quote(txn_id, safe='')}")
        result = await self.request("PUT", path, content, session.access_token)
        event_id: str = result["event_id"]
        return event_id


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on the reactor and return its result (or raise its exception).

    Unlike ``task.react`` this returns, so callers can clean up (stop a server,
    drop a database) after the reactor stops. The reactor runs once per process.
    """
    outcome: list[Any] = []

    async def wrapper() -> None:
        try:
            outcome.append((True, await main()))
        except BaseException as e:  # noqa: B036 - handed back to the caller below
            outcome.append((False, e))
        finally:
            if reactor.running:  # type: ignore[attr-defined]
                reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(lambda: defer.ensureDeferred(wrapper()))  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if not outcome:
        raise KeyboardInterrupt("the reactor stopped before the run finished")
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result
