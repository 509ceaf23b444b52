"""Registration files: read as Synapse reads them; a bad one is one line
naming the file and the key; namespaces match as Synapse matches them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from homeserver.appservice.registration import parse_registration
from homeserver.config import ConfigError
from tests.appservice.conftest import registration, write_registration
from tests.harness import SERVER_NAME, make_config


def _config(tmp_path: Any, *regs: dict[str, Any]) -> Any:
    paths = [write_registration(tmp_path, r, f"reg{i}.yaml") for i, r in enumerate(regs)]
    return make_config("sqlite", str(tmp_path), app_service_config_files=paths)


def test_a_registration_file_is_loaded_with_its_namespaces(tmp_path: Any) -> None:
    services = _config(tmp_path, registration("http://localhost:9000")).app_services
    (service,) = services.services
    assert service.id == "bridge"
    assert service.sender == f"@bridgebot:{SERVER_NAME}"
    assert services.by_token("as-secret") is service
    assert service.is_interested_in_user(f"@bridge_alice:{SERVER_NAME}")
    assert service.is_interested_in_user(service.sender)
    assert not service.is_interested_in_user(f"@alice:{SERVER_NAME}")
    assert service.is_exclusive_alias(f"#bridge_room:{SERVER_NAME}")
    assert not service.rate_limited
    assert service.protocols == ("irc",)


def test_namespaces_are_anchored_at_the_start_as_on_synapse() -> None:
    service = parse_registration(
        registration("http://x", namespaces={"users": [{"regex": "@irc_.*",
                                                        "exclusive": False}]}),
        SERVER_NAME, "reg.yaml")
    assert service.is_interested_in_user("@irc_bob:other.server")
    assert not service.is_interested_in_user("@bob_irc_:x")
    assert not service.is_exclusive_user("@irc_bob:x")


@pytest.mark.parametrize("change, key", [
    ({"as_token": None}, "as_token"),
    ({"id": ""}, "id"),
    ({"sender_localpart": 5}, "sender_localpart"),
    ({"namespaces": {"users": [{"regex": "(", "exclusive": True}]}},
     "namespaces.users[0].regex"),
    ({"namespaces": {"users": [{"regex": "@a", "exclusive": "yes"}]}},
     "namespaces.users[0].exclusive"),
    ({"namespaces": {"people": []}}, "namespaces.people"),
    ({"rate_limited": "no"}, "rate_limited"),
    ({"url": "ftp://x"}, "url"),
])
def test_a_bad_file_is_one_line_naming_the_file_and_key(tmp_path: Any, change: dict[str, Any],
                                                         key: str) -> None:
    reg = registration("http://localhost:9000")
    reg.update(change)
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, reg)
    message = str(e.value)
    assert "reg0.yaml" in message and key in message and "\n" not in message


def test_two_services_with_the_same_id_or_token_are_refused(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="id"):
        _config(tmp_path, registration("http://a"),
                registration("http://b", as_token="other"))
    with pytest.raises(ConfigError, match="as_token"):
        _config(tmp_path, registration("http://a"), registration("http://b", id="other"))


def test_a_missing_file_is_named(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        make_config("sqlite", str(tmp_path), app_service_config_files=["nowhere.yaml"])


def test_a_null_url_is_a_service_that_is_sent_nothing(tmp_path: Any) -> None:
    (service,) = _config(tmp_path, registration(None)).app_services.services
    assert service.url is None


def test_the_server_refuses_to_start_with_a_bad_file_in_one_line(tmp_path: Path) -> None:
    reg = registration("http://localhost:9000")
    reg["namespaces"] = {"users": [{"regex": "[", "exclusive": True}]}
    write_registration(tmp_path, reg, "irc.yaml")
    (tmp_path / "hs.yaml").write_text(
        "server_name: example.org\n"
        "database: {name: sqlite3, args: {database: hs.db}}\n"
        "app_service_config_files: [irc.yaml]\n")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "homeserver.cli", "run", "--config", "hs.yaml"], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "irc.yaml" in lines[0] and "namespaces.users[0].regex" in lines[0]
