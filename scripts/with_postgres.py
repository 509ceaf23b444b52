"""Run a command with a PostgreSQL server for the tests.

Which server, first match wins:

1. $HS_TEST_POSTGRES (a libpq connection string), when it answers: a CI
   service container, say.
2. A throwaway cluster, when initdb and postgres are installed: initdb into
   a temporary directory, then ``postgres`` as a child of this script (as an
   unprivileged user when we are root: PostgreSQL refuses to run as root),
   with fsync off since the data is thrown away. That makes the suite's
   create-a-database-per-test pattern about three times cheaper than on a
   durable server, and leaves nothing behind in anyone's real server.
3. The server on 127.0.0.1:5432 as user postgres, when it answers.

$HS_TEST_POSTGRES is pointed at the server for the command. A throwaway
cluster is stopped and removed afterwards, also when interrupted.

No PostgreSQL at all is an error, never a skip: the suite must run on both
engines. With CI=true, a $HS_TEST_POSTGRES that does not answer is an error
too, instead of a reason to look elsewhere.

Environment:
  HS_TEST_POSTGRES    connection string of a server to use
  HS_TEST_PG_BINDIR   where initdb and postgres are (default: $PATH, then
                      /usr/lib/postgresql/*/bin)

usage: python scripts/with_postgres.py COMMAND [ARGS...]
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType
from typing import Any

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres"
UNPRIVILEGED_USER = "nobody"
START_TIMEOUT_S = 60


class Failure(Exception):
    """Why there is no PostgreSQL for the tests; printed as one line."""


def answers(dsn: str) -> bool:
    try:
        import psycopg2
    except ImportError:
        return False
    try:
        psycopg2.connect(dsn + " dbname=postgres connect_timeout=3").close()
        return True
    except psycopg2.OperationalError:
        return False


def find_tool(name: str) -> str | None:
    bindir = os.environ.get("HS_TEST_PG_BINDIR")
    if bindir:
        path = os.path.join(bindir, name)
        return path if os.access(path, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server binaries off $PATH; prefer the newest version.
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: [int(x) for x in p.split("/")[4].split(".")
                                       if x.isdigit()], reverse=True)
    return candidates[0] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return " | ".join(line.strip() for line in f.readlines()[-lines:])
    except OSError:
        return "(no log)"


class Cluster:
    """A throwaway PostgreSQL server: initdb, run, stop, delete."""

    def __init__(self) -> None:
        self.initdb = find_tool("initdb")
        self.postgres = find_tool("postgres")
        if not self.initdb or not self.postgres:
            raise Failure("initdb and postgres are not installed (or not in "
                          "HS_TEST_PG_BINDIR) for a throwaway cluster")
        self.run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            # subprocess changes user in the child: no runuser/su needed
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            self.run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        self.base = tempfile.mkdtemp(prefix="hs-test-pg-")
        self.data = os.path.join(self.base, "data")
        self.sock = os.path.join(self.base, "sock")
        self.log = os.path.join(self.base, "postgres.log")
        self.port = free_port()
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        os.chmod(self.base, 0o700)
        os.mkdir(self.sock)
        if self.run_as:
            for path in (self.base, self.sock):
                os.chown(path, self.run_as["user"], self.run_as["group"])
        assert self.initdb and self.postgres
        init = subprocess.run([self.initdb, "-D", self.data, "-U", "postgres", "--auth=trust",
                               "-E", "UTF8", "--locale=C", "--no-sync"],
                              cwd=self.base, capture_output=True, text=True, **self.run_as)
        if init.returncode != 0:
            last = (init.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise Failure(f"initdb failed: {last}")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [self.postgres, "-D", self.data, "-p", str(self.port), "-k", self.sock,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200"],
                cwd=self.base, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **self.run_as)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(self.dsn):
            if self.process.poll() is not None:
                raise Failure(f"postgres exited with {self.process.returncode}: "
                              f"{log_tail(self.log)}")
            if time.monotonic() > deadline:
                raise Failure(f"postgres did not answer within {START_TIMEOUT_S}s: "
                              f"{log_tail(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    cmd = sys.argv[1:]
    if not cmd:
        print(__doc__, file=sys.stderr)
        return 2
    in_ci = os.environ.get("CI", "").lower() in ("true", "1")
    explicit = os.environ.get("HS_TEST_POSTGRES")
    if explicit:
        if answers(explicit):
            return subprocess.call(cmd)
        if in_ci:
            # A CI job that names its database service means it: a service that
            # is down fails the job rather than being papered over.
            print(f"with_postgres: HS_TEST_POSTGRES ({explicit}) does not answer; CI=true "
                  "needs the PostgreSQL half of the suite", file=sys.stderr)
            return 1
    # The finally below must run when CI cancels the job or someone presses ^C.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    cluster = None
    try:
        try:
            cluster = Cluster()
            cluster.start()
        except Failure as e:
            if not answers(DEFAULT_DSN):
                print(f"with_postgres: no PostgreSQL for the tests: {e}, and nothing answers "
                      f"at {DEFAULT_DSN}; install PostgreSQL or set HS_TEST_POSTGRES",
                      file=sys.stderr)
                return 1
            print(f"with_postgres: {e}; using {DEFAULT_DSN}", file=sys.stderr)
            return subprocess.call(cmd, env={**os.environ, "HS_TEST_POSTGRES": DEFAULT_DSN})
        print(f"with_postgres: started a throwaway PostgreSQL on port {cluster.port}",
              flush=True)
        return subprocess.call(cmd, env={**os.environ, "HS_TEST_POSTGRES": cluster.dsn})
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
