"""The federation scenario still runs: tiny size, our server as the target, both engines.

``python -m bench.federation`` (``bench.compare --scenarios federation``) in a
subprocess, as a comparison would run it, without Synapse (comparing with it
is a manual run). Nothing is timed. What is checked is what a run must get
right to mean anything: the target, started with its TLS federation
listener, took every remote join (and then lists every member of the
origin's room), accepted every PDU of every transaction, paced or not, and
shows each message in the room exactly once; every headline figure has a
number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.federation import SIZES
from tests.harness import postgres_dsn

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {"fed_send_pdus_per_s", "fed_send_txn_p50_ms", "fed_send_txn_p99_ms",
           "fed_burst_pdus_per_s", "fed_burst_missing", "fed_join_p50_ms", "fed_join_rss_mib"}


def run_federation(engine: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "federation.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.federation", "--servers", "ours", "--engine", engine,
         "--size", "tiny", "--pg-dsn", postgres_dsn() + " dbname=postgres",
         "--json", str(out), "--time-limit", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results: dict[str, Any] = json.loads(out.read_text())
    run: dict[str, Any] = results["scenarios"]["federation"]["runs"]["ours"]
    return run


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_remote_joins_land_and_every_pdu_arrives_once(engine: str, tmp_path: Path) -> None:
    run = run_federation(engine, tmp_path)
    tiny = SIZES["tiny"]
    assert run["complete"] is True and run["error"] is None, run.get("error")
    result = run["result"]
    assert result["origin"]["server_name"] != run["server"]["name"]

    join = result["join"]
    assert join["errors"] == []
    assert len(join["join_ms"]) == tiny["joins"]
    # the origin's members and the one who joined from the target
    assert join["joined_members_seen"] == [tiny["members"] + 1] * tiny["joins"]

    # paced, then as fast as answered: our server keeps every message either way
    for send in (result["send"], result["burst"]):
        assert send["pdu_errors"] == {}
        assert send["transactions"] == tiny["messages"] // tiny["txn_pdus"]
        assert (send["found"], send["missing"], send["duplicates"]) == (tiny["messages"], 0, 0)

    assert set(run["figures"]) == FIGURES
    for key, figure in run["figures"].items():
        assert isinstance(figure["value"], (int, float)), (key, figure)
        assert figure["value"] > 0 or key == "fed_burst_missing", (key, figure)
        assert figure["better"] in ("lower", "higher") and figure["unit"] and figure["label"]
