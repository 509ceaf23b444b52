"""The benchmarks still run: each scenario at a tiny size against our server.

Nothing here is timed: a benchmark's figures are for bench/README.md, not
for assertions. What is checked is what a benchmark run must get right to
mean anything: it finishes, every message it sent was delivered once, and
it writes its results.
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


def run_bench(module: str, engine: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / f"{module}.json"
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--engine", engine,
         "--pg-dsn", postgres_dsn() + " dbname=postgres", "--json", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_sync_benchmark_delivers_every_message(engine: str, tmp_path: Path) -> None:
    result = run_bench("sync", engine, tmp_path, "--receivers", "2", "--messages", "2",
                       "--interval-ms", "10", "--rooms-small", "1", "--rooms-large", "3",
                       "--syncs", "2", "--transport", "sync,websocket", "--time-limit", "200")
    assert result["complete"] is True
    for transport in ("sync", "websocket"):
        stage = result["delivery"][transport]["2"]
        assert stage["undelivered"] == 0
        assert stage["latency_ms"]["n"] == 4  # 2 messages x 2 receivers
    assert set(result["rooms"]) >= {"1", "3"}


def test_send_benchmark_finds_every_message_once(tmp_path: Path) -> None:
    result = run_bench("send", "sqlite", tmp_path, "--users", "2", "--messages", "10",
                       "--concurrency", "2")
    verify = result["runs"][0]["verify"]
    assert (verify["found"], verify["duplicates"]) == (10, 0)
