"""A test push gateway: a real HTTP server on loopback.

It checks every POST /_matrix/push/v1/notify body against the request schema
of the spec's data/api/push-gateway/push_notifier.yaml (jsonschema, draft
2020-12 as OpenAPI 3.1 uses), records the valid ones, and answers
200 {"rejected": [...]} listing the pushkeys told to reject. On command it
fails the next requests with a 500, as a gateway that is down would.
A body that breaks the schema (or comes with a Content-Type other than
plain ``application/json``, which SyTest's gateway insists on) is answered
400 and kept in ``invalid``: a test asserts that list is empty. Given
``tls=(cert path, key path)`` it serves HTTPS with that certificate instead.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from twisted.internet import defer, ssl
from twisted.web.resource import Resource
from twisted.web.server import Site

SPEC = os.environ.get("MATRIX_SPEC_DIR", "/work/shared/matrix-spec")
SCHEMA_FILE = os.path.join(SPEC, "data/api/push-gateway/push_notifier.yaml")
NOTIFY_PATH = "/_matrix/push/v1/notify"


def notify_schema() -> dict[str, Any]:
    with open(SCHEMA_FILE, encoding="utf-8") as f:
        api = yaml.safe_load(f)
    schema: dict[str, Any] = (api["paths"]["/notify"]["post"]["requestBody"]["content"]
                              ["application/json"]["schema"])
    return schema


class _Notify(Resource):
    isLeaf = True

    def __init__(self, gateway: "PushGateway") -> None:
        super().__init__()
        self.gateway = gateway

    def render_POST(self, request: Any) -> bytes:
        gw = self.gateway
        request.setHeader(b"Content-Type", b"application/json")
        if request.path.decode() != NOTIFY_PATH:
            request.setResponseCode(404)
            return b'{"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}'
        if gw.fail_next > 0:
            gw.fail_next -= 1
            gw.failures += 1
            request.setResponseCode(500)
            return b'{"error": "down for maintenance"}'
        if request.getHeader(b"Content-Type") != b"application/json":
            gw.invalid.append(f"Content-Type {request.getHeader(b'Content-Type')!r}")
            request.setResponseCode(400)
            return b"{}"
        try:
            body = json.loads(request.content.read())
        except ValueError:
            gw.invalid.append("not JSON")
            request.setResponseCode(400)
            return b"{}"
        errors = sorted(gw.validator.iter_errors(body), key=str)
        if errors:
            gw.invalid.append("; ".join(e.message for e in errors))
            request.setResponseCode(400)
            return b"{}"
        gw.received.append(body)
        pushkeys = [d.get("pushkey") for d in body["notification"]["devices"]]
        rejected = [k for k in pushkeys if k in gw.reject]
        gw._wake()
        return json.dumps({"rejected": rejected}).encode()


class PushGateway:
    """``gw = PushGateway(); await gw.start()``; point pushers at ``gw.url``
    (``interface``: the loopback address it listens on)."""

    def __init__(self, interface: str = "127.0.0.1",
                 tls: tuple[str, str] | None = None) -> None:
        self.interface = interface
        self.tls = tls
        # TCP connections accepted: a blocked pusher must not even connect
        self.connections = 0
        self.validator = Draft202012Validator(notify_schema())
        self.received: list[dict[str, Any]] = []
        self.invalid: list[str] = []
        # pushkeys to list in "rejected"
        self.reject: set[str] = set()
        # answer 500 to this many next requests
        self.fail_next = 0
        self.failures = 0
        self._waiters: list[tuple[int, defer.Deferred[None]]] = []
        self._port: Any = None

    async def start(self) -> None:
        from twisted.internet import reactor as default_reactor

        reactor: Any = default_reactor
        site = Site(_Notify(self))
        build = site.buildProtocol

        def count_connection(addr: Any) -> Any:
            self.connections += 1
            return build(addr)
        site.buildProtocol = count_connection  # type: ignore[method-assign]
        if self.tls is None:
            self._port = reactor.listenTCP(0, site, interface=self.interface)
        else:
            cert_path, key_path = self.tls
            context = ssl.DefaultOpenSSLContextFactory(key_path, cert_path)
            self._port = reactor.listenSSL(0, site, context, interface=self.interface)

    @property
    def url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.interface}:{self._port.getHost().port}{NOTIFY_PATH}"

    async def stop(self) -> None:
        if self._port is not None:
            await self._port.stopListening()

    def notifications(self) -> list[dict[str, Any]]:
        return [body["notification"] for body in self.received]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The first ``count`` notifications, once they have arrived."""
        from twisted.internet import reactor

        if len(self.received) < count:
            d: defer.Deferred[None] = defer.Deferred()
            self._waiters.append((count, d))
            d.addTimeout(timeout, reactor)  # type: ignore[arg-type]
            try:
                await d
            except defer.TimeoutError:
                raise AssertionError(
                    f"push gateway got {len(self.received)} of {count} notifications"
                    f" (invalid: {self.invalid})") from None
        return self.notifications()[:count]

    def _wake(self) -> None:
        ready = [(n, d) for n, d in self._waiters if len(self.received) >= n]
        self._waiters = [(n, d) for n, d in self._waiters if len(self.received) < n]
        for _, d in ready:
            d.callback(None)
