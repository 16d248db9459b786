"""Trackers: a tiny benchmark shown to TensorBoard, read back with TensorBoard's own event reader; a tracker that
raises is switched off with one warning and every cell still finishes; bad tracker names are one error line."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from harness.cli import main

from conftest import make_distribution, write_config


def _results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("cells/*/result.json"))]


def test_tensorboard_gets_each_epochs_losses_the_samples_and_hparams_with_the_final_metrics(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", trackers={"tensorboard": {}}, train={"epochs": 3, "batch_size": 256,
                                                                                   "lr": 0.003})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    results = _results(out)
    assert len(results) == 2 and all(r["status"] == "done" for r in results)
    for result in results:
        events = EventAccumulator(str(out / "tensorboard" / result["cell"]["cell_id"]))
        events.Reload()
        losses = events.Scalars("train/reconstruction")
        assert [e.step for e in losses] == [1, 2, 3]
        assert losses[-1].value == pytest.approx(result["history"][-1]["reconstruction"], rel=1e-6)
        assert "samples" in events.Tags()["images"]
        session = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        hparams = plugin_data_pb2.HParamsPluginData.FromString(session).session_start_info.hparams
        assert hparams["regularizer"].string_value == result["cell"]["regularizer"]
        assert hparams["seed"].number_value == 0
        metric = events.Scalars("metric/reconstruction.mse")
        assert metric[0].value == pytest.approx(result["metrics"]["reconstruction.mse"], rel=1e-6)


RAISING = """
from harness import Tracker, hookimpl

class Raising(Tracker):
    name = "raising"
    def log_epoch(self, cell_id, epoch, losses):
        raise RuntimeError("the tracking server is down")

@hookimpl
def harness_register_trackers(register):
    register(Raising)
"""


@pytest.fixture
def raising_tracker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "harness-tracker-raising", "harness_tracker_raising", textwrap.dedent(RAISING))
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("harness_tracker_raising", None)


def test_a_tracker_that_raises_is_switched_off_and_every_cell_is_done(tmp_path, raising_tracker, capsys):
    cfg = write_config(tmp_path / "b.yaml")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu", "--tracker", "raising",
                 "--tracker", "tensorboard"]) == 0
    assert [r["status"] for r in _results(out)] == ["done", "done"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "tracker 'raising'" in line]
    assert len(warnings) == 1 and "the tracking server is down" in warnings[0] and "switched off" in warnings[0]
    assert len(list((out / "tensorboard").iterdir())) == 2, "the other tracker kept going"


def test_an_unknown_tracker_is_one_error_line(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml", trackers={"tensorbord": {}})
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[0]
    assert err.startswith(f"error: {cfg}: benchmarks.tiny.trackers.tensorbord: unknown tracker 'tensorbord'")
    assert "tensorboard" in err
