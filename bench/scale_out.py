"""Scenario ``scale_out``: fan-out on one process against main + sync readers.

    python -m bench.scale_out [--size full|small|tiny] [--set receivers=[400]] [--json PATH]

The ``fanout`` scenario's steady load (``bench.fanout``: one room, N
long-polling receivers, a sender posting ``messages`` messages open loop at
``rate`` per second), run twice in one run on PostgreSQL:

- ``one process``: ``homeserver run`` alone, no Redis (the embedded default);
- ``main + 2 sync readers``: the same config with Redis (127.0.0.1:6379 or
  ``--redis``) and two ``--worker`` sync readers (docs/scale-out.md); the
  receivers are spread over the readers (receiver i to reader i mod 2, as a
  load balancer hashing users would), the sender posts to main.

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
from functools import partial
from typing import Any

import yaml

from bench.client import MatrixClient, run
from bench.fanout import fanout_stage, raise_fd_limit
from bench.server import (
    DEFAULT_PG_DSN,
    LocalServer,
    Target,
    free_port,
    source_revision,
    wait_for_versions,
)
from bench.sync import SETUP_CONCURRENCY, gather_bounded, register_users

NAME = "scale_out"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"receivers": 1000, "messages": 50, "rate": 5.0, "drain_s": 30, "warm_up_s": 60},
    "small": {"receivers": 300, "messages": 30, "rate": 5.0, "drain_s": 20, "warm_up_s": 30},
    "tiny": {"receivers": 40, "messages": 10, "rate": 5.0, "drain_s": 10, "warm_up_s": 10},
}
READERS = 2


class ScaledServer(LocalServer):
    """A main process (on the config ``LocalServer`` writes) and sync readers."""

    def __init__(self, readers: int, redis: tuple[str, int], **kwargs: Any) -> None:
        super().__init__("postgres", **kwargs)
        self.reader_count = readers
        self.redis = redis
        self.reader_ports: dict[str, int] = {}
        self.reader_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.config_path: str | None = None

    def _write_config(self, config_path: str, port: int) -> str:
        secret = super()._write_config(config_path, port)
        with open(config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        config["server_name"] = self.server_name = f"bench{secrets.token_hex(4)}.test"
        config["listeners"][0]["x_forwarded"] = True
        config["redis"] = {"enabled": True, "host": self.redis[0], "port": self.redis[1]}
        config["instance_map"] = {"main": {"host": "127.0.0.1", "port": port}}
        self.reader_ports = {f"sync{i + 1}": free_port() for i in range(self.reader_count)}
        config["workers"] = {name: {"worker_app": "sync_reader", "worker_listeners": [
            {"port": p, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]}]}
            for name, p in self.reader_ports.items()}
        with open(config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        self.config_path = config_path
        return secret

    def start(self) -> Target:
        target = super().start()
        assert self.data_dir is not None and self.config_path is not None
        for name, port in self.reader_ports.items():
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
    def pids(self) -> list[int]:
        main = [self.proc.pid] if self.proc is not None else []
        return main + [p.pid for p in self.reader_procs.values()]

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

    async def both() -> None:
        for setup in ("one process", f"main + {READERS} sync readers"):
            scaled = setup != "one process"
            server: LocalServer = ScaledServer(READERS, redis, pg_dsn=ns.pg_dsn) if scaled \
                else LocalServer("postgres", pg_dsn=ns.pg_dsn)
            try:
                target = server.start()
                print(f"{setup}:", flush=True)
                if isinstance(server, ScaledServer):
                    stage = await measure(target, params, server.reader_urls, server.pids)
                else:
                    stage = await measure(target, params, None, [target.pid or 0])
                results["setups"][setup] = stage
                print(f"  CPU per delivery {stage['server_cpu_ms_per_delivery']} ms, "
                      f"{stage['deliveries_per_server_cpu_s']} deliveries per CPU-second; "
                      f"CPU s by process (main first) {stage['server_cpu_s_by_process']}",
                      flush=True)
            finally:
                server.stop()
                time.sleep(1)

    run(both)
    if ns.json:
        with open(ns.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0 if len(results["setups"]) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
