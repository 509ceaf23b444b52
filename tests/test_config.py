"""Loading and validating the configuration, as an operator meets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.config import SCHEMA, ConfigError, build_config, load_config

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "config" / "homeserver.yaml"


def minimal(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "server_name": "example.org",
        "database": {"name": "sqlite3", "args": {"database": "/tmp/hs.db"}},
    }
    data.update(extra)
    return data


def config_error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(data)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- what loads, and the defaults it gets ------------------------------------------

def test_minimal_config_gets_a_loopback_listener_on_8008() -> None:
    config = build_config(minimal())
    assert config.server_name == "example.org"
    assert config.public_baseurl == "https://example.org/"
    [listener] = config.listeners
    assert (listener.port, listener.bind_addresses, listener.type) == (8008, ["127.0.0.1"],
                                                                       "http")
    assert listener.resources == ["client"]
    assert config.database.engine == "sqlite"
    assert config.enable_registration is False
    assert config.max_client_json_size == 64 * 1024


def test_durations_accept_synapse_units() -> None:
    config = build_config(minimal(refreshable_access_token_lifetime="5m",
                                  session_lifetime="1d",
                                  ui_auth={"session_timeout": "30s"},
                                  refresh_token_lifetime=1500))
    assert config.refreshable_access_token_lifetime == 5 * 60 * 1000
    assert config.session_lifetime == 24 * 3600 * 1000
    assert config.ui_auth["session_timeout"] == 30_000
    assert config.refresh_token_lifetime == 1500


def test_sizes_accept_synapse_units() -> None:
    config = build_config(minimal(max_upload_size="50M", max_client_json_size="10K"))
    assert config.max_upload_size == 50 * 1024 * 1024
    assert config.max_client_json_size == 10 * 1024


@pytest.mark.parametrize("key,value", [
    ("refreshable_access_token_lifetime", "five minutes"),
    ("refreshable_access_token_lifetime", True),
    ("max_upload_size", "50 parsecs"),
    ("max_upload_size", False),
])
def test_malformed_durations_and_sizes_name_the_key(key: str, value: Any) -> None:
    message = config_error(minimal(**{key: value}))
    assert message.startswith(f"{key}: expected a ")


def test_postgres_database_args_are_kept() -> None:
    config = build_config(minimal(database={
        "name": "psycopg2",
        "args": {"database": "synapse", "user": "synapse_user", "host": "db", "port": 5433,
                 "cp_min": 2, "cp_max": 7}}))
    assert config.database.engine == "postgres"
    assert config.database.args == {"database": "synapse", "user": "synapse_user",
                                    "host": "db", "port": 5433, "cp_min": 2, "cp_max": 7}


def test_empty_sections_mean_their_defaults() -> None:
    # `password_config:` with nothing under it is null in YAML
    config = build_config(yaml.safe_load(
        "server_name: example.org\n"
        "database: {name: sqlite3, args: {database: /tmp/hs.db}}\n"
        "password_config:\nrc_login:\nlisteners:\n"))
    assert config.password_config["enabled"] is True
    assert config.rc_login_failed_attempts.burst_count == 3
    assert [listener.port for listener in config.listeners] == [8008]


# --- what is refused, and how the message names it ------------------------------

def test_missing_server_name_is_refused() -> None:
    data = minimal()
    del data["server_name"]
    assert config_error(data) == "server_name: must be set"


def test_invalid_server_name_is_refused() -> None:
    assert "server_name" in config_error(minimal(server_name="exa mple.org"))


def test_unknown_top_level_key_is_named() -> None:
    assert config_error(minimal(enable_regsitration=True)) == (
        "enable_regsitration: unknown configuration key")


def test_unknown_nested_key_names_its_path() -> None:
    message = config_error(minimal(listeners=[{"port": 8008, "bogus": 1}]))
    assert message == "listeners[0].bogus: unknown configuration key"


def test_wrong_type_names_its_path() -> None:
    message = config_error(minimal(listeners=[{"port": 8008}, {"port": "abc"}]))
    assert message == "listeners[1].port: expected an integer, got a string"


def test_boolean_is_not_an_integer() -> None:
    assert config_error(minimal(bcrypt_rounds=True)).startswith("bcrypt_rounds: expected an")


def test_out_of_range_port_is_refused() -> None:
    message = config_error(minimal(listeners=[{"port": 70000}]))
    assert message == "listeners[0].port: must be between 0 and 65535, got 70000"


def test_listener_without_port_is_refused() -> None:
    assert config_error(minimal(listeners=[{"type": "http"}])) == "listeners[0].port: must be set"


def test_unknown_database_engine_is_refused() -> None:
    message = config_error(minimal(database={"name": "mysql", "args": {}}))
    assert message.startswith("database.name: must be one of sqlite3, psycopg2")


def test_sqlite_needs_a_database_file() -> None:
    message = config_error(minimal(database={"name": "sqlite3"}))
    assert message.startswith("database.args.database: must be set")


def test_open_registration_without_verification_is_refused() -> None:
    message = config_error(minimal(enable_registration=True))
    assert message.startswith("enable_registration:")
    assert "enable_registration_without_verification" in message


@pytest.mark.parametrize("extra", [
    {"enable_registration_without_verification": True},
    {"registration_requires_token": True},
])
def test_open_registration_is_allowed_with_an_explicit_choice(extra: dict[str, Any]) -> None:
    assert build_config(minimal(enable_registration=True, **extra)).enable_registration


def test_top_level_must_be_a_mapping() -> None:
    assert config_error(["server_name"]).startswith("the configuration must be a mapping")


# --- files -------------------------------------------------------------------------

def test_unreadable_and_invalid_files_give_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(missing))
    broken = tmp_path / "broken.yaml"
    broken.write_text("server_name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(str(broken))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"server_name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(str(binary))


def test_sample_config_loads() -> None:
    config = load_config(str(SAMPLE))
    assert config.server_name == "example.org"
    assert config.database.engine == "postgres"
    assert config.listeners[0].x_forwarded is True


def test_sample_config_documents_every_top_level_key() -> None:
    text = SAMPLE.read_text()
    undocumented = [name for name in SCHEMA if f"\n{name}:" not in text
                    and f"\n# {name}:" not in text and f"\n#{name}:" not in text]
    assert undocumented == []


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "homeserver.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("content,expected", [
    ("server_name: example.org\nlisteners:\n  - port: abc\n", "listeners[0].port"),
    ("server_name: example.org\nbogus: 1\n", "bogus: unknown configuration key"),
    ("listeners: []\n", "server_name: must be set"),
    ("server_name: [\n", "not valid YAML"),
])
def test_run_with_a_bad_config_exits_1_with_one_line(tmp_path: Path, content: str,
                                                     expected: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = _run_cli("run", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("homeserver: ")
    assert expected in lines[0]
    assert result.stdout == ""


def test_run_with_a_broken_signing_key_exits_1_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "hs.signing.key").write_text("this is not a key\n")
    (tmp_path / "hs.yaml").write_text(
        "server_name: example.org\n"
        f"database: {{name: sqlite3, args: {{database: {tmp_path}/hs.db}}}}\n"
        "signing_key_path: hs.signing.key\n")
    result = _run_cli("run", "--config", "hs.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "not a signing key file" in result.stderr


def test_extra_well_known_cannot_replace_the_homeserver_url() -> None:
    data = minimal(extra_well_known_client_content={"m.homeserver": {"base_url": "https://x/"}})
    assert "m.homeserver" in config_error(data)
