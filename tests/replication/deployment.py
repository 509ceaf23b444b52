"""A deployment of several real processes for the scale-out tests.

``homeserver run --config ... [--worker NAME]`` per process, on loopback,
on a fresh PostgreSQL database and the machine's Redis (127.0.0.1:6379, or
$HS_TEST_REDIS as host:port). Each deployment has its own server name, so
its Redis channel and keys are its own.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.harness import create_postgres_database, drop_postgres_database, terminate

REPO = Path(__file__).resolve().parent.parent.parent


def redis_address() -> tuple[str, int]:
    host, _, port = os.environ.get("HS_TEST_REDIS", "127.0.0.1:6379").partition(":")
    return host, int(port or 6379)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_command(*args: str) -> Any:
    """One Redis command over a plain socket (RESP); the reply decoded."""
    host, port = redis_address()
    with socket.create_connection((host, port), timeout=5) as sock:
        payload = f"*{len(args)}\r\n" + "".join(
            f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        sock.sendall(payload.encode())
        reader = sock.makefile("rb")
        line = reader.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else reader.read(n + 2)[:-2].decode()
        if kind == b":":
            return int(rest)
        if kind == b"-":
            raise RuntimeError(rest.decode())
        return rest.decode()


class Process:
    """One ``homeserver run``; its log goes to a file."""

    def __init__(self, config: Path, worker: str | None, port: int) -> None:
        self.config = config
        self.worker = worker
        self.port = port
        self.log = config.parent / f"{worker or 'main'}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "homeserver.cli", "run", "--config", str(self.config)]
        if self.worker:
            argv += ["--worker", self.worker]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.config.parent, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[offset:]
            if re.search(r"homeserver \S+ started", self.log.read_text()[offset:]):
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.worker or 'main'} did not start:\n"
                             + self.log.read_text()[offset:])

    def kill(self) -> None:
        """kill -9: no chance to finish anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        terminate(self.proc)


class Deployment:
    """A main process, sync readers and event writers sharing one config file."""

    def __init__(self, tmp_path: Path, readers: int = 2, writers: int = 0,
                 roles: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        """``roles``: more workers, name -> worker_app (federation_sender,
        pusher, media_repository); ``extra``: more config keys."""
        self.server_name = f"so{uuid.uuid4().hex[:10]}.test"
        self.database = create_postgres_database(migrated=True)
        host, port = redis_address()
        main_port = free_port()
        unlimited = {"per_second": 100000, "burst_count": 100000}
        reader_names = [f"sync{i + 1}" for i in range(readers)]
        reader_ports = {name: free_port() for name in reader_names}
        writer_names = [f"writer{i + 1}" for i in range(writers)]
        writer_ports = {name: free_port() for name in writer_names}
        config = {
            "server_name": self.server_name,
            "public_baseurl": f"http://127.0.0.1:{main_port}/",
            "listeners": [{"port": main_port, "bind_addresses": ["127.0.0.1"],
                           "x_forwarded": True, "resources": [{"names": ["client"]}]}],
            "database": {"name": "psycopg2", "args": self.database},
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "rc_message": unlimited, "rc_registration": unlimited,
            "rc_login": {"address": unlimited, "account": unlimited,
                         "failed_attempts": unlimited},
            "bcrypt_rounds": 4,
            "redis": {"enabled": True, "host": host, "port": port},
            "instance_map": {"main": {"host": "127.0.0.1", "port": main_port},
                             **{name: {"host": "127.0.0.1", "port": p}
                                for name, p in writer_ports.items()}},
            "workers": {name: {"worker_app": "sync_reader", "worker_listeners": [
                {"port": p, "bind_addresses": ["127.0.0.1"],
                 "resources": [{"names": ["client"]}]}]}
                for name, p in reader_ports.items()},
        }
        for name, p in writer_ports.items():
            config["workers"][name] = {"worker_app": "event_writer", "worker_listeners": [
                {"port": p, "bind_addresses": ["127.0.0.1"], "x_forwarded": True,
                 "resources": [{"names": ["client"]}]}]}
        if writer_names:
            config["stream_writers"] = {"events": writer_names}
        role_ports = {name: free_port() for name in roles or {}}
        for name, app in (roles or {}).items():
            config["workers"][name] = {"worker_app": app, "worker_listeners": [
                {"port": role_ports[name], "bind_addresses": ["127.0.0.1"],
                 "x_forwarded": True, "resources": [{"names": ["client"]}]}]}
        config.update(extra or {})
        self.config = tmp_path / "homeserver.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.main = Process(self.config, None, main_port)
        self.readers = {name: Process(self.config, name, p) for name, p in reader_ports.items()}
        self.writers = {name: Process(self.config, name, p) for name, p in writer_ports.items()}
        self.roles = {name: Process(self.config, name, p) for name, p in role_ports.items()}

    def start(self) -> None:
        self.main.start()
        for process in [*self.writers.values(), *self.readers.values(), *self.roles.values()]:
            process.start()

    def stop(self) -> None:
        for process in [*self.roles.values(), *self.readers.values(), *self.writers.values()]:
            process.stop()
        self.main.stop()
        drop_postgres_database(str(self.database["database"]))

    def kill_subscription(self, worker: str) -> int:
        """Close ``worker``'s Redis subscription from the Redis side."""
        name = f"homeserver/{self.server_name}/{worker}"
        killed = 0
        for line in str(redis_command("CLIENT", "LIST")).splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields.get("name") == name:
                killed += int(redis_command("CLIENT", "KILL", "ID", fields["id"]))
        return killed
