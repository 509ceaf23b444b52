"""A small Matrix client for load: the client-server API over one HTTP pool.

Speaks only what any homeserver serves (``/_matrix/client/v3`` and Synapse's
shared-secret admin registration), so one run can measure this server and
Synapse alike. Built on Twisted, the server's own dependency; nothing here
imports ``homeserver``.

Requests go straight to Twisted's ``Agent`` rather than through treq: the
load generator shares the machine with the server it measures, and treq's
URL handling (hyperlink, IDNA) cost about half as much CPU again per request
(0.57 against 0.37 ms on the 2-core bench machine). Connections are kept
alive in a persistent ``HTTPConnectionPool`` sized to the load's
concurrency, so a run measures requests, not TCP handshakes. Every request
has a timeout (``RequestTimeout``); a non-2xx answer raises
``MatrixRequestError`` with the status and errcode. Setup helpers (register, login, create room,
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

from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

CLIENT_V3 = "/_matrix/client/v3"
ADMIN_REGISTER = "/_synapse/admin/v1/register"

T = TypeVar("T")
reactor: Any = _reactor  # the installed reactor; its interfaces type poorly


class MatrixRequestError(Exception):
    """A non-2xx answer: the HTTP status and, when the body had them, errcode and error."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        self.error = body.get("error") if isinstance(body, dict) else None
        self.retry_after_ms = body.get("retry_after_ms") if isinstance(body, dict) else None
        super().__init__(f"{method} {path}: {status} {self.errcode or ''} {self.error or ''}"
                         .rstrip())


class RequestTimeout(Exception):
    """No complete answer within the client's timeout."""


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
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
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


@implementer(IBodyProducer)
class BytesProducer:
    """A request body already in memory, written in one go."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


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
        self._agent = Agent(reactor, pool=self._pool, connectTimeout=10)

    async def close(self) -> None:
        await self._pool.closeCachedConnections()

    async def request(self, method: str, path: str, body: Any = None,
                      token: str | None = None) -> Any:
        """One request; the parsed JSON body of a 2xx answer, else MatrixRequestError."""
        headers = Headers({b"Accept": [b"application/json"]})
        producer: Any = None  # an IBodyProducer
        if body is not None:
            headers.setRawHeaders(b"Content-Type", [b"application/json"])
            producer = BytesProducer(json.dumps(body).encode("utf-8"))
        if token is not None:
            headers.setRawHeaders(b"Authorization", [f"Bearer {token}".encode("ascii")])
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            d.cancel()

        d = defer.Deferred.fromCoroutine(self._fetch(
            method.encode("ascii"), (self.base_url + path).encode("ascii"), headers, producer))
        timer = reactor.callLater(self.timeout_s, expire)
        try:
            code, raw = await d
        except Exception:
            if timed_out:  # our cancel comes back as CancelledError or wrapped in another
                raise RequestTimeout(f"{method} {path}: no answer in {self.timeout_s}s") from None
            raise
        finally:
            if timer.active():
                timer.cancel()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if not 200 <= code < 300:
            raise MatrixRequestError(method, path, code, parsed)
        return parsed

    async def _fetch(self, method: bytes, url: bytes, headers: Headers,
                     producer: Any) -> tuple[int, bytes]:
        response = await self._agent.request(method, url, headers, producer)
        body: bytes = await readBody(response)
        return response.code, body

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

    async def sync(self, session: Session, *, since: str | None = None, timeout_ms: int = 0,
                   filter_json: dict[str, Any] | None = None,
                   set_presence: str | None = None) -> dict[str, Any]:
        """GET /sync, once (no retry): the parsed body.

        The client's own timeout must outlast ``timeout_ms`` for a long poll.
        """
        query = [f"timeout={timeout_ms}"]
        if since is not None:
            query.append(f"since={quote(since, safe='')}")
        if filter_json is not None:
            query.append("filter=" + quote(json.dumps(filter_json, separators=(",", ":")),
                                           safe=""))
        if set_presence is not None:
            query.append(f"set_presence={set_presence}")
        result: dict[str, Any] = await self.request(
            "GET", f"{CLIENT_V3}/sync?" + "&".join(query), token=session.access_token)
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
            if reactor.running:
                reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(wrapper()))
    reactor.run()
    if not outcome:
        raise KeyboardInterrupt("the reactor stopped before the run finished")
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result
