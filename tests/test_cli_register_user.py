"""The ``homeserver`` command as an operator runs it: init, register-user, run."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def homeserver(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "homeserver.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def init_config(tmp_path: Path) -> Path:
    config = tmp_path / "homeserver.yaml"
    result = homeserver("init", "--server-name", "example.org", "--config", str(config))
    assert result.returncode == 0, result.stderr
    with open(config, "a", encoding="utf-8") as f:
        f.write("bcrypt_rounds: 4\n")  # keep the test fast
    return config


def user_row(config: Path, user_id: str) -> tuple[int, str | None] | None:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    # a relative database path is relative to the config file
    path = config.parent / data["database"]["args"]["database"]
    assert path.exists(), path
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT admin, password_hash FROM users WHERE user_id = ?",
                           (user_id,)).fetchone()
    finally:
        conn.close()
    return None if row is None else (int(row[0]), row[1])


def test_register_user_creates_an_admin(tmp_path: Path) -> None:
    config = init_config(tmp_path)
    result = homeserver("register-user", "--config", str(config), "-u", "alice",
                        "-p", "correct horse battery", "--admin")
    assert result.returncode == 0, result.stderr
    assert "@alice:example.org" in result.stdout
    row = user_row(config, "@alice:example.org")
    assert row is not None
    admin, password_hash = row
    assert admin == 1
    assert password_hash and password_hash.startswith("$2")


def test_register_user_without_admin_flag_creates_a_plain_user(tmp_path: Path) -> None:
    config = init_config(tmp_path)
    result = homeserver("register-user", "--config", str(config), "-u", "bob", "-p", "pw")
    assert result.returncode == 0, result.stderr
    row = user_row(config, "@bob:example.org")
    assert row is not None and row[0] == 0


def test_register_user_refuses_a_taken_name_with_one_line(tmp_path: Path) -> None:
    config = init_config(tmp_path)
    assert homeserver("register-user", "--config", str(config), "-u", "alice",
                      "-p", "first").returncode == 0
    result = homeserver("register-user", "--config", str(config), "-u", "alice",
                        "-p", "second")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "taken" in lines[0]
    assert "Traceback" not in result.stderr


def test_register_user_refuses_an_invalid_name(tmp_path: Path) -> None:
    config = init_config(tmp_path)
    result = homeserver("register-user", "--config", str(config), "-u", "Not Valid",
                        "-p", "pw")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert user_row(config, "@Not Valid:example.org") is None


def test_run_with_an_unknown_config_key_names_its_path(tmp_path: Path) -> None:
    config = init_config(tmp_path)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["listeners"][0]["portt"] = 8448
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = homeserver("run", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "listeners[0].portt" in lines[0]


def test_register_user_without_its_signing_key_fails_in_one_line(tmp_path: Path) -> None:
    config = init_config(tmp_path)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    (config.parent / data["signing_key_path"]).unlink()
    result = homeserver("register-user", "--config", str(config), "-u", "carol", "-p", "pw")
    assert result.returncode == 1
    assert "cannot read the signing key" in result.stderr
