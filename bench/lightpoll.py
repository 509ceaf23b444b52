"""Long-poll receivers that cost the load generator little: raw HTTP/1.1.

At 1,000 receivers and 5 messages a second, ``bench.sync.HttpReceivers``
(Twisted's ``Agent``, a full JSON parse per response) needs more than a core
of the load generator's own: on a 2-core machine that shares its cores with
the server and PostgreSQL, the latencies it reports are then the load
generator's queue, not the server's. ``LightReceivers`` has the same
interface and meaning but speaks HTTP/1.1 by hand on one persistent
connection per receiver (Content-Length and chunked bodies both), and reads
from each response only what the measurement needs: ``next_batch`` and the
``"body"`` strings of the messages (a regular expression over the bytes,
which is what parsing the JSON and walking to them would find, since every
message body the benchmark sends is unique and appears once per event). It
is used against our server and Synapse alike.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import quote, urlsplit

from twisted.internet import defer, protocol
from twisted.internet import reactor as _reactor

from bench.client import Session
from bench.sync import LONG_POLL_MS, SYNC_FILTER, Tracker, sleep, within

reactor: Any = _reactor

_NEXT_BATCH = re.compile(rb'"next_batch"\s*:\s*"([^"\\]+)"')
_POS = re.compile(rb'"pos"\s*:\s*"([^"\\]+)"')
SLIDING_SYNC_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
_BODY = re.compile(rb'"body"\s*:\s*"((?:[^"\\]|\\.)*)"')


def message_bodies(body: bytes) -> list[str]:
    """The ``"body"`` strings of a sync response, JSON-unescaped."""
    return [json.loads(b'"' + m + b'"') for m in _BODY.findall(body)]


class _Poller(protocol.Protocol):
    """One receiver's connection: request, response, request again."""

    def __init__(self, owner: "LightReceivers", index: int, since: str) -> None:
        self.owner = owner
        self.index = index
        self.since = since
        self.buffer = b""
        self.connected_once: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        if not self.connected_once.called:
            self.connected_once.callback(None)
        self._request()

    def _request(self) -> None:
        transport: Any = self.transport
        transport.write(self.owner.request(self.index, self.since))

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.buffer += data
        while True:
            body = self._take_response()
            if body is None:
                return
            now = time.perf_counter()
            status, payload = body
            if status != 200:
                self.owner.tracker.error(f"status {status}",
                                         f"receiver {self.index}: {payload[:200]!r}")
            else:
                token = self.owner.token(payload)
                if token is not None:
                    self.since = token
                self.owner.tracker.observe_texts(self.index, message_bodies(payload), now)
            if self.owner.stopping:
                transport: Any = self.transport
                transport.loseConnection()
                return
            self._request()

    def _take_response(self) -> tuple[int, bytes] | None:
        """One complete response off the buffer, or None if it is not all here."""
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = self.buffer[:head_end].decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        rest = self.buffer[head_end + 4:]
        if "content-length" in headers:
            length = int(headers["content-length"])
            if len(rest) < length:
                return None
            self.buffer = rest[length:]
            return status, rest[:length]
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            pos = 0
            while True:
                line_end = rest.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                size = int(rest[pos:line_end].split(b";")[0], 16)
                start = line_end + 2
                if size == 0:
                    trailer_end = rest.find(b"\r\n", start)
                    if trailer_end < 0:
                        return None
                    self.buffer = rest[trailer_end + 2:]
                    return status, b"".join(chunks)
                if len(rest) < start + size + 2:
                    return None
                chunks.append(rest[start:start + size])
                pos = start + size + 2
        self.buffer = rest  # no body
        return status, b""

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.owner.closed(self.index)


class _OneConnection(protocol.ClientFactory):
    def __init__(self, owner: "LightReceivers", poller: _Poller) -> None:
        self.owner = owner
        self.poller = poller

    def buildProtocol(self, addr: Any) -> _Poller:  # noqa: N802
        return self.poller

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:  # noqa: N802
        self.owner.tracker.error("connect failed", f"receiver {self.poller.index}: {reason}")
        self.owner.closed(self.poller.index)


