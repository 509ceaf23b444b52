"""Start this homeserver for a benchmark run, and watch its process.

``LocalServer`` runs ``homeserver init`` into a temporary directory, lifts the
rate limits in the YAML it wrote (a load test measures throughput, not the
limiter), sets ``bcrypt_rounds`` to 4 (``BENCH_BCRYPT_ROUNDS``: setup speed,
the same for Synapse), keeps presence on, points it at SQLite or at a fresh
PostgreSQL database
``bench_<random>``, and runs ``homeserver run`` as a subprocess on a free
loopback port. ``start()`` returns once ``/versions`` answers and the process
has sat idle for a moment, then records its resident memory; ``stop()`` sends
SIGTERM, drops the database and removes the directory.

A run is described by a ``Target``: a base URL, the registration shared
secret and, when the process is on this machine, its PID (for memory and CPU
figures). Anything that can produce a ``Target`` can be measured - this
module for our server; a Synapse started the same way later - and the load
tools speak only the client-server API to it.

    python -m bench.server --engine postgres   # serve until ^C; prints URL and secret

Federation scenarios pass ``federation=FederationTLS(...)``: the server is
then named ``localhost:P`` and gets a second listener on P, TLS with the
given certificate, serving the federation API (the spec's "hostname with
explicit port" rule: peers connect straight to P and check a certificate
for ``localhost``); it trusts the given CA and may reach loopback peers
(``ip_range_whitelist``), as tests/federation/harness.py sets our test
servers up. ``extra_config`` is merged into the YAML last. Both default to
nothing, which leaves the plain client-API server every other scenario uses.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
# High enough that no limiter ever answers 429 during a run.
UNLIMITED = {"per_second": 1_000_000.0, "burst_count": 1_000_000.0}
ENGINES = ("sqlite", "postgres")
# Both servers hash passwords with 4 bcrypt rounds instead of 12 in a bench run. Setup
# speed only: registering 1,000 benchmark users at 12 rounds takes minutes of CPU on
# either server, and no scenario measures password hashing (a login storm would have
# to put this back).
BENCH_BCRYPT_ROUNDS = 4
PG_SETTINGS_OF_NOTE = ("fsync", "synchronous_commit", "shared_buffers", "max_connections")


@dataclass(frozen=True)
class Target:
    """A homeserver to load: where it answers and how to make accounts on it."""

    name: str  # e.g. "homeserver/sqlite"; later "synapse/postgres"
    base_url: str
    shared_secret: str
    pid: int | None = None  # set when the process runs on this machine
    server_name: str | None = None  # its Matrix server name, when it federates


@dataclass(frozen=True)
class FederationTLS:
    """What a bench server needs to federate over TLS on loopback.

    One certificate serves every server of a run: it is for ``localhost``
    (and 127.0.0.1, ::1), whatever the port in the server name.
    """

    cert_path: str
    key_path: str
    ca_cert_path: str  # the CA every federating server of the run trusts


def federation_listener(port: int, *, synapse: bool = False) -> dict[str, Any]:
    """The TLS federation listener on ``port`` (loopback only)."""
    listener: dict[str, Any] = {"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
                                "tls": True, "x_forwarded": False,
                                "resources": [{"names": ["federation"]}]}
    if synapse:
        listener["resources"][0]["compress"] = False
    return listener


def federation_settings(tls: FederationTLS, port: int) -> dict[str, Any]:
    """The config keys, the same for ours and Synapse, of a server federating on ``port``."""
    return {
        "server_name": f"localhost:{port}",
        "tls_certificate_path": tls.cert_path,
        "tls_private_key_path": tls.key_path,
        "federation_custom_ca_list": [tls.ca_cert_path],
        # the default ip_range_blacklist refuses loopback (SSRF protection)
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
    }


# --- process figures (Linux /proc) -------------------------------------------------

def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # "VmRSS:   51234 kB"
    except OSError:
        return None
    return None


def rss_kib(pid: int) -> int | None:
    """Resident memory now (VmRSS), in KiB."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int | None:
    """The most resident memory the process has had (VmHWM), in KiB."""
    return _status_kib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time the process has used so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def source_revision() -> str:
    """The commit the server was run from, "+dirty" when the tree has changes."""
    def git(*args: str) -> str:
        # --no-optional-locks: reading must not refresh (write) the index
        return subprocess.run(["git", "--no-optional-locks", "-C", str(REPO_ROOT), *args],
                              capture_output=True, text=True, check=True).stdout.strip()
    try:
        rev = git("rev-parse", "--short", "HEAD")
        return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_versions(base_url: str, timeout_s: float, proc: subprocess.Popen[Any]) -> None:
    """Poll GET /versions until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout_s
    url = base_url.rstrip("/") + "/_matrix/client/versions"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer from {url} after {timeout_s:.0f}s")
        time.sleep(0.1)


# --- our server ------------------------------------------------------------------------

def create_bench_database(pg_dsn: str, prefix: str) -> tuple[str, str, dict[str, str]]:
    """A fresh database (UTF-8, C collation: what our README and Synapse ask
    for): its name, its DSN, and the server settings to keep with the figures
    (commit durability decides much of a write benchmark)."""
    import psycopg2
    import psycopg2.extensions

    name = prefix + secrets.token_hex(4)
    conn = psycopg2.connect(pg_dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' "
                        "LC_CTYPE 'C' TEMPLATE template0")
            cur.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                        (list(PG_SETTINGS_OF_NOTE),))
            settings = dict(cur.fetchall())
            cur.execute("SHOW server_version")
            settings["server_version"] = cur.fetchone()[0]
    finally:
        conn.close()
    return name, psycopg2.extensions.make_dsn(pg_dsn, dbname=name), settings


class ProcessServer:
    """A server process for one bench run and the throwaway things it owns.

    Subclasses start ``self.proc`` in ``data_dir`` and say how to drop their
    database; stopping and cleaning up is the same for ours and Synapse.
    """

    proc: subprocess.Popen[bytes] | None = None
    data_dir: str | None = None
    keep: bool = False

    def _drop_database(self) -> None:
        raise NotImplementedError

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 30s), drop the database, remove the directory.

        Returns the exit status, None if it never started.
        """
        status = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            status = self.proc.returncode
            self.proc = None
        try:
            self._drop_database()
        finally:
            if self.data_dir and not self.keep:
                shutil.rmtree(self.data_dir, ignore_errors=True)
        return status

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalServer(ProcessServer):
    """One ``homeserver run`` in a temporary directory, on SQLite or a fresh PG database."""

    def __init__(self, engine: str, *, pg_dsn: str = DEFAULT_PG_DSN,
                 python: str = sys.executable, keep: bool = False,
                 startup_timeout_s: float = 60.0, idle_settle_s: float = 2.0,
                 federation: FederationTLS | None = None,
                 extra_config: dict[str, Any] | None = None) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        self.engine = engine
        self.pg_dsn = pg_dsn
        self.python = python
        self.keep = keep
        self.startup_timeout_s = startup_timeout_s
        self.idle_settle_s = idle_settle_s
        self.federation = federation
        self.extra_config = dict(extra_config or {})
        self.server_name: str | None = None  # set by start()
        self.data_dir: str | None = None
        self.database: str | None = None  # the PG database we created
        self.database_settings: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.idle_rss_kib: int | None = None
        self.startup_s: float | None = None

    @property
    def log_path(self) -> str | None:
        return os.path.join(self.data_dir, "homeserver.log") if self.data_dir else None

    def _homeserver(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.python, "-m", "homeserver.cli", *args], cwd=REPO_ROOT,
                              env=self._env(), capture_output=True, text=True, **kwargs)

    def _env(self) -> dict[str, str]:
        # the working tree's code, whatever is installed in the interpreter
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def _create_database(self) -> str:
        self.database, dsn, self.database_settings = create_bench_database(self.pg_dsn, "bench_")
        return dsn

    def _drop_database(self) -> None:
        if self.database is None:
            return
        import psycopg2

        conn = psycopg2.connect(self.pg_dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        finally:
            conn.close()
        self.database = None

    def _write_config(self, config_path: str, port: int) -> str:
        """Lift the rate limits, cheapen bcrypt, set the port; the registration shared secret."""
        with open(config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        config["listeners"][0]["port"] = port
        config["public_baseurl"] = f"http://127.0.0.1:{port}/"
        config["rc_message"] = dict(UNLIMITED)
        config["rc_registration"] = dict(UNLIMITED)
        config["rc_login"] = {kind: dict(UNLIMITED)
                              for kind in ("address", "account", "failed_attempts")}
        config["rc_admin_redaction"] = dict(UNLIMITED)
        config["bcrypt_rounds"] = BENCH_BCRYPT_ROUNDS
        config["presence"] = {"enabled": True}  # the default, said out loud: Synapse has it on
        if self.federation is not None:
            federation_port = free_port()
            config["listeners"].append(federation_listener(federation_port))
            config.update(federation_settings(self.federation, federation_port))
        config.update(self.extra_config)
        self.server_name = str(config["server_name"])
        with open(config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        secret: str = config["registration_shared_secret"]
        return secret

    def start(self) -> Target:
        self.data_dir = tempfile.mkdtemp(prefix=f"bench-hs-{self.engine}-")
        config_path = os.path.join(self.data_dir, "homeserver.yaml")
        init = ["init", "--server-name", "localhost", "--config", config_path]
        if self.engine == "postgres":
            init += ["--database", "postgres", "--database-url", self._create_database()]
        done = self._homeserver(*init)
        if done.returncode != 0:
            raise RuntimeError(f"homeserver init failed: {done.stderr.strip()}")
        port = free_port()
        secret = self._write_config(config_path, port)
        base_url = f"http://127.0.0.1:{port}"
        assert self.log_path is not None
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "homeserver.cli", "run", "--config", config_path],
                cwd=REPO_ROOT, env=self._env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        try:
            wait_for_versions(base_url, self.startup_timeout_s, self.proc)
        except RuntimeError as e:
            raise RuntimeError(f"{e}; log:\n{self.log_tail()}") from None
        self.startup_s = time.monotonic() - started
        time.sleep(self.idle_settle_s)
        self.idle_rss_kib = rss_kib(self.proc.pid)
        return Target(f"homeserver/{self.engine}", base_url, secret, self.proc.pid,
                      self.server_name)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return "(no log)"
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])


