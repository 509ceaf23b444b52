"""Run a command with a PostgreSQL server for the tests.

Uses $HS_TEST_POSTGRES or the server on 127.0.0.1:5432 (user postgres) when
one answers. Otherwise starts a throwaway cluster with initdb and pg_ctl in a
temporary directory (as an unprivileged user when we are root: PostgreSQL
refuses to run as root), points $HS_TEST_POSTGRES at it, runs the command and
removes the cluster. No PostgreSQL at all is an error, never a skip: the suite
must run on both engines.

usage: python scripts/with_postgres.py COMMAND [ARGS...]
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres"


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
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_user(cmd: list[str], user: str | None) -> list[str]:
    if user is None:
        return cmd
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user, "--"] + cmd
    return ["su", "-s", "/bin/sh", user, "-c", " ".join(cmd)]


def start_cluster() -> tuple[str, str, str | None]:
    initdb, pg_ctl = find_tool("initdb"), find_tool("pg_ctl")
    if not initdb or not pg_ctl:
        sys.exit("with_postgres: no PostgreSQL answers and initdb/pg_ctl are not installed; "
                 "install PostgreSQL or set HS_TEST_POSTGRES")
    user = None
    if os.geteuid() == 0:
        user = "nobody"
        pwd.getpwnam(user)
    base = tempfile.mkdtemp(prefix="hs-test-pg-")
    os.chmod(base, 0o755)
    data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
    os.mkdir(sock)
    if user is not None:
        for path in (base, sock):
            shutil.chown(path, user)
    port = free_port()
    subprocess.run(as_user([initdb, "-D", data, "-U", "postgres", "--auth=trust",
                            "-E", "UTF8", "--locale=C"], user),
                   check=True, stdout=subprocess.DEVNULL)
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(as_user([pg_ctl, "-D", data, "-o", options, "-l",
                            os.path.join(base, "log"), "-w", "start"], user),
                   check=True, stdout=subprocess.DEVNULL)
    dsn = f"host=127.0.0.1 port={port} user=postgres"
    for _ in range(50):
        if answers(dsn):
            break
        time.sleep(0.2)
    print(f"with_postgres: started a throwaway PostgreSQL on port {port}", flush=True)
    return dsn, base, user


def stop_cluster(base: str, user: str | None) -> None:
    pg_ctl = find_tool("pg_ctl")
    if pg_ctl:
        subprocess.run(as_user([pg_ctl, "-D", os.path.join(base, "data"), "-m", "immediate",
                                "stop"], user), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    cmd = sys.argv[1:]
    if not cmd:
        sys.exit(__doc__)
    dsn = os.environ.get("HS_TEST_POSTGRES", DEFAULT_DSN)
    if answers(dsn):
        return subprocess.call(cmd, env={**os.environ, "HS_TEST_POSTGRES": dsn})
    dsn, base, user = start_cluster()
    try:
        return subprocess.call(cmd, env={**os.environ, "HS_TEST_POSTGRES": dsn})
    finally:
        stop_cluster(base, user)


if __name__ == "__main__":
    sys.exit(main())
