"""FID, KID and the Inception Score: the harness's numbers are torch-fidelity's on the same two image sets (classifier
and Inception extractors), FID orders real against noise, the Inception weights load from the file a user places,
and without them the run stops before training with the file's name and where to put it."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch_fidelity
from torch import Tensor
from torch.utils.data import TensorDataset

from conftest import write_config
from harness import DataSplit, EvalData, PluginUnavailable, as_float
from harness.cli import main
from harness_plugins.datasets.digits import Digits
from harness_plugins.evaluators import classifier as classifier_module
from harness_plugins.evaluators.classifier import (
    FrozenExtractorMismatch,
    classifier_path,
    frozen_paths,
    load_or_train_classifier,
)
from harness_plugins.evaluators.fidelity import FIDEvaluator, InceptionScoreEvaluator
from torch_fidelity import feature_extractor_inceptionv3 as inception_module
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


class ReplayModel:
    """Stands in for a trained model whose prior samples are a fixed image set, handed out in order."""

    def __init__(self, images: Tensor, workdir: Path, seed: int = 0) -> None:
        self.images = as_float(images)
        self.device = torch.device("cpu")
        self.seed = seed
        self.workdir = workdir
        self._next = 0

    def sample(self, n: int) -> Tensor:
        out = self.images[self._next : self._next + n]
        self._next += n
        return out


class _Dataset(TensorDataset):
    """torch-fidelity wants datasets whose items are bare image tensors, not tuples."""

    def __getitem__(self, index: int) -> Tensor:
        return self.tensors[0][index]


def _rgb(images: Tensor) -> _Dataset:
    return _Dataset(images.expand(-1, 3, -1, -1).contiguous())


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> EvalData:
    """Digits with one cache folder for the module: the classifier trains once."""
    ds = Digits()
    return EvalData("digits", {}, ds.load("train"), ds.load("test"), tmp_path_factory.mktemp("cache"))


def _fid(features_1: np.ndarray, features_2: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets, from its definition:
    |μ1 − μ2|² + tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½), with symmetric roots (dead ReLU units make Σ
    singular)."""
    mu1, mu2 = features_1.mean(0), features_2.mean(0)
    s1, s2 = np.cov(features_1, rowvar=False), np.cov(features_2, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(w.clip(0))) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root1 @ s2 @ root1).clip(0)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def test_classifier_fid_and_kid_equal_torch_fidelity_called_directly_and_the_definition(digits, tmp_path):
    generated = digits.train.x[:300]
    with torch.inference_mode():  # as the harness runs evaluators
        metrics = FIDEvaluator(extractor="classifier", samples=300).evaluate(ReplayModel(generated, tmp_path), digits)
    weights, manifest = frozen_paths("digits")  # shipped: used for digits whatever the seed
    direct = torch_fidelity.calculate_metrics(
        input1=_rgb(generated), input2=_rgb(digits.test.x), fid=True, kid=True, kid_subset_size=300, rng_seed=0,
        feature_extractor="harness-classifier", feature_extractor_weights_path=str(weights),
        cuda=False, cache=False, save_cpu_ram=True, verbose=False,
    )  # fmt: skip
    assert metrics[""] == pytest.approx(direct["frechet_inception_distance"], rel=1e-6, abs=1e-4)
    assert metrics["kid"] == pytest.approx(direct["kernel_inception_distance_mean"], rel=1e-6, abs=1e-4)

    classifier = load_or_train_classifier(digits, seed=0, device=torch.device("cpu"))
    features = [classifier.features(as_float(x)).double().numpy() for x in (generated, digits.test.x)]
    assert metrics[""] == pytest.approx(_fid(*features), rel=1e-3)

    details = json.loads((tmp_path / "fid-details.json").read_text())
    assert details == {
        "extractor": "classifier", "samples": 300, "reference_split": "test", "reference_size": 360,
        "classifier_test_accuracy": classifier.test_accuracy, "kid_std": details["kid_std"], "kid_subset_size": 300,
        "classifier": "frozen", "classifier_file": "digits.pt",
        "classifier_sha256": json.loads(manifest.read_text())["sha256"],
    }  # fmt: skip
    # Only the reference is cached, named by dataset, split, size and extractor file; reusing it changes nothing.
    cached = sorted(p.name for p in (digits.cache_dir / "fidelity").iterdir())
    assert len(cached) == 2
    assert all(name.startswith("digits-") and "-test-360-classifier-frozen-" in name for name in cached)
    with torch.inference_mode():
        again = FIDEvaluator(extractor="classifier", samples=300).evaluate(ReplayModel(generated, tmp_path), digits)
    assert again == metrics


