"""Request heads over Twisted's limits: a Matrix answer instead of a dropped connection.

Twisted's HTTP channel limits a request's head to 16 KiB (the request line
plus every header, ``totalHeadersSize``) and each line to 16 KiB
(``MAX_LENGTH``). Past the first it writes a bare ``400 Bad Request``; past
the second it closes the connection without a word, so a client with an
over-long URL (a huge filter in the query string, say) sees a network
error it cannot tell from an outage. Here both become what HTTP has for
them, with a Matrix error body a client can show:

- the request line too long: ``414 URI Too Long``;
- the headers too large in all, or one header line too long:
  ``431 Request Header Fields Too Large``.

The connection is closed after the answer (the rest of the head is not
read), as Twisted does for its own 400. The limits themselves stay
Twisted's.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from twisted.web.http import HTTPChannel

from homeserver.errors import Codes

logger = logging.getLogger(__name__)


def _response(status: bytes, message: str) -> bytes:
    body = json.dumps({"errcode": Codes.UNKNOWN, "error": message}).encode("ascii")
    return (b"HTTP/1.1 " + status + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(body)).encode("ascii") + b"\r\n\r\n" + body)


URI_TOO_LONG = _response(b"414 URI Too Long", "Request line too long")
HEADERS_TOO_LARGE = _response(b"431 Request Header Fields Too Large",
                              "Request headers too large")


class HeadLimitsChannel(HTTPChannel):
    """An HTTP channel that answers an oversized request head with 414 or 431."""

    _head_refused = False

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 (Twisted API)
        if self._head_refused:
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse_head(is_request_line=self._receivedHeaderSize == 0)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> Any:  # noqa: N802
        # the request line is the first line of a head: nothing of this
        # request has been counted yet
        self._refuse_head(is_request_line=self._receivedHeaderSize == 0)

    def _refuse_head(self, *, is_request_line: bool) -> None:
        self._head_refused = True
        transport: Any = self.transport
        logger.info("refusing a request from %s: %s over %d bytes",
                    getattr(transport.getPeer(), "host", "-"),
                    "request line" if is_request_line else "headers", self.totalHeadersSize)
        transport.write(URI_TOO_LONG if is_request_line else HEADERS_TOO_LARGE)
        self.loseConnection()
