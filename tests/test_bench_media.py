"""The media benchmark still runs: tiny size, both engines (nothing timed here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bench_fanout import ENGINES, assert_figures_are_numbers, run_scenario


@pytest.mark.parametrize("engine", ENGINES)
def test_media_bench_uploads_and_downloads_every_file_intact(engine: str,
                                                              tmp_path: Path) -> None:
    result = run_scenario("media", engine, tmp_path)
    assert result["complete"] is True, result.get("error")
    assert result["mismatches"] == 0
    assert_figures_are_numbers(result, {"upload_mb_s", "upload_req_s", "download_mb_s",
                                        "download_req_s"})
