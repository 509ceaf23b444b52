"""Start Synapse for a benchmark run, the way ``bench.server`` starts ours.

``SynapseServer`` creates a fresh PostgreSQL database ``bench_syn_<random>``
(UTF8, C collation, from template0, as Synapse requires), has Synapse
generate its config into a temporary directory, then edits that YAML: the
database, one plain-HTTP ``client`` listener on a free loopback port, every
rate limiter lifted, ``bcrypt_rounds`` 4 as for ours (setup speed only),
presence on, a registration shared secret, no trusted key servers.
It runs ``python -m synapse.app.homeserver -c homeserver.yaml`` from the
Synapse virtualenv as a subprocess and returns from ``start()`` once
``/_matrix/client/versions`` answers; ``stop()`` sends SIGTERM, drops the
database and removes the directory.

``start()`` returns the same ``bench.server.Target`` (base URL, shared
secret, PID) as ``LocalServer.start()``, and the object has the same
``stop()``, ``proc``, ``log_path``, ``database``, ``idle_rss_kib`` and
``startup_s``, so a comparison can load either server with the same code.
``dsn`` is the libpq DSN of the database, for measuring it.

With ``federation=bench.server.FederationTLS(...)`` Synapse is named
``localhost:P`` and gets a second listener on P: TLS with that certificate,
the federation API; it trusts the run's CA, may reach loopback peers, and its
federation rate limiter (``rc_federation``) is lifted like the client ones
(the keys and their reasons: docs/synapse-interop.md). ``extra_config`` is
merged into the YAML last.

    python -m bench.synapse_server   # serve until ^C; prints URL and secret

Synapse's interpreter is ``/tmp/synapse-venv/bin/python`` unless
``--python`` or ``$SYNAPSE_PYTHON`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import tempfile
import time
from typing import Any

import yaml

from bench.server import (
    BENCH_BCRYPT_ROUNDS,
    DEFAULT_PG_DSN,
    UNLIMITED,
    FederationTLS,
    ProcessServer,
    Target,
    create_bench_database,
    federation_listener,
    federation_settings,
    free_port,
    interrupt_on_signals,
    rss_kib,
    wait_for_versions,
)

DEFAULT_SYNAPSE_PYTHON = os.environ.get("SYNAPSE_PYTHON", "/tmp/synapse-venv/bin/python")

# Every limiter Synapse 1.163 reads (synapse/config/ratelimiting.py) that a
# client-server load can hit; the nested ones by their sub-keys. Not here:
# rc_federation (FEDERATION_LIMITS below, set only when the server federates),
# the remote media download limit (no scenario fetches remote media), and the
# room summary API's fixed limiter (not configurable, not used by any scenario).
FLAT_LIMITS = ("rc_message", "rc_registration", "rc_admin_redaction", "rc_joins_per_room",
               "rc_3pid_validation", "rc_third_party_invite", "rc_room_creation",
               "rc_reports", "rc_user_directory", "rc_profile", "rc_delayed_event_mgmt",
               "rc_key_requests", "rc_media_create", "rc_registration_token_validity")
NESTED_LIMITS = {
    "rc_login": ("address", "account", "failed_attempts"),
    "rc_joins": ("local", "remote"),
    "rc_invites": ("per_room", "per_user", "per_issuer"),
    "rc_presence": ("per_user",),
}
# Inbound federation, when the server federates: Synapse delays requests from one
# server past sleep_limit per window and rejects past reject_limit (defaults 10
# and 50 per second, 3 at once).
FEDERATION_LIMITS: dict[str, Any] = {
    "rc_federation": {"window_size": 1000, "sleep_limit": 1_000_000, "sleep_delay": 1,
                      "reject_limit": 1_000_000, "concurrent": 1_000},
    "federation_rr_transactions_per_room_per_second": 1_000_000,
}


class SynapseServer(ProcessServer):
    """One Synapse process in a temporary directory, on a fresh PostgreSQL database."""

    def __init__(self, *, pg_dsn: str = DEFAULT_PG_DSN,
                 python: str = DEFAULT_SYNAPSE_PYTHON, keep: bool = False,
                 startup_timeout_s: float = 120.0, idle_settle_s: float = 2.0,
                 log_level: str = "INFO", federation: FederationTLS | None = None,
                 extra_config: dict[str, Any] | None = None) -> None:
        self.engine = "postgres"
        self.pg_dsn = pg_dsn
        self.python = python
        self.keep = keep
        self.startup_timeout_s = startup_timeout_s
        self.idle_settle_s = idle_settle_s
        self.log_level = log_level
        self.federation = federation
        self.extra_config = dict(extra_config or {})
        self.server_name: str | None = None  # set by start()
        self.data_dir: str | None = None
        self.database: str | None = None  # the PG database we created
        self.dsn: str | None = None  # its DSN
        self.database_settings: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.idle_rss_kib: int | None = None
        self.startup_s: float | None = None
        self.version: str | None = None

    @property
    def log_path(self) -> str | None:
        return os.path.join(self.data_dir, "homeserver.log") if self.data_dir else None

    @property
    def stdout_path(self) -> str | None:
        return os.path.join(self.data_dir, "stdout.log") if self.data_dir else None

    # --- the database ------------------------------------------------------------------

    def _create_database(self) -> str:
        self.database, self.dsn, self.database_settings = create_bench_database(
            self.pg_dsn, "bench_syn_")
        return self.database

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
        self.dsn = None

    # --- the config --------------------------------------------------------------------

    def _generate_config(self, config_path: str) -> None:
        assert self.data_dir is not None
        done = subprocess.run(
            [self.python, "-m", "synapse.app.homeserver", "--server-name", "localhost",
             "--config-path", config_path, "--data-directory", self.data_dir,
             "--generate-config", "--report-stats=no"],
            cwd=self.data_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"synapse --generate-config failed: {done.stderr.strip()}")

    def _pg_args(self) -> dict[str, Any]:
        import psycopg2.extensions

        assert self.dsn is not None
        params = psycopg2.extensions.parse_dsn(self.dsn)
        args: dict[str, Any] = {
            "user": params.get("user", "postgres"),
            "database": params["dbname"],
            "host": params.get("host", "127.0.0.1"),
            "port": int(params.get("port", 5432)),
            "cp_min": 5,
            "cp_max": 10,
        }
        if "password" in params:
            args["password"] = params["password"]
        return args

    def _write_config(self, config_path: str, port: int) -> str:
        """Database, listener, limits, secret; returns the registration shared secret."""
        with open(config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        config["database"] = {"name": "psycopg2", "args": self._pg_args()}
        config["listeners"] = [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": False,
            "x_forwarded": False,
            "resources": [{"names": ["client"], "compress": False}],
        }]
        config["public_baseurl"] = f"http://127.0.0.1:{port}/"
        for key in FLAT_LIMITS:
            config[key] = dict(UNLIMITED)
        for key, kinds in NESTED_LIMITS.items():
            config[key] = {kind: dict(UNLIMITED) for kind in kinds}
        secret = config.get("registration_shared_secret") or secrets.token_urlsafe(32)
        config["registration_shared_secret"] = secret
        config["bcrypt_rounds"] = BENCH_BCRYPT_ROUNDS  # setup speed only, as for ours
        config["presence"] = {"enabled": True}  # Synapse's default, said out loud
        config["trusted_key_servers"] = []
        config["suppress_key_server_warning"] = True
        config["report_stats"] = False
        config["enable_metrics"] = False
        if self.federation is not None:
            federation_port = free_port()
            config["listeners"].append(federation_listener(federation_port, synapse=True))
            config.update(federation_settings(self.federation, federation_port))
            config["federation_verify_certificates"] = True
            config.update(FEDERATION_LIMITS)
        config.update(self.extra_config)
        self.server_name = str(config["server_name"])
        with open(config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        self._set_log_level(config["log_config"])
        return str(secret)

    def _set_log_level(self, log_config_path: str) -> None:
        with open(log_config_path, encoding="utf-8") as f:
            log_config = yaml.safe_load(f)
        log_config.setdefault("root", {})["level"] = self.log_level
        for logger in log_config.get("loggers", {}).values():
            if isinstance(logger, dict) and "level" in logger:
                logger["level"] = self.log_level
        with open(log_config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(log_config, f, sort_keys=False)

    # --- the process -------------------------------------------------------------------

    def start(self) -> Target:
        self.data_dir = tempfile.mkdtemp(prefix="bench-synapse-")
        config_path = os.path.join(self.data_dir, "homeserver.yaml")
        self._create_database()
        self._generate_config(config_path)
        port = free_port()
        secret = self._write_config(config_path, port)
        base_url = f"http://127.0.0.1:{port}"
        self.version = subprocess.run(
            [self.python, "-c", "import synapse; print(synapse.__version__)"],
            capture_output=True, text=True).stdout.strip() or None
        assert self.stdout_path is not None
        started = time.monotonic()
        with open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                [self.python, "-m", "synapse.app.homeserver", "-c", config_path],
                cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT)
        try:
            wait_for_versions(base_url, self.startup_timeout_s, self.proc)
        except RuntimeError as e:
            raise RuntimeError(f"{e}; log:\n{self.log_tail()}") from None
        self.startup_s = time.monotonic() - started
        time.sleep(self.idle_settle_s)
        self.idle_rss_kib = rss_kib(self.proc.pid)
        return Target("synapse/postgres", base_url, secret, self.proc.pid, self.server_name)

    def log_tail(self, lines: int = 20) -> str:
        tails = []
        for path in (self.stdout_path, self.log_path):
            if path and os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    tails.append("".join(f.readlines()[-lines:]))
        return "\n".join(tails) or "(no log)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.synapse_server",
                                     description="Serve a throwaway Synapse for a bench run")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN,
                        help="where to create (and drop) the bench_syn_<random> database")
    parser.add_argument("--python", default=DEFAULT_SYNAPSE_PYTHON,
                        help="the interpreter of Synapse's virtualenv")
    ns = parser.parse_args(argv)
    interrupt_on_signals()
    with SynapseServer(pg_dsn=ns.pg_dsn, python=ns.python) as server:
        target = server.start()
        print(f"{target.name} {server.version} at {target.base_url} (pid {target.pid}), "
              f"idle RSS {server.idle_rss_kib} KiB, started in {server.startup_s:.1f}s")
        print(f"  --base-url {target.base_url} --shared-secret {target.shared_secret} "
              f"--server-pid {target.pid}")
        print(f"  database {server.database}; log: {server.log_path}; "
              "^C (or SIGTERM) stops it and removes everything", flush=True)
        try:
            assert server.proc is not None
            server.proc.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