def finish_run(server: ProcessServer, results: dict[str, Any], json_path: str | None,
               keep: bool) -> None:
    """The end of a benchmark run, whatever happened: the server stopped (its
    database dropped, its directory removed unless ``keep``), the results
    written as JSON to ``json_path`` when given."""
    results["server_exit_status"] = server.stop()
    if keep:
        print(f"kept {server.data_dir}", file=sys.stderr)
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so a ``with LocalServer`` cleans up.

    Also when started in the background, where a shell leaves SIGINT ignored.
    """
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server",
                                     description="Serve a throwaway homeserver for a bench run")
    parser.add_argument("--engine", choices=ENGINES, default="sqlite")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN,
                        help="where to create (and drop) the bench_<random> database")
    ns = parser.parse_args(argv)
    interrupt_on_signals()
    with LocalServer(ns.engine, pg_dsn=ns.pg_dsn) as server:
        target = server.start()
        print(f"{target.name} at {target.base_url} (pid {target.pid}), "
              f"idle RSS {server.idle_rss_kib} KiB, started in {server.startup_s:.1f}s")
        print(f"  --base-url {target.base_url} --shared-secret {target.shared_secret} "
              f"--server-pid {target.pid}")
        print(f"  log: {server.log_path}; ^C (or SIGTERM) stops it and removes everything",
              flush=True)
        try:
            assert server.proc is not None
            server.proc.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
