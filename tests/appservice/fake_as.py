"""A test application service: a real HTTP server on loopback.

It records every transaction (ID, events, the Authorization header), can be
told to fail the next transactions with a 500 (a service that is down), and
answers the homeserver's queries: a user or alias query calls the test's
``on_user`` / ``on_alias`` (which may register the user or make the alias
through the client API, as a real bridge does) and answers 200 when it
returns true, else 404; third-party lookups answer what ``protocols``,
``users`` and ``locations`` hold; ``/ping`` answers {}.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

Handler = Callable[[str], Awaitable[bool]]


class _Root(Resource):
    isLeaf = True

    def __init__(self, app: "FakeAppService") -> None:
        super().__init__()
        self.app = app

    def render(self, request: Any) -> Any:
        d = defer.ensureDeferred(self.app._handle(request))

        def done(result: tuple[int, Any]) -> None:
            code, body = result
            request.setResponseCode(code)
            request.setHeader(b"Content-Type", b"application/json")
            request.write(json.dumps(body).encode())
            request.finish()

        def failed(f: Any) -> None:
            request.setResponseCode(500)
            request.write(b"{}")
            request.finish()

        d.addCallbacks(done, failed)
        return NOT_DONE_YET


class FakeAppService:
    def __init__(self, hs_token: str = "hs-secret") -> None:
        self.hs_token = hs_token
        self.port: Any = None
        # (txn ID, events) in the order received, repeats included
        self.transactions: list[tuple[str, list[dict[str, Any]]]] = []
        # every transaction ID tried, failed tries included
        self.attempts: list[str] = []
        self.auth_headers: list[str | None] = []
        self.query_args: list[dict[str, list[str]]] = []
        self.fail_next = 0
        # while set, a transaction is answered only once it fires
        self.gate: defer.Deferred[None] | None = None
        self.on_user: Handler | None = None
        self.on_alias: Handler | None = None
        self.user_queries: list[str] = []
        self.alias_queries: list[str] = []
        self.protocols: dict[str, Any] = {}
        self.users: list[dict[str, Any]] = []
        self.locations: list[dict[str, Any]] = []
        self.pings: list[dict[str, Any]] = []
        # the ephemeral data of accepted transactions (receive_ephemeral)
        self.ephemeral: list[dict[str, Any]] = []
        self._waiters: list[defer.Deferred[None]] = []

    async def start(self) -> None:
        from twisted.internet import reactor

        self.port = reactor.listenTCP(0, Site(_Root(self)),  # type: ignore[attr-defined]
                                      interface="127.0.0.1")

    async def stop(self) -> None:
        if self.port is not None:
            port, self.port = self.port, None
            await port.stopListening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    # -- what the tests read --

    def events(self) -> list[dict[str, Any]]:
        """Every event received, once per transaction ID (repeats dropped, as a
        service does)."""
        seen: set[str] = set()
        out = []
        for txn_id, events in self.transactions:
            if txn_id in seen:
                continue
            seen.add(txn_id)
            out.extend(events)
        return out

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        from twisted.internet import reactor, task

        for _ in range(int(timeout / 0.02)):
            if check():
                return
            await task.deferLater(reactor, 0.02, lambda: None)  # type: ignore[arg-type]
        raise AssertionError("the application service did not get what was expected")

    # -- the HTTP side --

    async def _handle(self, request: Any) -> tuple[int, Any]:
        path = request.path.decode()
        method = request.method.decode()
        auth = request.getHeader(b"Authorization")
        self.auth_headers.append(auth.decode() if auth else None)
        if auth != f"Bearer {self.hs_token}".encode():
            return 403, {"errcode": "M_FORBIDDEN"}
        args = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        self.query_args.append(args)
        prefix = "/_matrix/app/v1/"
        if not path.startswith(prefix):
            return 404, {"errcode": "M_UNRECOGNIZED"}
        rest = path[len(prefix):]
        if method == "PUT" and rest.startswith("transactions/"):
            self.attempts.append(rest.split("/", 1)[1])
            if self.gate is not None:
                await self.gate
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500, {}
            body = json.loads(request.content.read())
            self.transactions.append((rest.split("/", 1)[1], body["events"]))
            self.ephemeral.extend(body.get("ephemeral", []))
            return 200, {}
        if method == "GET" and rest.startswith("users/"):
            user_id = unquote(rest.split("/", 1)[1])
            self.user_queries.append(user_id)
            ok = self.on_user is not None and await self.on_user(user_id)
            return (200, {}) if ok else (404, {"errcode": "M_NOT_FOUND"})
        if method == "GET" and rest.startswith("rooms/"):
            alias = unquote(rest.split("/", 1)[1])
            self.alias_queries.append(alias)
            ok = self.on_alias is not None and await self.on_alias(alias)
            return (200, {}) if ok else (404, {"errcode": "M_NOT_FOUND"})
        if method == "GET" and rest.startswith("thirdparty/protocol/"):
            protocol = unquote(rest.rsplit("/", 1)[1])
            if protocol in self.protocols:
                return 200, self.protocols[protocol]
            return 404, {"errcode": "M_NOT_FOUND"}
        if method == "GET" and rest.startswith("thirdparty/user"):
            return 200, self.users
        if method == "GET" and rest.startswith("thirdparty/location"):
            return 200, self.locations
        if method == "POST" and rest == "ping":
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500, {}
            self.pings.append(json.loads(request.content.read() or b"{}"))
            return 200, {}
        return 404, {"errcode": "M_UNRECOGNIZED"}
