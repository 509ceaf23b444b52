"""The search benchmark still runs: a tiny history on both engines.

Nothing is timed: the check is that the load lands where /search finds it
(the marker words' counts) and that the results are written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bench_smoke import run_bench


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_search_benchmark_finds_the_loaded_messages(engine: str, tmp_path: Path) -> None:
    result = run_bench("search", engine, tmp_path, "--messages", "1000", "--rooms", "2",
                       "--requests", "2")
    assert result["complete"] is True
    queries = result["queries"]
    assert queries["rare (10 hits) / recent"]["count"] == [10]
    assert queries["1% / rank"]["count"] == [10]
    assert queries["no match / rank"]["count"] == [0]
    assert queries["10% / recent"]["results_per_page_max"] == 10
