"""The scrape and health endpoints: Prometheus' text at ``/_synapse/metrics``
(on an http listener naming the ``metrics`` resource) or at any path of a
``type: metrics`` listener, and ``GET /health`` for load balancers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.web.resource import Resource
from twisted.web.server import Request

if TYPE_CHECKING:
    from homeserver.metrics import Metrics

METRICS_PATH = b"/_synapse/metrics"
HEALTH_PATH = b"/health"


def write_metrics(request: Request, metrics: "Metrics") -> None:
    body, content_type = metrics.render()
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", content_type.encode("ascii"))
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    request.write(body)
    request.finish()


def write_health(request: Request) -> None:
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Content-Length", b"2")
    request.write(b"OK")
    request.finish()


class MetricsResource(Resource):
    """A ``type: metrics`` listener: the exposition at every path."""

    isLeaf = True

    def __init__(self, metrics: "Metrics") -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 - Twisted's name
        body, content_type = self.metrics.render()
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        return body
