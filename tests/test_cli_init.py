"""`homeserver init`: the first command an operator runs."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from signedjson.key import read_signing_keys

from homeserver.config import load_config

REPO = Path(__file__).resolve().parent.parent


def homeserver(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "homeserver.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_init_writes_a_config_that_loads_and_a_private_signing_key(tmp_path: Path) -> None:
    result = homeserver("init", "--server-name", "example.org", "--config",
                        "data/homeserver.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = load_config(str(tmp_path / "data" / "homeserver.yaml"))
    assert config.server_name == "example.org"
    assert config.public_baseurl == "https://example.org/"
    assert config.database.engine == "sqlite"
    # the SQLite file sits beside the config, wherever the server is started from
    assert config.database.args["database"] == str(tmp_path / "data" / "homeserver.db")
    assert [(lst.port, lst.bind_addresses) for lst in config.listeners] == [
        (8008, ["127.0.0.1"])]
    # a real server name gets closed registration and a shared secret for admins
    assert config.enable_registration is False
    assert len(config.registration_shared_secret) >= 32

    key_file = tmp_path / "data" / "homeserver.signing.key"
    assert config.signing_key_path == "homeserver.signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data" / "homeserver.yaml").stat().st_mode) == 0o600
    with open(key_file) as f:
        [key] = read_signing_keys(f)
    assert key.alg == "ed25519"


def test_each_init_makes_a_fresh_key_and_secret(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert homeserver("init", "--server-name", "example.org", "--config",
                          f"{name}/hs.yaml", cwd=tmp_path).returncode == 0
    keys = [(tmp_path / n / "hs.signing.key").read_text() for n in ("a", "b")]
    secrets = [load_config(str(tmp_path / n / "hs.yaml")).registration_shared_secret
               for n in ("a", "b")]
    assert keys[0] != keys[1]
    assert secrets[0] != secrets[1]


def test_init_refuses_to_overwrite_a_config(tmp_path: Path) -> None:
    assert homeserver("init", "--server-name", "example.org", "--config", "hs.yaml",
                      cwd=tmp_path).returncode == 0
    before = (tmp_path / "hs.yaml").read_text(), (tmp_path / "hs.signing.key").read_text()
    result = homeserver("init", "--server-name", "other.org", "--config", "hs.yaml",
                        cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["homeserver: hs.yaml already exists; not overwriting it"]
    after = (tmp_path / "hs.yaml").read_text(), (tmp_path / "hs.signing.key").read_text()
    assert after == before


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_init_for_a_local_name_opens_registration_for_a_trial(tmp_path: Path,
                                                              name: str) -> None:
    assert homeserver("init", "--server-name", name, "--config", "hs.yaml",
                      cwd=tmp_path).returncode == 0
    config = load_config(str(tmp_path / "hs.yaml"))
    assert config.enable_registration is True
    assert config.enable_registration_without_verification is True
    assert config.public_baseurl == "http://127.0.0.1:8008/"
    # only this machine can reach it, and the file says why registration is open
    assert all(lst.bind_addresses == ["127.0.0.1"] for lst in config.listeners)
    assert "binds 127.0.0.1 only" in (tmp_path / "hs.yaml").read_text()


def test_init_with_postgres_url_maps_it_into_database_args(tmp_path: Path) -> None:
    result = homeserver("init", "--server-name", "example.org", "--config", "hs.yaml",
                        "--database", "postgres", "--database-url",
                        "postgresql://user@host:5433/db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = load_config(str(tmp_path / "hs.yaml"))
    assert config.database.engine == "postgres"
    assert config.database.args == {"database": "db", "user": "user", "host": "host",
                                    "port": 5433, "cp_min": 1, "cp_max": 10}
    raw = yaml.safe_load((tmp_path / "hs.yaml").read_text())
    assert raw["database"]["name"] == "psycopg2"  # Synapse's name for the engine


def test_init_refuses_a_bad_database_url_and_writes_nothing(tmp_path: Path) -> None:
    result = homeserver("init", "--server-name", "example.org", "--config", "hs.yaml",
                        "--database", "postgres", "--database-url",
                        "postgresql://host/db?frobnicate=1", cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "--database-url" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_an_invalid_server_name_and_writes_nothing(tmp_path: Path) -> None:
    result = homeserver("init", "--server-name", "not a name", "--config", "hs.yaml",
                        cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "homeserver: server_name: not a valid server name: 'not a name'"]
    assert list(tmp_path.iterdir()) == []


def test_a_fresh_init_runs_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    assert homeserver("init", "--server-name", "localhost", "--config", "hs.yaml",
                      cwd=tmp_path).returncode == 0
    config = tmp_path / "hs.yaml"
    config.write_text(config.read_text().replace("port: 8008", "port: 0"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "homeserver.cli", "run", "--config",
                             "hs.yaml"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stderr is not None
        port = None
        for line in proc.stderr:
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "the server never said where it listens"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_matrix/client/versions",
                                    timeout=10) as resp:
            assert resp.status == 200
            assert b"v1.1" in resp.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "homeserver.db").exists()


def test_init_for_a_container_binds_every_address_and_keeps_registration_closed(
        tmp_path: Path) -> None:
    # what the container's entrypoint runs: a listener others can reach, so
    # even a `localhost` trial name does not open registration
    result = homeserver("init", "--server-name", "localhost", "--config", "hs.yaml",
                        "--bind-address", "0.0.0.0", "--x-forwarded", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = load_config(str(tmp_path / "hs.yaml"))
    [listener] = config.listeners
    assert listener.bind_addresses == ["0.0.0.0"] and listener.x_forwarded
    assert config.enable_registration is False


def test_a_fresh_init_serves_the_web_client_or_says_how_to_build_it(tmp_path: Path) -> None:
    assert homeserver("init", "--server-name", "localhost", "--config", "hs.yaml",
                      cwd=tmp_path).returncode == 0
    config = tmp_path / "hs.yaml"
    assert yaml.safe_load(config.read_text())["web_client"] == {"enabled": True}
    # a machine without Node: nothing was built where the config points
    (tmp_path / "unbuilt").mkdir()
    config.write_text(config.read_text().replace("port: 8008", "port: 0").replace(
        "web_client:\n  enabled: true", "web_client:\n  enabled: true\n  path: unbuilt"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "homeserver.cli", "run", "--config",
                             "hs.yaml"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stderr is not None
        port = None
        said = []
        for line in proc.stderr:
            said.append(line)
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "the server never said where it listens"
        assert any("the client is not built" in line and "make webclient" in line
                   for line in said), said
        with pytest.raises(urllib.error.HTTPError) as page:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.value.code == 404
        assert b"make webclient" in page.value.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_matrix/client/versions",
                                    timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
