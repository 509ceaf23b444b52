"""``bench.compare`` runs a scenario end to end and writes its table right.

The end-to-end tests run the ``send`` scenario at its tiny size on our
server only (no Synapse here: comparing with it is a manual run), on both
engines, and check what a comparison must get right to mean anything: it
finishes, every figure is there, every message was delivered once, and the
JSON and the Markdown table are written. Nothing is timed.

The table tests are pure: how a figure and its ratio are put, which way
round the ratio goes, and what a missing value looks like.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.compare import format_ratio, format_value, render_markdown_table, table_rows
from tests.harness import postgres_dsn

ROOT = Path(__file__).resolve().parent.parent
SEND_FIGURES = {f"send_{tag}_{what}" for tag in ("1room", "20rooms")
                for what in ("msgs_per_s", "p50_ms", "p99_ms")}


def run_compare(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "compare.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--servers", "ours", "--size", "tiny",
         "--pg-dsn", postgres_dsn() + " dbname=postgres", "--json", str(out),
         "--time-limit", "200", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    result: dict[str, Any] = json.loads(out.read_text())
    return proc.returncode, result, proc.stdout + proc.stderr


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_compare_runs_send_and_writes_every_figure(engine: str, tmp_path: Path) -> None:
    status, result, output = run_compare(tmp_path, "--engine", engine, "--scenarios", "send")
    assert status == 0, output[-3000:]
    assert result["complete"] is True
    run = result["scenarios"]["send"]["runs"]["ours"]
    assert run["complete"] is True and run["error"] is None
    assert set(run["figures"]) == SEND_FIGURES
    assert all(f["value"] is not None and f["value"] > 0 for f in run["figures"].values())
    for measured in run["result"]["runs"].values():  # every message found once
        assert (measured["verify"]["found"], measured["verify"]["duplicates"]) == (10, 0)
    assert "synapse" not in result["scenarios"]["send"]["runs"]
    table = (tmp_path / "compare.md").read_text()
    assert "| send | 1 room: messages/s |" in table
    assert "| send | 20 rooms: send latency p99 |" in table
    assert f"on {engine}" in table


def test_a_missing_scenario_is_reported_and_the_rest_still_runs(tmp_path: Path) -> None:
    status, result, output = run_compare(tmp_path, "--engine", "sqlite",
                                         "--scenarios", "no_such_scenario,send")
    assert status == 1, output[-3000:]  # not complete: one scenario could not run
    assert "No module named 'bench.no_such_scenario'" in result["scenarios"][
        "no_such_scenario"]["error"]
    assert set(result["scenarios"]["send"]["runs"]["ours"]["figures"]) == SEND_FIGURES
    assert "| no_such_scenario | (scenario not loaded) |" in (tmp_path / "compare.md").read_text()


# --- the table, without a server ------------------------------------------------------------

def test_ratio_above_one_means_ours_is_better_whichever_way_the_figure_goes() -> None:
    assert format_ratio(10.0, 42.0, "lower") == "4.2x better"  # ours 10 ms, Synapse 42 ms
    assert format_ratio(42.0, 10.0, "higher") == "4.2x better"  # ours 42 msg/s
    assert format_ratio(50.0, 40.0, "lower") == "0.8x"
    assert format_ratio(40.0, 50.0, "higher") == "0.8x"
    assert format_ratio(10.0, 10.0, "lower") == "1.0x"


def test_a_missing_value_gives_n_a() -> None:
    assert format_ratio(10.0, None, "lower") == "n/a"
    assert format_ratio(None, 10.0, "higher") == "n/a"
    assert format_ratio(0.0, 10.0, "lower") == "n/a"  # no ratio to a zero
    assert format_value(None, "ms") == "n/a"


def test_values_carry_their_unit() -> None:
    assert format_value(1234.5, "msg/s") == "1,234 msg/s"
    assert format_value(138.2, "ms") == "138 ms"
    assert format_value(26.94, "ms") == "26.9 ms"
    assert format_value(6.624, "ms") == "6.62 ms"
    assert format_value(0.998, "fraction") == "0.998"


def figure(value: float | None, unit: str, better: str, label: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "better": better, "label": label}


def test_rows_put_both_servers_side_by_side() -> None:
    ours = {"complete": True, "error": None, "figures": {
        "x_p99_ms": figure(20.0, "ms", "lower", "p99"),
        "x_ws_p99_ms": figure(15.0, "ms", "lower", "WebSocket p99"),  # ours only
        "x_rate": figure(90.0, "msg/s", "higher", "messages/s"),
    }}
    synapse = {"complete": True, "error": None, "figures": {
        "x_p99_ms": figure(60.0, "ms", "lower", "p99"),
        "x_rate": figure(30.0, "msg/s", "higher", "messages/s"),
    }}
    rows = table_rows("x", {"ours": ours, "synapse": synapse})
    assert [(r.label, r.ours, r.synapse, r.ratio) for r in rows] == [
        ("p99", "20.0 ms", "60.0 ms", "3.0x better"),
        ("WebSocket p99", "15.0 ms", "n/a", "n/a"),
        ("messages/s", "90.0 msg/s", "30.0 msg/s", "3.0x better"),
    ]
    table = render_markdown_table(rows)
    assert "| x | WebSocket p99 | 15.0 ms | n/a | n/a |" in table


def test_ours_alone_gives_n_a_for_synapse() -> None:
    ours = {"complete": True, "error": None,
            "figures": {"x_p50_ms": figure(5.0, "ms", "lower", "p50")}}
    [row] = table_rows("x", {"ours": ours})
    assert (row.ours, row.synapse, row.ratio) == ("5.00 ms", "n/a", "n/a")


def test_a_failed_or_incomplete_run_is_marked() -> None:
    ours = {"complete": False, "error": None,
            "figures": {"x_p50_ms": figure(5.0, "ms", "lower", "p50")}}
    synapse = {"complete": False, "error": "TimeLimitExceeded()", "figures": {}}
    [row] = table_rows("x", {"ours": ours, "synapse": synapse})
    assert (row.ours, row.synapse, row.ratio) == ("5.00 ms *", "failed", "n/a")
    [row] = table_rows("y", {"ours": {"complete": False, "error": "boom", "figures": {}}})
    assert (row.label, row.ours, row.synapse) == ("(no figures)", "failed", "n/a")
