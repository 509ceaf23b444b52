"""The initial_sync, join, appservice, sliding_sync and sliding_fanout scenarios still run: each
tiny, on both engines.

Nothing here is timed (figures are for bench/README.md). What is checked is
what a run must get right to mean anything: it finishes, every initial sync
held every room and its latest message, pagination saw every message exactly
once, every join landed, and every headline figure has a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_bench_fanout import run_scenario as run_tiny


def run_scenario(module: str, engine: str, tmp_path: Path) -> dict[str, Any]:
    result = run_tiny(module, engine, tmp_path)
    assert result["complete"] is True
    assert result["server_exit_status"] is not None
    return result


def assert_figures(result: dict[str, Any], keys: set[str]) -> None:
    assert set(result["figures"]) == keys
    for figure in result["figures"].values():
        assert isinstance(figure["value"], (int, float)), figure
        assert figure["unit"] == "ms" and figure["better"] == "lower" and figure["label"]


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_initial_sync_sees_every_room_and_pages_every_message_once(
        engine: str, tmp_path: Path) -> None:
    result = run_scenario("initial_sync", engine, tmp_path)
    params = result["params"]
    assert result["syncs"]["incomplete_responses"] == 0
    assert result["syncs"]["time_ms"]["n"] == params["syncs"]
    pagination = result["pagination"]
    assert len(pagination["rooms"]) == params["paginate_rooms"]
    for room in pagination["rooms"]:
        assert (room["found"], room["missing"], room["duplicates"]) == (
            params["messages_per_room"], 0, 0)
    # tiny pages are smaller than a room's history: the tokens are exercised
    assert all(room["pages"] > 1 for room in pagination["rooms"])
    assert_figures(result, {"initial_sync_p50_ms", "initial_sync_p95_ms",
                            "messages_page_p50_ms", "messages_page_p95_ms"})


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_join_lands_every_user_in_the_room(engine: str, tmp_path: Path) -> None:
    result = run_scenario("join", engine, tmp_path)
    users = result["params"]["users"]
    assert result["errors"] == {}
    assert result["joins"] == users
    assert (result["joined_members"], result["missing_members"]) == (users + 1, 0)
    assert [s["members_from"] for s in result["by_tenth"]][0] == 1
    assert_figures(result, {"join_p50_ms", "join_p95_ms", "join_p99_ms",
                            "join_last10pct_p50_ms"})


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_appservice_delivers_every_message_once(engine: str, tmp_path: Path) -> None:
    result = run_scenario("appservice", engine, tmp_path)
    messages = result["params"]["messages"]
    assert (result["sent"], result["delivered"], result["repeats"]) == (messages, messages, 0)
    # the paced phase too: every message at a fixed rate, once
    assert (result["paced_sent"], result["paced_delivered"]) == (
        result["params"]["paced_messages"], result["params"]["paced_messages"])
    figures = result["figures"]
    assert set(figures) == {"delivered_per_s", "lag_p50_ms", "lag_p99_ms", "push_p50_ms",
                            "push_p99_ms", "paced_lag_p50_ms", "paced_lag_p99_ms"}
    assert all(isinstance(f["value"], (int, float)) for f in figures.values())


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_sliding_sync_answers_every_window_and_new_message(engine: str,
                                                           tmp_path: Path) -> None:
    result = run_scenario("sliding_sync", engine, tmp_path)
    params = result["params"]
    measured = result["measured"]
    assert measured["problems"] == []
    assert measured["first_ms"]["n"] == params["first"]
    assert measured["incremental_ms"]["n"] == params["incremental"]
    assert_figures(result, {"sliding_sync_first_p50_ms", "sliding_sync_first_p95_ms",
                            "sliding_sync_incremental_p50_ms",
                            "sliding_sync_incremental_p95_ms"})


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_sliding_fanout_delivers_every_message_to_every_connection(engine: str,
                                                                   tmp_path: Path) -> None:
    result = run_scenario("sliding_fanout", engine, tmp_path)
    stages = result["stages"]["sliding"]
    n = result["params"]["receivers"][0]
    stage = stages[str(n)]
    assert stage["delivered_fraction"] == 1.0
    assert stage["receiver_errors"] == {}
    keys = {f"sliding_{n}_p50_ms", f"sliding_{n}_p99_ms", f"sliding_{n}_delivered"}
    assert set(result["figures"]) == keys
    for key in keys - {f"sliding_{n}_delivered"}:
        assert isinstance(result["figures"][key]["value"], (int, float))
