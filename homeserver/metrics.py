"""Prometheus metrics: what an operator graphs and alerts on.

One ``Metrics`` per server, each with its own registry (tests run several
servers in one process; a process-global registry would mix them). Names
follow Synapse's where the concept is the same, so existing dashboards mostly
work: ``synapse_http_server_*`` for requests, ``synapse_storage_*`` for the
database, ``synapse_util_caches_*`` for caches, ``synapse_federation_*`` for
the sender; ``process_*`` and ``python_gc_*`` come from prometheus-client.

Values that are state rather than events (waiting /sync requests, queued
federation PDUs, cache sizes) are read when scraped, from callbacks the server
registers with ``gauge``: nothing is counted twice and a scrape costs nothing
between scrapes.

Served when ``enable_metrics`` is true: on a ``type: metrics`` listener (any
path) and at ``/_synapse/metrics`` on an http listener whose resources name
``metrics`` (``docs/monitoring.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# seconds: from a fast API call to a long-poll that waits out its timeout
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# how late a reactor timer fires: a busy reactor delays every request
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
LAG_PROBE_INTERVAL_S = 1.0

GaugeReader = Callable[[], "float | dict[tuple[str, ...], float]"]


class _Gauges:
    """A collector of gauges read at scrape time."""

    def __init__(self) -> None:
        self._gauges: list[tuple[str, str, tuple[str, ...], GaugeReader]] = []

    def add(self, name: str, documentation: str, labels: tuple[str, ...],
            read: GaugeReader) -> None:
        self._gauges.append((name, documentation, labels, read))

    def collect(self) -> Iterator[Metric]:
        for name, documentation, labels, read in self._gauges:
            family = GaugeMetricFamily(name, documentation, labels=list(labels))
            value = read()
            if isinstance(value, dict):
                for label_values, v in value.items():
                    family.add_metric(list(label_values), v)
            else:
                family.add_metric([], value)
            yield family

    def describe(self) -> Iterable[Metric]:
        return []


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._gauges = _Gauges()
        self.registry.register(self._gauges)
        r = self.registry
        self.requests = Counter(
            "synapse_http_server_requests_received", "HTTP requests received, by endpoint",
            ["method", "servlet"], registry=r)
        self.responses = Counter(
            "synapse_http_server_responses", "HTTP responses sent, by status code",
            ["method", "code"], registry=r)
        self.response_time = Histogram(
            "synapse_http_server_response_time_seconds", "Time to answer an HTTP request",
            ["method", "servlet", "code"], buckets=LATENCY_BUCKETS, registry=r)
        self.events_persisted = Counter(
            "synapse_storage_events_persisted_events", "Events persisted (local and remote)",
            registry=r)
        self.transaction_time = Histogram(
            "synapse_storage_transaction_time", "Database transaction time, by name",
            ["desc"], buckets=LATENCY_BUCKETS, registry=r)
        self.federation_transactions = Counter(
            "synapse_federation_client_sent_transactions",
            "Federation transactions sent, by outcome", ["outcome"], registry=r)
        self.reactor_lag = Histogram(
            "python_twisted_reactor_tick_lag_seconds",
            "How late a timer fires on the reactor (a busy reactor delays every request)",
            buckets=LAG_BUCKETS, registry=r)
        self._probe: Any = None

    # -- what the server reports -----------------------------------------------

    def observe_request(self, method: str, servlet: str, code: int, seconds: float) -> None:
        servlet = servlet or "unknown"
        self.requests.labels(method, servlet).inc()
        self.responses.labels(method, str(code)).inc()
        self.response_time.labels(method, servlet, str(code)).observe(seconds)

    def observe_transaction(self, desc: str, seconds: float) -> None:
        """Called on database threads (prometheus-client is thread-safe)."""
        self.transaction_time.labels(desc).observe(seconds)

    def gauge(self, name: str, documentation: str, read: GaugeReader,
              labels: tuple[str, ...] = ()) -> None:
        """A gauge whose value ``read()`` gives at scrape time: a number, or
        label values -> number when ``labels`` are named."""
        self._gauges.add(name, documentation, labels, read)

    # -- the reactor ------------------------------------------------------------

    def start_lag_probe(self, clock: Any) -> None:
        """Measure, once a second, how late a timer fires."""
        def probe(scheduled: float) -> None:
            self.reactor_lag.observe(max(0.0, time.monotonic() - scheduled))
            schedule()

        def schedule() -> None:
            due = time.monotonic() + LAG_PROBE_INTERVAL_S
            self._probe = clock.callLater(LAG_PROBE_INTERVAL_S, probe, due)

        schedule()

    def stop(self) -> None:
        if self._probe is not None and self._probe.active():
            self._probe.cancel()
        self._probe = None

    # -- the scrape -------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
