"""The requests this server makes to application services
(``data/api/application-service/`` in the spec).

Every request carries the service's ``hs_token`` as ``Authorization:
Bearer``; with ``use_appservice_legacy_authorization: true`` also as the
``access_token`` query parameter (Synapse's key and default). A service's URL
is the operator's choice, not a user's, so, as on Synapse,
``ip_range_blacklist`` does not apply to it (a bridge on localhost is the
usual case); the request still goes through ``http/outbound.py``'s guarded
agent, with an empty filter.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from twisted.internet import defer
from twisted.web.http_headers import Headers

from homeserver.errors import MatrixError
from homeserver.http.outbound import IPFilter, guarded_agent, https_policy

if TYPE_CHECKING:
    from homeserver.appservice.registration import ApplicationService
    from homeserver.context import ServerContext

logger = logging.getLogger(__name__)

APP_V1 = "/_matrix/app/v1"
# the most a third-party lookup answer is read
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class AppServiceError(Exception):
    """A request to a service failed: it could not be reached, timed out or
    answered with a status other than 2xx (``status``)."""

    def __init__(self, message: str, status: int | None = None,
                 timed_out: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.timed_out = timed_out


class AppServiceClient:
    """HTTP to the application services."""

    def __init__(self, ctx: "ServerContext") -> None:
        self.ctx = ctx
        # attributes so tests can shorten them
        self.connect_timeout_s = 15.0
        self.transaction_timeout_s = 60.0
        self.query_timeout_s = 30.0
        # (service ID, protocol) -> (expiry in ms, metadata), as Synapse keeps
        # it for an hour: clients ask for it often and it rarely changes
        self._protocol_cache: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.protocol_cache_ms = 3_600_000
        self._pool: Any = None  # with the first request: Twisted's HTTP client loads then
        self._agent: Any = None

    def _agent_for_requests(self) -> Any:
        if self._agent is None:
            from twisted.web.client import HTTPConnectionPool

            self._pool = HTTPConnectionPool(self.ctx.reactor)
            self._pool.maxPersistentPerHost = 4
            self._agent = guarded_agent(self.ctx.reactor, IPFilter([], []),
                                        connect_timeout_s=self.connect_timeout_s,
                                        pool=self._pool,
                                        context_factory=https_policy(self.ctx.config))
        return self._agent

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.closeCachedConnections()

    def _url(self, service: "ApplicationService", path: str,
             args: list[tuple[str, str]] | None = None) -> str:
        args = list(args or [])
        if self.ctx.config.use_appservice_legacy_authorization:
            args.append(("access_token", service.hs_token))
        url = f"{service.url}{path}"
        return f"{url}?{urlencode(args)}" if args else url

    async def _request(self, service: "ApplicationService", method: str, path: str, *,
                       args: list[tuple[str, str]] | None = None, body: Any = None,
                       timeout_s: float) -> Any:
        """The service's JSON answer to one request; AppServiceError if none."""
        if not service.url:
            raise AppServiceError("the application service has no URL")
        headers = Headers({b"Authorization": [f"Bearer {service.hs_token}".encode()]})
        data = None
        if body is not None:
            headers.addRawHeader(b"Content-Type", b"application/json")
            data = json.dumps(body).encode("utf-8")
        import treq

        try:
            resp = await treq.request(method, self._url(service, path, args), data=data,
                                      headers=headers,
                                      agent=self._agent_for_requests(),
                                      timeout=timeout_s, reactor=self.ctx.reactor)
            content = await resp.content()
        except defer.CancelledError:
            raise AppServiceError(f"{method} {path}: timed out", timed_out=True) from None
        except Exception as e:
            raise AppServiceError(f"{method} {path}: {type(e).__name__}") from None
        if not 200 <= resp.code < 300:
            raise AppServiceError(f"{method} {path}: answered {resp.code}", status=resp.code)
        if len(content) > MAX_ANSWER_BYTES:
            raise AppServiceError(f"{method} {path}: answer too large")
        try:
            return json.loads(content) if content else {}
        except ValueError:
            raise AppServiceError(f"{method} {path}: answer is not JSON") from None

    # -- the push side ----------------------------------------------------------

    async def push_transaction(self, service: "ApplicationService", txn_id: int,
                               events: list[dict[str, Any]],
                               ephemeral: list[dict[str, Any]] | None = None) -> None:
        """PUT /transactions/{txnId}; AppServiceError unless acknowledged."""
        body: dict[str, Any] = {"events": events}
        if ephemeral:
            body["ephemeral"] = ephemeral
            body["de.sorunome.msc2409.ephemeral"] = ephemeral
        await self._request(service, "PUT", f"{APP_V1}/transactions/{txn_id}", body=body,
                            timeout_s=self.transaction_timeout_s)

    # -- queries ------------------------------------------------------------------

    async def query_user(self, service: "ApplicationService", user_id: str) -> bool:
        """GET /users/{userId}: True when the service says it made the user."""
        try:
            await self._request(service, "GET", f"{APP_V1}/users/{quote(user_id)}",
                                timeout_s=self.query_timeout_s)
        except AppServiceError as e:
            if e.status != 404:
                logger.info("application service %s: user query failed: %s", service.id, e)
            return False
        return True

    async def query_alias(self, service: "ApplicationService", alias: str) -> bool:
        """GET /rooms/{roomAlias}: True when the service says it made the alias."""
        try:
            await self._request(service, "GET", f"{APP_V1}/rooms/{quote(alias)}",
                                timeout_s=self.query_timeout_s)
        except AppServiceError as e:
            if e.status != 404:
                logger.info("application service %s: alias query failed: %s", service.id, e)
            return False
        return True

    async def get_protocol(self, service: "ApplicationService",
                           protocol: str) -> dict[str, Any] | None:
        """GET /thirdparty/protocol/{protocol}: the service's metadata, or None."""
        key = (service.id, protocol)
        cached = self._protocol_cache.get(key)
        if cached is not None and cached[0] > self.ctx.now_ms():
            return cached[1]
        try:
            answer = await self._request(
                service, "GET", f"{APP_V1}/thirdparty/protocol/{quote(protocol, safe='')}",
                timeout_s=self.query_timeout_s)
        except AppServiceError as e:
            logger.info("application service %s: protocol query failed: %s", service.id, e)
            return None
        if not isinstance(answer, dict):
            return None
        self._protocol_cache[key] = (self.ctx.now_ms() + self.protocol_cache_ms, answer)
        return answer

    async def query_3pe(self, service: "ApplicationService", kind: str, protocol: str | None,
                        fields: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """GET /thirdparty/{user|location}[/{protocol}]: the service's matches."""
        path = f"{APP_V1}/thirdparty/{kind}"
        if protocol is not None:
            path += f"/{quote(protocol, safe='')}"
        try:
            answer = await self._request(service, "GET", path, args=fields,
                                         timeout_s=self.query_timeout_s)
        except AppServiceError as e:
            logger.info("application service %s: %s lookup failed: %s", service.id, kind, e)
            return []
        if not isinstance(answer, list):
            return []
        return [item for item in answer if isinstance(item, dict)]

    async def ping(self, service: "ApplicationService", transaction_id: str | None) -> int:
        """POST /ping; the round trip in milliseconds (MatrixError as the spec says)."""
        body: dict[str, Any] = {}
        if transaction_id is not None:
            body["transaction_id"] = transaction_id
        start = time.monotonic()
        try:
            await self._request(service, "POST", f"{APP_V1}/ping", body=body,
                                timeout_s=self.query_timeout_s)
        except AppServiceError as e:
            if e.timed_out:
                raise MatrixError(504, "M_CONNECTION_TIMEOUT",
                                  "Connection to the application service timed out") from None
            if e.status is not None:
                err = MatrixError(502, "M_BAD_STATUS",
                                  f"The application service answered {e.status}")
                err.extra["status"] = e.status
                raise err from None
            raise MatrixError(502, "M_CONNECTION_FAILED",
                              "Could not reach the application service") from None
        return int((time.monotonic() - start) * 1000)
