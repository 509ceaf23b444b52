"""What an operator's Prometheus scrapes, and the load balancer's health check."""

from __future__ import annotations

from typing import Any

import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, task

from tests.harness import Client, TestServer
from tests.helpers import create_room, send_text

LISTENERS = [
    {"port": 0, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]},
    {"port": 0, "bind_addresses": ["127.0.0.1"], "type": "metrics"},
]


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus-client's own parser."""
    resp = await treq.get(url, reactor=reactor)
    assert resp.code == 200
    assert resp.headers.getRawHeaders(b"Content-Type")[0].startswith(b"text/plain")
    text = (await resp.content()).decode("utf-8")
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, lbls), v in samples.items()
               if n == name and all((k, want) in lbls for k, want in labels.items()))


def metrics_url(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.hs.ports[1].getHost().port}/metrics"


@pytest_twisted.ensureDeferred
async def test_requests_events_and_database_work_are_counted(make_server: Any) -> None:
    server: TestServer = await make_server(enable_metrics=True, listeners=LISTENERS)
    alice = await server.register("alice")
    room_id = await create_room(alice)
    for i in range(3):
        await send_text(alice, room_id, f"hello {i}", f"t{i}")
    before = await scrape(metrics_url(server))
    send = "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"
    assert total(before, "synapse_http_server_requests_received_total",
                 method="PUT", servlet=send) == 3
    assert total(before, "synapse_http_server_response_time_seconds_count",
                 method="PUT", servlet=send, code="200") == 3
    # the room's creation events and the three messages
    assert total(before, "synapse_storage_events_persisted_events_total") >= 8
    assert total(before, "synapse_storage_transaction_time_count") > 0
    assert total(before, "process_resident_memory_bytes") > 0
    # an unknown path counts too, under one name (no label per path)
    await alice.get("/_matrix/client/v3/no/such/thing")
    await send_text(alice, room_id, "one more", "t9")
    after = await scrape(metrics_url(server))
    assert total(after, "synapse_http_server_requests_received_total",
                 method="PUT", servlet=send) == 4
    assert total(after, "synapse_http_server_responses_total", method="GET", code="404") >= 1
    assert total(after, "synapse_storage_events_persisted_events_total") == \
        total(before, "synapse_storage_events_persisted_events_total") + 1


@pytest_twisted.ensureDeferred
async def test_waiting_syncs_show_as_listeners(make_server: Any) -> None:
    server: TestServer = await make_server(enable_metrics=True, listeners=LISTENERS)
    alice = await server.register("alice")
    room_id = await create_room(alice)
    first = await alice.get("/_matrix/client/v3/sync")
    assert first.code == 200
    waiting = defer.ensureDeferred(alice.get(
        "/_matrix/client/v3/sync", params={"since": first.body["next_batch"],
                                           "timeout": "20000"}))
    for _ in range(100):
        samples = await scrape(metrics_url(server))
        if total(samples, "synapse_notifier_listeners") == 1:
            break
        await task.deferLater(reactor, 0.05, lambda: None)
    assert total(samples, "synapse_notifier_listeners") == 1
    await send_text(alice, room_id, "wake up", "w1")
    assert (await waiting).code == 200
    assert total(await scrape(metrics_url(server)), "synapse_notifier_listeners") == 0


@pytest_twisted.ensureDeferred
async def test_client_listener_serves_metrics_only_when_named(make_server: Any) -> None:
    named: TestServer = await make_server(enable_metrics=True, listeners=[
        {"port": 0, "bind_addresses": ["127.0.0.1"],
         "resources": [{"names": ["client", "metrics"]}]}])
    scraped = await scrape(named.base_url + "/_synapse/metrics")
    assert total(scraped, "process_resident_memory_bytes") > 0
    plain: TestServer = await make_server(enable_metrics=True)
    resp = await plain.client().get("/_synapse/metrics")
    assert resp.code == 404 and resp.body["errcode"] == "M_UNRECOGNIZED"


@pytest_twisted.ensureDeferred
async def test_a_metrics_listener_needs_enable_metrics(make_server: Any) -> None:
    server: TestServer = await make_server(listeners=LISTENERS)
    # only the client listener is up
    assert len(server.hs.ports) == 1
    resp = await server.client().get("/_synapse/metrics")
    assert resp.code == 404


@pytest_twisted.ensureDeferred
async def test_health_answers_ok_on_every_listener(make_server: Any) -> None:
    server: TestServer = await make_server()
    resp = await treq.get(server.base_url + "/health", reactor=reactor)
    assert resp.code == 200
    assert await resp.content() == b"OK"
    client = Client(server.base_url)
    assert (await client.get("/_matrix/client/versions")).code == 200


@pytest_twisted.ensureDeferred
async def test_the_grafana_dashboard_reads_only_metrics_we_export(make_server: Any) -> None:
    """config/grafana-dashboard.json: every metric its queries name is in the
    scrape, so no panel of an operator's dashboard stays empty."""
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parent.parent / "config" /
                            "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = {m for e in exprs for m in re.findall(r"\b(?:synapse|python|process)_[a-z_]+", e)}
    assert len(named) >= 10
    server: TestServer = await make_server(enable_metrics=True, listeners=LISTENERS)
    alice = await server.register("alice")
    await send_text(alice, await create_room(alice), "hello", "t1")
    resp = await treq.get(metrics_url(server), reactor=reactor)
    text = (await resp.content()).decode("utf-8")
    exported = set()
    for family in text_string_to_metric_families(text):
        # a labelled family with nothing counted yet still declares itself
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
    exported.update(f"{name}_total" for name in list(exported))
    exported.update(f"{name}_{suffix}" for name in list(exported)
                    for suffix in ("bucket", "count", "sum"))
    assert sorted(named - exported) == []
