"""Scenario ``scale_out``: one process against several (main, sync readers, event writers).

    python -m bench.scale_out [--size full|small|tiny] [--set receivers=[400]] [--json PATH]

Two stages per setup, both setups in one run on PostgreSQL:

- ``fanout``: the ``fanout`` scenario's steady load (``bench.fanout``: one
  room, N long-polling receivers, a sender posting ``messages`` messages
  open loop at ``rate`` per second);
- ``sends``: send throughput: ``send_rooms`` rooms, one sender each,
  ``send_messages`` messages in all, ``send_concurrency`` at a time (message
  k into room k mod R), each with a transaction ID of its own; every room
  read back with /messages afterwards (each message once).

The setups:

- ``one process``: ``homeserver run`` alone, no Redis (the embedded default);
- ``main + 2 sync readers + 2 event writers``: the same config with Redis
  (127.0.0.1:6379 or ``--redis``), two ``--worker`` sync readers and two
  event writers (``stream_writers: {events: [writer1, writer2]}``,
  docs/scale-out.md). Fan-out: the receivers are spread over the readers
  (receiver i to reader i mod 2, as a load balancer hashing users would),
  the sender posts to main (which forwards to the room's writer). Sends:
  message k goes to process k mod 3 of main and the two writers, as a load
  balancer's "sends to any process" route does; each forwards to the room's
  writer when it is not that writer.

Per setup: delivery latency p50/p99 (send issued to response parsed), the
fraction delivered, and the CPU time of every server process over the
measured phase; from it the CPU per delivery and deliveries per CPU-second,
the capacity model's figure (docs/scale-out.md). On a machine with fewer
cores than processes (the servers, PostgreSQL, Redis and this load generator
share them), latency says more about contention than about the design; CPU
per delivery is what carries over to a bigger machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.task import deferLater

from bench.client import MatrixClient, run
from bench.fanout import fanout_stage, latency_summary, raise_fd_limit
from bench.send import verify
from bench.server import (
    DEFAULT_PG_DSN,
    LocalServer,
    Target,
    cpu_seconds,
    free_port,
    source_revision,
    wait_for_versions,
)
from bench.sync import SETUP_CONCURRENCY, gather_bounded, register_users
from homeserver.replication.writers import room_writer

NAME = "scale_out"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"receivers": 1000, "messages": 50, "rate": 5.0, "drain_s": 30, "warm_up_s": 60,
             "send_rooms": 20, "send_messages": 3000, "send_concurrency": 40},
    "small": {"receivers": 300, "messages": 30, "rate": 5.0, "drain_s": 20, "warm_up_s": 30,
              "send_rooms": 20, "send_messages": 1000, "send_concurrency": 40},
    "tiny": {"receivers": 40, "messages": 10, "rate": 5.0, "drain_s": 10, "warm_up_s": 10,
             "send_rooms": 20, "send_messages": 200, "send_concurrency": 20},
}
READERS = 2
WRITERS = 2


class ScaledServer(LocalServer):
    """A main process (on the config ``LocalServer`` writes), sync readers
    and event writers."""

    def __init__(self, readers: int, redis: tuple[str, int], writers: int = 0,
                 **kwargs: Any) -> None:
        super().__init__("postgres", **kwargs)
        self.reader_count = readers
        self.writer_count = writers
        self.redis = redis
        self.reader_ports: dict[str, int] = {}
        self.writer_ports: dict[str, int] = {}
        self.reader_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.config_path: str | None = None

    def _write_config(self, config_path: str, port: int) -> str:
        secret = super()._write_config(config_path, port)
        with open(config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        config["server_name"] = self.server_name = f"bench{secrets.token_hex(4)}.test"
        config["listeners"][0]["x_forwarded"] = True
        config["redis"] = {"enabled": True, "host": self.redis[0], "port": self.redis[1]}
        self.reader_ports = {f"sync{i + 1}": free_port() for i in range(self.reader_count)}
        self.writer_ports = {f"writer{i + 1}": free_port() for i in range(self.writer_count)}
        config["instance_map"] = {"main": {"host": "127.0.0.1", "port": port},
                                  **{name: {"host": "127.0.0.1", "port": p}
                                     for name, p in self.writer_ports.items()}}
        config["workers"] = {name: {"worker_app": "sync_reader", "worker_listeners": [
            {"port": p, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]}]}
            for name, p in self.reader_ports.items()}
        for name, p in self.writer_ports.items():
            config["workers"][name] = {"worker_app": "event_writer", "worker_listeners": [
                {"port": p, "bind_addresses": ["127.0.0.1"], "x_forwarded": True,
                 "resources": [{"names": ["client"]}]}]}
        if self.writer_ports:
            config["stream_writers"] = {"events": list(self.writer_ports)}
        with open(config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        self.config_path = config_path
        return secret

    def start(self) -> Target:
        target = super().start()
        assert self.data_dir is not None and self.config_path is not None
        # the writers first: the readers wait for their positions
        for name, port in [*self.writer_ports.items(), *self.reader_ports.items()]:
            with open(os.path.join(self.data_dir, f"{name}.log"), "wb") as log:
                proc = subprocess.Popen(
                    [self.python, "-m", "homeserver.cli", "run", "--config", self.config_path,
                     "--worker", name], cwd=self.data_dir, env=self._env(),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            self.reader_procs[name] = proc
            wait_for_versions(f"http://127.0.0.1:{port}", self.startup_timeout_s, proc)
        return target

    @property
    def reader_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.reader_ports.values()]

    @property
    def writer_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.writer_ports.values()]

    @property
    def pids(self) -> list[int]:
        main = [self.proc.pid] if self.proc is not None else []
        return main + [p.pid for p in self.reader_procs.values()]

    @property
    def process_names(self) -> list[str]:
        """Who each of ``pids`` is."""
        return ["main", *self.reader_procs]

    def stop(self) -> int | None:
        for proc in self.reader_procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.reader_procs.clear()
        return super().stop()


async def verify_rooms(client: MatrixClient, senders: list[Any], rooms: list[str],
                       run_id: str, total: int) -> dict[str, int]:
    found = {"found": 0, "duplicates": 0}
    for r, room in enumerate(rooms):
        counts = await verify(client, senders[r], [room], run_id, total // len(rooms))
        found["found"] += counts["found"]
        found["duplicates"] += counts["duplicates"]
    return found


async def measure_sends(target: Target, params: dict[str, Any], send_urls: list[str],
                        writers: list[str], pids: list[int],
                        direct: bool = False) -> dict[str, Any]:
    """Send throughput over ``send_rooms`` rooms (module docstring).
    ``send_urls``: main's first, then the writers' (in ``writers``' order);
    message k goes to process k mod P, or with ``direct`` to the room's
    writer (as a client or balancer that knew the hash would)."""
    run_id = secrets.token_hex(3)
    rooms_n = int(params["send_rooms"])
    total = int(params["send_messages"])
    concurrency = int(params["send_concurrency"])
    setup = MatrixClient(target.base_url, connections=SETUP_CONCURRENCY * 2, timeout_s=300)
    clients = [MatrixClient(url, connections=concurrency, timeout_s=120) for url in send_urls]
    try:
        names = [f"so{run_id}w{i}" for i in range(rooms_n)]
        senders = await register_users(setup, target, names, secrets.token_urlsafe(12))
        rooms = await gather_bounded([partial(setup.create_room, s, preset="public_chat")
                                      for s in senders], limit=SETUP_CONCURRENCY)
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        indexes = iter(range(total))

        async def worker() -> None:
            for k in indexes:
                r = k % rooms_n
                which = writers.index(room_writer(rooms[r], writers)) + 1 if direct \
                    else k % len(clients)
                sent = time.perf_counter()
                try:
                    await clients[which].send_message(
                        senders[r], rooms[r], f"{run_id}.{k}",
                        {"msgtype": "m.text", "body": f"bench {run_id} {k}"})
                except Exception as e:  # counted, not fatal
                    errors[type(e).__name__] += 1
                else:
                    latencies.append(time.perf_counter() - sent)

        cpu_before = [cpu_seconds(pid) or 0.0 for pid in pids]
        started = time.perf_counter()
        await gather_bounded([worker for _ in range(concurrency)], limit=concurrency)
        wall_s = time.perf_counter() - started
        cpu_by_process = [round((cpu_seconds(pid) or 0.0) - before, 2)
                          for pid, before in zip(pids, cpu_before, strict=True)]
        # read back through main at once (each room's sender reads its own
        # messages: read-your-writes across processes), then once more
        # after 2 s if any was missing then (a loss, not a lag)
        found = await verify_rooms(setup, senders, rooms, run_id, total)
        if found["found"] < total:
            await deferLater(reactor, 2.0, lambda: None)
            found["found_after_2s"] = (await verify_rooms(
                setup, senders, rooms, run_id, total))["found"]
    finally:
        for c in [setup, *clients]:
            await c.close()
    per_writer = Counter(room_writer(room, writers) for room in rooms) if writers else {}
    server_cpu = sum(cpu_by_process)
    return {
        "rooms": rooms_n, "messages": total, "concurrency": concurrency,
        "sent_to": "the room's writer" if direct else f"process k mod {len(send_urls)}",
        "rooms_per_writer": dict(per_writer),
        "wall_s": round(wall_s, 2), "messages_per_s": round(len(latencies) / wall_s, 1),
        "latency_ms": latency_summary(latencies), "errors": dict(errors),
        "server_cpu_s": round(server_cpu, 2), "server_cpu_s_by_process": cpu_by_process,
        "server_cpu_ms_per_message": round(server_cpu * 1000 / len(latencies), 3)
        if latencies else None,
        "verified": found,
    }


async def measure(target: Target, params: dict[str, Any], receiver_urls: list[str] | None,
                  pids: list[int]) -> dict[str, Any]:
    """Accounts, one room, N joined receivers, then one fan-out stage."""
    run_id = secrets.token_hex(3)
    n = int(params["receivers"])
    client = MatrixClient(target.base_url, connections=SETUP_CONCURRENCY * 2, timeout_s=300)
    send_client = MatrixClient(target.base_url, connections=16, timeout_s=60)
    try:
        names = [f"so{run_id}s"] + [f"so{run_id}r{i}" for i in range(n)]
        sessions = await register_users(client, target, names, secrets.token_urlsafe(12))
        sender, receivers = sessions[0], sessions[1:]
        room_id = await client.create_room(sender, preset="public_chat")
        await gather_bounded([partial(client.join, s, room_id) for s in receivers],
                             limit=SETUP_CONCURRENCY)
        stage = await fanout_stage(client, send_client, target, "sync", sender, receivers,
                                   room_id, {**params, "transports": ["sync"]}, run_id,
                                   receiver_urls=receiver_urls, server_pids=pids)
    finally:
        await send_client.close()
        await client.close()
    delivered = stage["delivered_pairs"]
    cpu = stage["server_cpu_s"]
    stage["server_cpu_ms_per_delivery"] = round(cpu * 1000 / delivered, 3) \
        if cpu and delivered else None
    stage["deliveries_per_server_cpu_s"] = round(delivered / cpu) if cpu else None
    return stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override one parameter of the size, e.g. receivers=400")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN)
    parser.add_argument("--redis", default="127.0.0.1:6379", metavar="HOST:PORT")
    ns = parser.parse_args(argv)
    params = dict(SIZES[ns.size])
    for item in ns.set:
        key, _, value = item.partition("=")
        params[key] = json.loads(value)
    host, _, port = ns.redis.partition(":")
    redis = (host, int(port or 6379))
    raise_fd_limit()
    results: dict[str, Any] = {"scenario": NAME, "size": ns.size, "params": params,
                               "revision": source_revision(), "cpus": os.cpu_count(),
                               "setups": {}}
    print(f"{NAME} ({results['revision']}), size {ns.size}: {params}", flush=True)

    scaled_name = f"main + {READERS} sync readers + {WRITERS} event writers"
    results["uptime_before"] = _uptime()

    async def both() -> None:
        for setup in ("one process", scaled_name):
            scaled = setup != "one process"
            server: LocalServer = ScaledServer(READERS, redis, WRITERS, pg_dsn=ns.pg_dsn) \
                if scaled else LocalServer("postgres", pg_dsn=ns.pg_dsn)
            try:
                target = server.start()
                print(f"{setup}:", flush=True)
                extra: dict[str, Any] = {}
                if isinstance(server, ScaledServer):
                    pids = server.pids
                    extra["processes"] = server.process_names
                    stage = await measure(target, params, server.reader_urls, pids)
                    urls = [target.base_url, *server.writer_urls]
                    sends = await measure_sends(target, params, urls,
                                                list(server.writer_ports), pids)
                    extra["sends_to_the_writer"] = direct = await measure_sends(
                        target, params, urls, list(server.writer_ports), pids, direct=True)
                    print(f"  sends to the room's writer: {direct['messages_per_s']} "
                          f"messages/s, latency {direct['latency_ms']}, CPU s by process "
                          f"{direct['server_cpu_s_by_process']}, verified {direct['verified']}",
                          flush=True)
                else:
                    pids = [target.pid or 0]
                    stage = await measure(target, params, None, pids)
                    sends = await measure_sends(target, params, [target.base_url], [], pids)
                results["setups"][setup] = {**stage, "sends": sends, **extra}
                print(f"  fanout: CPU per delivery {stage['server_cpu_ms_per_delivery']} ms, "
                      f"{stage['deliveries_per_server_cpu_s']} deliveries per CPU-second; "
                      f"CPU s by process (main first) {stage['server_cpu_s_by_process']}",
                      flush=True)
                print(f"  sends: {sends['messages_per_s']} messages/s, latency "
                      f"{sends['latency_ms']}, CPU s by process {sends['server_cpu_s_by_process']}"
                      f", verified {sends['verified']}, errors {sends['errors']}", flush=True)
            finally:
                server.stop()
                time.sleep(1)

    run(both)
    results["uptime_after"] = _uptime()
    if ns.json:
        with open(ns.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0 if len(results["setups"]) == 2 else 1


def _uptime() -> str:
    """The machine's load average now (the figures are upper bounds under it)."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
