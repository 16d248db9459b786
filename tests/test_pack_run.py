"""``harness run --pack``: cells differing only in seed and β train as packs and are stored as ordinary cells with
their usual ids, their metrics equal to lone training's up to float rounding; ``--pack off`` is the lone path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main

from conftest import write_config


def _results(out: Path) -> dict[str, dict]:
    found = (json.loads(p.read_text()) for p in sorted(out.glob("cells/*/result.json")))
    return {r["cell"]["cell_id"]: r for r in found}


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pack")
    return write_config(tmp / "b.yaml", beta=[0.0, 0.5, 1.0], seeds=[0, 1],
                        evaluators={"reconstruction": {}, "prior_fit": {}})  # fmt: skip


@pytest.mark.parametrize("workers", [1, 2])
def test_packed_cells_keep_their_ids_record_the_pack_and_match_lone_training(grid, tmp_path, workers, capsys):
    alone, packed = tmp_path / "alone", tmp_path / "packed"
    assert main(["run", str(grid), "--out", str(alone), "--quiet", "--device", "cpu", "--pack", "off"]) == 0
    extra = ["--workers", "2"] if workers == 2 else []
    assert main(["run", str(grid), "--out", str(packed), "--quiet", "--device", "cpu", "--pack", "auto", *extra]) == 0
    lone, pack = _results(alone), _results(packed)
    assert set(lone) == set(pack) and len(lone) == 8  # kl: 3 β × 2 seeds; none: 2 seeds
    for cell_id, result in pack.items():
        assert "packed" not in lone[cell_id]
        assert result["packed"] == (6 if result["cell"]["regularizer"] == "kl" else 2)
        for epoch_alone, epoch_packed in zip(lone[cell_id]["history"], result["history"], strict=True):
            for term in ("reconstruction", "regularizer", "prior_fit"):
                assert epoch_packed[term] == pytest.approx(epoch_alone[term], rel=1e-4, abs=1e-6)
        for metric, value in lone[cell_id]["metrics"].items():
            assert result["metrics"][metric] == pytest.approx(value, rel=1e-3, abs=1e-5), metric
    assert "leaderboard" in capsys.readouterr().out


def test_a_cell_done_already_leaves_the_pack_and_the_rest_still_train_packed(grid, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--device", "cpu", "--pack", "off"]) == 0
    results = _results(out)
    kept = sorted(cell_id for cell_id, r in results.items() if r["cell"]["regularizer"] == "kl")[:2]
    for cell_id in set(results) - set(kept):
        shutil.rmtree(out / "cells" / cell_id)
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--device", "cpu", "--pack", "auto"]) == 0
    again = _results(out)
    assert all("packed" not in again[c] for c in kept)  # cached, untouched
    kl = [r for c, r in again.items() if c not in kept and r["cell"]["regularizer"] == "kl"]
    assert len(kl) == 4 and all(r["packed"] == 4 for r in kl)


def test_a_pack_of_plugins_that_cannot_pack_trains_them_alone(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", regularizers=["adversarial"], beta=[0.5, 1.0])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu", "--pack", "auto"]) == 0
    assert all("packed" not in r for r in _results(out).values())


def test_pack_takes_a_number_auto_or_off_and_nothing_else(grid, capsys):
    assert main(["run", str(grid), "--pack", "some"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--pack" in err and "use a positive integer, auto or off" in err


def test_trackers_see_every_epoch_of_a_packed_cell(grid, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--device", "cpu", "--pack", "auto",
                 "--tracker", "tensorboard"]) == 0
    for cell_id, result in _results(out).items():
        assert result["packed"] > 1
        events = EventAccumulator(str(out / "tensorboard" / cell_id))
        events.Reload()
        losses = events.Scalars("train/reconstruction")
        assert [e.step for e in losses] == [1, 2]
        assert [e.value for e in losses] == pytest.approx([h["reconstruction"] for h in result["history"]], rel=1e-6)
