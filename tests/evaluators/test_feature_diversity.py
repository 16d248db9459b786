"""Feature diversity: 1 − cosine between classifier features of paired samples, zero for a collapsed model; and a
whole digits run reporting it beside FID and KID with the offline classifier extractor."""

from __future__ import annotations

import json

import pandas as pd

import pytest
import torch
from torch import Tensor

from conftest import write_config
from harness import EvalData, as_float
from harness.cli import main
from harness.run.store import Store
from harness_plugins.datasets.digits import Digits
from harness_plugins.evaluators.classifier import load_or_train_classifier
from harness_plugins.evaluators.feature_diversity import FeatureDiversityEvaluator



class ReplayModel:
    """Stands in for a trained model whose prior samples are a fixed image set, handed out in order."""

    def __init__(self, images: Tensor) -> None:
        self.images = as_float(images)
        self.device = torch.device("cpu")
        self.seed = 0
        self.conditions = None  # unconditional, as TrainedModel.conditions says
        self._next = 0

    def sample(self, n: int) -> Tensor:
        out = self.images[self._next : self._next + n]
        self._next += n
        return out


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> EvalData:
    ds = Digits()
    return EvalData("digits", {}, ds.load("train"), ds.load("test"), tmp_path_factory.mktemp("cache"))


def test_mean_cosine_distance_over_pairs_of_independent_samples(digits):
    images = digits.test.x[:200]
    with torch.inference_mode():
        value = FeatureDiversityEvaluator(pairs=100, batch_size=50).evaluate(ReplayModel(images), digits)[""]
        features = load_or_train_classifier(digits, seed=0, device=torch.device("cpu")).features(as_float(images))
    # Each batch of 50 pairs takes two consecutive draws of 50 samples: the first against the second.
    a = torch.cat([features[0:50], features[100:150]])
    b = torch.cat([features[50:100], features[150:200]])
    expected = 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert value == pytest.approx(float(expected.mean()), rel=1e-5)
    assert 0 < value < 1


def test_a_collapsed_model_has_zero_diversity_and_one_class_less_than_all_classes(digits):
    one_digit = digits.test.x[:1].expand(400, -1, -1, -1)
    threes = digits.test.x[digits.test.labels == 3]
    same_class = threes[torch.randint(len(threes), (400,), generator=torch.Generator().manual_seed(0))]
    with torch.inference_mode():
        collapsed = FeatureDiversityEvaluator(pairs=200).evaluate(ReplayModel(one_digit), digits)[""]
        one_class = FeatureDiversityEvaluator(pairs=200).evaluate(ReplayModel(same_class), digits)[""]
        varied = FeatureDiversityEvaluator(pairs=200).evaluate(ReplayModel(digits.train.x[:400]), digits)[""]
    assert collapsed == pytest.approx(0.0, abs=1e-6)
    assert 0 < one_class < varied


def test_a_digits_run_reports_fid_kid_and_feature_diversity_offline(tmp_path):
    evaluators = {"reconstruction": {}, "fid": {"extractor": "classifier", "samples": 500}, "feature_diversity": {}}
    cfg = write_config(tmp_path / "b.yaml", regularizers=["kl"], evaluators=evaluators, primary_metric="fid")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    (result,) = Store(out).results()
    assert {"fid", "fid.kid", "feature_diversity", "reconstruction.mse"} <= (result.metrics or {}).keys()
    details = json.loads((out / "cells" / result.cell["cell_id"] / "fid-details.json").read_text())
    assert details["extractor"] == "classifier" and details["samples"] == 500 and details["reference_split"] == "test"
    assert details["classifier_test_accuracy"] > 0.9
    # The leaderboard writes the details beside each fid row of results.csv.
    frame = pd.read_csv(out / "results.csv")
    for row in frame[frame["metric"].str.startswith("fid")].itertuples():
        assert json.loads(row.details)["extractor"] == "classifier"
