"""The fanout and footprint scenarios still run: each at its tiny size against our server.

Nothing here is timed (figures are for the README, not assertions). What
is checked is what a run must get right to mean anything: it completes,
every message reaches every receiver at the tiny size, and every headline
figure is there with a number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import postgres_dsn

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ["sqlite", "postgres"]


def run_scenario(module: str, engine: str, tmp_path: Path) -> dict[str, Any]:
    """``python -m bench.<module> --size tiny`` in a subprocess (the reactor runs once)."""
    out = tmp_path / f"{module}.json"
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--engine", engine, "--size", "tiny",
         "--pg-dsn", postgres_dsn() + " dbname=postgres", "--json", str(out),
         "--time-limit", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def assert_figures_are_numbers(result: dict[str, Any], keys: set[str]) -> None:
    figures = result["figures"]
    assert set(figures) == keys
    for key in keys:
        assert isinstance(figures[key]["value"], (int, float)), (key, figures[key])
        assert figures[key]["unit"] and figures[key]["better"] in ("lower", "higher")


@pytest.mark.parametrize("engine", ENGINES)
def test_fanout_delivers_every_message_to_every_receiver(engine: str, tmp_path: Path) -> None:
    result = run_scenario("fanout", engine, tmp_path)
    tiny = result["params"]  # bench.fanout.SIZES["tiny"], as the run used it
    assert result["complete"] is True, result.get("error")
    assert result["skipped"] == []
    for transport in ("sync", "websocket"):
        for n in tiny["receivers"]:
            stage = result["stages"][transport][str(n)]
            assert stage["delivered_fraction"] == 1.0
            assert stage["latency_ms"]["n"] == n * tiny["messages"]
            assert stage["send_errors"] == {}
            assert stage["receiver_errors"] == {}
            assert stage["warm_up"]["everybody"] is True
    assert_figures_are_numbers(result, {
        f"{transport}_{n}_{what}"
        for transport in ("sync", "websocket") for n in tiny["receivers"]
        for what in ("p50_ms", "p99_ms", "delivered")})


@pytest.mark.parametrize("engine", ENGINES)
def test_footprint_measures_idle_and_per_user_memory(engine: str, tmp_path: Path) -> None:
    result = run_scenario("footprint", engine, tmp_path)
    assert result["complete"] is True, result.get("error")
    assert result["warm_up"] == {"everybody": True, "reached": 3, "of": 3}
    # per user may be any sign at 3 users (allocator noise); it must be measured
    assert_figures_are_numbers(result, {"idle_rss_mib", "rss_per_syncing_user_kib",
                                        "rss_with_users_mib"})
    assert result["figures"]["idle_rss_mib"]["value"] > 0
