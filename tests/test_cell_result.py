"""A cell's result.json read into a CellResult and written back is the same file: every committed result survives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.run.result import FINISHED, CellResult, Status

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "leaderboards").glob("*/cells/*/result.json"))


def test_every_committed_result_round_trips_unchanged() -> None:
    assert COMMITTED, "the repository's leaderboards hold cell results"
    for path in COMMITTED:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert CellResult.from_json(data).to_json() == data, path


def test_keys_of_another_version_are_kept_and_none_is_not_written() -> None:
    data = {"status": "failed", "benchmark": "b", "primary_metric": "m", "directions": {"m": "min"},
            "reason": "boom", "written_by_a_later_harness": [1, 2]}
    result = CellResult.from_json(data)
    assert result.status is Status.FAILED and result.extra == {"written_by_a_later_harness": [1, 2]}
    assert result.to_json() == data and "metrics" not in result.to_json()
    assert result.outcome.status == "failed" and result.outcome.reason == "boom"


@pytest.mark.parametrize("broken", [{"status": "done"}, {"status": "exploded", "benchmark": "b",
                                                         "primary_metric": "m", "directions": {}}])
def test_a_file_that_is_not_a_cell_result_is_refused(broken: dict[str, object]) -> None:
    with pytest.raises((KeyError, ValueError)):
        CellResult.from_json(broken)


def test_only_done_failed_and_skipped_end_a_cells_turn() -> None:
    assert set(FINISHED) == {"done", "failed", "skipped"}
    assert Status.PRUNED not in FINISHED and Status.BUSY not in FINISHED