class LightReceivers:
    """N long-poll loops over raw HTTP/1.1, one persistent connection each;
    the interface of ``bench.sync.HttpReceivers``."""

    def __init__(self, base_url: str, sessions: list[Session], tracker: Tracker,
                 sync_filter: dict[str, Any] | None = None) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.host_header = parts.netloc
        self.sessions = sessions
        self.tracker = tracker
        self.filter_q = quote(json.dumps(SYNC_FILTER if sync_filter is None else sync_filter,
                                         separators=(",", ":")), safe="")
        self.stopping = False
        self.pollers: list[_Poller] = []
        self._closed: list[defer.Deferred[None]] = []

    def request(self, index: int, since: str) -> bytes:
        """The next long-poll of receiver ``index``, from ``since``."""
        path = (f"/_matrix/client/v3/sync?timeout={LONG_POLL_MS}"
                f"&since={quote(since, safe='')}&filter={self.filter_q}")
        return (f"GET {path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"Authorization: Bearer {self.sessions[index].access_token}\r\n"
                "Accept: application/json\r\n\r\n").encode("ascii")

    def token(self, payload: bytes) -> str | None:
        """Where the next long-poll starts, from a response."""
        found = _NEXT_BATCH.search(payload)
        return found.group(1).decode("ascii") if found is not None else None

    def start(self, since: list[str]) -> None:
        for i in range(len(self.sessions)):
            poller = _Poller(self, i, since[i])
            self.pollers.append(poller)
            self._closed.append(defer.Deferred())
            reactor.connectTCP(self.host, self.port, _OneConnection(self, poller), timeout=30)

    def closed(self, index: int) -> None:
        if not self.stopping:
            self.tracker.error("connection lost", f"receiver {index}")
        done = self._closed[index]
        if not done.called:
            done.callback(None)

    async def ready(self) -> None:
        await within(defer.DeferredList([p.connected_once for p in self.pollers]), 60.0)
        # a long poll has no answer to wait for: give every request time to arrive
        await sleep(1.0 + 0.002 * len(self.sessions))

    async def stop(self) -> None:
        self.stopping = True
        for poller in self.pollers:
            transport: Any = poller.transport
            if transport is not None:
                transport.loseConnection()
        await within(defer.DeferredList(self._closed), 10.0)


class SpreadReceivers(LightReceivers):
    """``LightReceivers`` whose connections go to several servers in turn
    (receiver i to ``base_urls[i % len(base_urls)]``): clients spread over
    the sync processes of one deployment by a load balancer."""

    def __init__(self, base_urls: list[str], sessions: list[Session], tracker: Tracker,
                 sync_filter: dict[str, Any] | None = None) -> None:
        super().__init__(base_urls[0], sessions, tracker, sync_filter)
        self.addresses = [(urlsplit(u).hostname or "127.0.0.1", urlsplit(u).port or 80)
                          for u in base_urls]

    def start(self, since: list[str]) -> None:
        for i in range(len(self.sessions)):
            poller = _Poller(self, i, since[i])
            self.pollers.append(poller)
            self._closed.append(defer.Deferred())
            host, port = self.addresses[i % len(self.addresses)]
            reactor.connectTCP(host, port, _OneConnection(self, poller), timeout=30)


class SlidingReceivers(LightReceivers):
    """``LightReceivers`` over simplified sliding sync (MSC4186): each
    receiver long-polls its own connection (``conn_id``) with the request
    body ``body`` and the previous response's ``pos``."""

    def __init__(self, base_url: str, sessions: list[Session], tracker: Tracker,
                 body: dict[str, Any]) -> None:
        super().__init__(base_url, sessions, tracker)
        self.body = json.dumps(body, separators=(",", ":")).encode()

    def request(self, index: int, since: str) -> bytes:
        path = f"{SLIDING_SYNC_PATH}?timeout={LONG_POLL_MS}&pos={quote(since, safe='')}"
        return (f"POST {path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"Authorization: Bearer {self.sessions[index].access_token}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\n"
                "Accept: application/json\r\n\r\n").encode("ascii") + self.body

    def token(self, payload: bytes) -> str | None:
        found = _POS.search(payload)
        return found.group(1).decode("ascii") if found is not None else None
