"""scripts/with_postgres.py: the PostgreSQL half of `make test` is never skipped."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = str(REPO / "scripts" / "with_postgres.py")
NOBODY_HOME = "host=127.0.0.1 port=1 user=postgres"  # port 1: nothing answers


def with_postgres(*cmd: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, SCRIPT, *cmd], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_in_ci_a_database_service_that_is_down_fails_the_run() -> None:
    result = with_postgres(sys.executable, "-c", "print('the tests ran')", CI="true",
                           HS_TEST_POSTGRES=NOBODY_HOME)
    assert result.returncode == 1
    assert "the tests ran" not in result.stdout
    [line] = result.stderr.splitlines()
    assert "does not answer" in line and "CI=true" in line


def test_a_throwaway_cluster_serves_the_command_and_is_removed() -> None:
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "hs-test-pg-*")))
    probe = ("import os, psycopg2; "
             "c = psycopg2.connect(os.environ['HS_TEST_POSTGRES'] + ' dbname=postgres'); "
             "cur = c.cursor(); cur.execute('SHOW fsync'); print('fsync', cur.fetchone()[0]); "
             "print('dsn', os.environ['HS_TEST_POSTGRES'])")
    result = with_postgres(sys.executable, "-c", probe, HS_TEST_POSTGRES=NOBODY_HOME,
                           CI="false")
    assert result.returncode == 0, result.stderr
    assert "started a throwaway PostgreSQL" in result.stdout
    assert "fsync off" in result.stdout
    dsn = result.stdout.split("dsn ", 1)[1].strip()
    assert "port=1 " not in dsn + " "
    # nothing left behind: no directory, no server on that port
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "hs-test-pg-*"))) <= before
    check = subprocess.run([sys.executable, "-c",
                            f"import psycopg2; psycopg2.connect('{dsn} dbname=postgres "
                            "connect_timeout=2')"], capture_output=True, text=True)
    assert check.returncode != 0


def test_the_exit_status_of_the_command_is_passed_on() -> None:
    result = with_postgres(sys.executable, "-c", "raise SystemExit(3)")
    assert result.returncode == 3