def test_fid_to_a_disjoint_half_of_the_test_split_is_far_below_fid_to_uniform_noise(digits, tmp_path):
    half = len(digits.test) // 2
    first_half = DataSplit(digits.test.x[:half], digits.test.labels[:half], "class")
    reference = EvalData("digits", {}, digits.train, first_half, digits.cache_dir)
    noise = torch.randint(0, 256, (half, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fid = FIDEvaluator(extractor="classifier", samples=half, kid=False)
    with torch.inference_mode():
        real = fid.evaluate(ReplayModel(digits.test.x[half:], tmp_path), reference)
        fake = fid.evaluate(ReplayModel(noise, tmp_path), reference)
    assert set(real) == {""}
    assert 5 * real[""] < fake[""]


def test_precision_and_recall_equal_torch_fidelity_called_directly_in_the_same_features(digits, tmp_path):
    generated = digits.train.x[:300]
    fid = FIDEvaluator(extractor="classifier", samples=300, kid=False, prc=True, prc_neighborhood=5)
    with torch.inference_mode():
        metrics = fid.evaluate(ReplayModel(generated, tmp_path), digits)
        # The reference's features now come from torch-fidelity's cache: the same numbers again.
        again = fid.evaluate(ReplayModel(generated, tmp_path), digits)
    weights, _ = frozen_paths("digits")
    direct = torch_fidelity.calculate_metrics(
        input1=_rgb(generated), input2=_rgb(digits.test.x), fid=True, prc=True, prc_neighborhood=5, rng_seed=0,
        feature_extractor="harness-classifier", feature_extractor_weights_path=str(weights),
        cuda=False, cache=False, save_cpu_ram=True, verbose=False,
    )  # fmt: skip
    assert set(metrics) == {"", "precision", "recall"}
    assert metrics["precision"] == direct[torch_fidelity.KEY_METRIC_PRECISION]
    assert metrics["recall"] == direct[torch_fidelity.KEY_METRIC_RECALL]
    assert metrics[""] == pytest.approx(direct[torch_fidelity.KEY_METRIC_FID], rel=1e-6, abs=1e-4)
    assert again == metrics
    details = json.loads((tmp_path / "fid-details.json").read_text())
    assert details["prc_neighborhood"] == 5 and details["f_score"] == pytest.approx(direct["f_score"])


def test_generated_equal_to_the_reference_has_precision_and_recall_one_and_dropped_classes_cut_only_recall(
    digits, tmp_path
):
    with torch.inference_mode():
        same = FIDEvaluator(extractor="classifier", samples=len(digits.test), kid=False, prc=True).evaluate(
            ReplayModel(digits.test.x, tmp_path), digits
        )
        # Half the classes, every image a reference image: all of them are real-looking, half the modes are missing.
        half = digits.test.x[digits.test.labels < 5]
        dropped = FIDEvaluator(extractor="classifier", samples=len(half), kid=False, prc=True).evaluate(
            ReplayModel(half, tmp_path), digits
        )
    assert same["precision"] == same["recall"] == 1.0
    assert same[""] == pytest.approx(0.0, abs=1e-3)
    assert dropped["precision"] == 1.0
    assert dropped["recall"] < 0.75


def test_fid_reports_precision_and_recall_as_maximised_metrics_only_with_prc(digits, tmp_path):
    assert FIDEvaluator.metrics == {"": "min", "kid": "min", "precision": "max", "recall": "max"}
    with pytest.raises(ValueError, match="prc_neighborhood must be at least 1"):
        FIDEvaluator(prc=True, prc_neighborhood=0)
    with torch.inference_mode():
        fid = FIDEvaluator(extractor="classifier", samples=50)
        metrics = fid.evaluate(ReplayModel(digits.test.x, tmp_path), digits)
    assert set(metrics) == {"", "kid"}


def test_with_the_frozen_classifier_fid_is_bit_identical_across_calls_and_thread_counts(digits, tmp_path):
    generated = digits.train.x[:200]
    values = []
    threads = torch.get_num_threads()
    try:
        for n, cache in ((1, "a"), (2, "b"), (1, "c")):
            torch.set_num_threads(n)
            data = EvalData("digits", {}, digits.train, digits.test, tmp_path / cache)  # no shared feature cache
            with torch.inference_mode():
                values.append(FIDEvaluator(extractor="classifier", samples=200, prc=True).evaluate(
                    ReplayModel(generated, tmp_path), data
                ))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert values[0] == values[1] == values[2]


def test_classifier_retrain_trains_per_seed_and_a_tampered_shipped_file_stops_fid(digits, tmp_path, monkeypatch):
    generated = digits.train.x[:100]
    with torch.inference_mode():
        FIDEvaluator(extractor="classifier", samples=100, classifier="retrain").evaluate(
            ReplayModel(generated, tmp_path, seed=3), digits
        )
    details = json.loads((tmp_path / "fid-details.json").read_text())
    assert details["classifier"] == "retrain"
    assert details["classifier_file"] == str(classifier_path(digits, seed=3))

    weights, manifest = frozen_paths("digits")
    (tmp_path / "shipped").mkdir()
    (tmp_path / "shipped" / manifest.name).write_text(manifest.read_text())
    (tmp_path / "shipped" / weights.name).write_bytes(weights.read_bytes() + b"\0")
    monkeypatch.setattr(classifier_module, "EXTRACTORS_DIR", tmp_path / "shipped")
    with pytest.raises(FrozenExtractorMismatch, match="digits.pt: sha256 .* differs"), torch.inference_mode():
        FIDEvaluator(extractor="classifier", samples=100).evaluate(ReplayModel(generated, tmp_path), digits)


def _stand_in_inception_weights(path: Path) -> None:
    """Random weights in the format torch-fidelity loads: its Inception module's state_dict, saved by torch.save."""
    # The module's constructor insists on loading weights; skip that once, only to obtain the module's own layout.
    with mock.patch.object(inception_module, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict"):  # fmt: skip
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    state = net.state_dict()
    gen = torch.Generator().manual_seed(0)
    for key, value in state.items():
        # He initialisation keeps activations of order one through the ~100 layers, so features are not all ~0.
        if key.endswith("conv.weight"):
            value.copy_(torch.randn(value.shape, generator=gen) * (2 / value[0].numel()) ** 0.5)
    torch.save(state, path)


def test_inception_fid_kid_and_score_with_stand_in_weights_equal_torch_fidelity_called_directly(tmp_path):
    """End to end through the real loading path; 4 images a side, as 299×299 Inception is slow on a shared CPU."""
    weights = tmp_path / "stand-in.pth"
    _stand_in_inception_weights(weights)
    ds = Digits()
    test = ds.load("test")
    data = EvalData("digits", {}, ds.load("train"), DataSplit(test.x[:4], test.labels[:4], "class"), tmp_path)
    generated = test.x[4:8]
    with torch.inference_mode():
        fid = FIDEvaluator(weights_path=str(weights), samples=4).evaluate(ReplayModel(generated, tmp_path), data)
        score = InceptionScoreEvaluator(weights_path=str(weights), samples=4, splits=2).evaluate(
            ReplayModel(generated, tmp_path), data
        )
    direct = torch_fidelity.calculate_metrics(
        input1=_rgb(generated), input2=_rgb(data.test.x), fid=True, kid=True, isc=True, kid_subset_size=4,
        isc_splits=2, rng_seed=0, feature_extractor_weights_path=str(weights),
        cuda=False, cache=False, save_cpu_ram=True, verbose=False,
    )  # fmt: skip
    assert fid[""] == pytest.approx(direct["frechet_inception_distance"], rel=1e-6, abs=1e-4)
    assert fid["kid"] == pytest.approx(direct["kernel_inception_distance_mean"], rel=1e-6, abs=1e-4)
    assert score[""] == pytest.approx(direct["inception_score_mean"], rel=1e-6)
    assert json.loads((tmp_path / "fid-details.json").read_text())["extractor"] == "inception"
    assert json.loads((tmp_path / "inception_score-details.json").read_text())["samples"] == 4


def test_without_inception_weights_check_available_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    with pytest.raises(PluginUnavailable) as fid_error:
        FIDEvaluator(extractor="inception").check_available()
    assert fid_error.value.message == "the Inception weights are not available offline"
    assert fid_error.value.fix == (
        f"Place {INCEPTION_FILE} in {checkpoints}/ or set fid.weights_path (or fid.download: true when online), "
        "or use fid.extractor: classifier."
    )
    with pytest.raises(PluginUnavailable, ) as score_error:
        InceptionScoreEvaluator().check_available()
    assert "inception_score.weights_path" in score_error.value.fix
    assert score_error.value.fix.endswith("or use inception_score.extractor: classifier.")
    with pytest.raises(PluginUnavailable, match="does not exist") as path_error:
        FIDEvaluator(weights_path=str(tmp_path / "missing.pth")).check_available()
    assert INCEPTION_FILE in path_error.value.fix

    FIDEvaluator(extractor="classifier").check_available()
    checkpoints.mkdir(parents=True)
    (checkpoints / INCEPTION_FILE).touch()
    FIDEvaluator(extractor="inception").check_available()  # found where TORCH_HOME points


def test_download_true_fetches_into_the_hub_cache_and_a_failed_download_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url: str, dst: str) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PluginUnavailable, match="downloading the Inception weights failed: network unreachable"):
        FIDEvaluator(download=True).check_available()
    fetched = []

    def online(url: str, dst: str) -> None:
        Path(dst).write_bytes(b"stand-in")
        fetched.append(url)

    monkeypatch.setattr(torch.hub, "download_url_to_file", online)
    FIDEvaluator(download=True).check_available()
    assert fetched == [inception_module.URL_INCEPTION_V3]
    assert (tmp_path / "hub" / "checkpoints" / INCEPTION_FILE).is_file()


def test_a_run_without_inception_weights_exits_2_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = write_config(tmp_path / "b.yaml", evaluators={"fid": {"extractor": "inception"}}, primary_metric="fid")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert not (out / "cells").exists()
    err = capsys.readouterr().err
    assert "evaluators.fid: the Inception weights are not available offline" in err
    assert INCEPTION_FILE in err


def test_vector_data_and_bad_options_are_refused_with_clear_errors(tmp_path):
    vectors = DataSplit(torch.randn(10, 2), torch.zeros(10, dtype=torch.long), "class")
    data = EvalData("moons", {}, vectors, vectors, tmp_path)
    with pytest.raises(ValueError, match="fid compares images; dataset 'moons' holds vectors"):
        FIDEvaluator(extractor="classifier").evaluate(ReplayModel(torch.rand(10, 2), tmp_path), data)
    with pytest.raises(ValueError, match="samples must be at least 2"):
        FIDEvaluator(samples=1)
    with pytest.raises(ValueError, match="splits must be between 1 and samples"):
        InceptionScoreEvaluator(samples=5, splits=10)
