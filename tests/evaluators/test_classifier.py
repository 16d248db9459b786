"""The harness classifier: trained once per dataset and seed then loaded from its cache file, deterministic for a
seed, accurate on digits, and refusing data it cannot learn from with a clear error; the shipped (frozen) one is
used where it exists, checked against its manifest's sha256, and reproducible from its training command."""

from __future__ import annotations

from pathlib import Path

import json
import shutil

import pytest
import torch

from harness import DataSplit, EvalData, as_float
from harness_plugins.datasets.digits import Digits
from harness_plugins.evaluators import classifier as classifier_module
from harness_plugins.evaluators.classifier import (
    Classifier,
    FrozenExtractorMismatch,
    classifier_path,
    frozen_paths,
    load_frozen_classifier,
    load_or_train_classifier,
    resolve_classifier,
    sha256_of,
    train_frozen_classifier,
)

CPU = torch.device("cpu")


def _digits(cache_dir: Path) -> EvalData:
    digits = Digits()
    return EvalData("digits", {}, digits.load("train"), digits.load("test"), cache_dir)


def test_trains_once_then_loads_from_its_cache_file_with_the_test_accuracy(tmp_path, monkeypatch):
    data = _digits(tmp_path)
    with torch.inference_mode():  # as the harness runs evaluators
        trained = load_or_train_classifier(data, seed=0, device=CPU, frozen=False)
    path = classifier_path(data, seed=0)
    stamp = path.stat().st_mtime_ns

    saved = torch.load(path, weights_only=True)
    assert saved["test_accuracy"] == trained.test_accuracy > 0.9
    logits = trained(as_float(data.test.x))
    assert trained.test_accuracy == pytest.approx(float((logits.argmax(1) == data.test.labels).float().mean()))

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached classifier")

    monkeypatch.setattr(classifier_module, "_train", no_training)
    loaded = load_or_train_classifier(data, seed=0, device=CPU, frozen=False)
    assert path.stat().st_mtime_ns == stamp
    assert loaded.test_accuracy == trained.test_accuracy
    assert (loaded.label_kind, loaded.num_outputs) == ("class", 10)
    for key, value in trained.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_training_is_a_function_of_the_seed_and_leaves_the_callers_random_stream_alone(tmp_path):
    data = [_digits(tmp_path / name) for name in ("a", "b", "c")]
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = load_or_train_classifier(data[0], seed=0, device=CPU, epochs=1, frozen=False)
    assert torch.equal(torch.rand(3), expected_next)
    again = load_or_train_classifier(data[1], seed=0, device=CPU, epochs=1, frozen=False)
    other = load_or_train_classifier(data[2], seed=1, device=CPU, epochs=1, frozen=False)
    weight = "head.weight"
    assert torch.equal(first.state_dict()[weight], again.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])


def test_attribute_labels_train_per_attribute_sigmoids_and_record_mean_attribute_accuracy(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (300, 3, 16, 16), dtype=torch.uint8, generator=gen)
    # Attribute 0: left half brighter than the right; attribute 1: red brighter than blue.
    brightness = x.float()
    left_bright = brightness[..., :8].mean((1, 2, 3)) > brightness[..., 8:].mean((1, 2, 3))
    red = brightness[:, 0].mean((1, 2)) > brightness[:, 2].mean((1, 2))
    labels = torch.stack([left_bright, red], dim=1).long()
    split = DataSplit(x, labels, "attributes", ("left-bright", "red"))
    data = EvalData("stripes", {"n": 300}, split, split, tmp_path)
    model = load_or_train_classifier(data, seed=0, device=CPU, epochs=2)
    assert (model.label_kind, model.num_outputs) == ("attributes", 2)
    probabilities = model.probabilities(as_float(x))
    assert probabilities.shape == (300, 2) and not torch.allclose(probabilities.sum(1), torch.ones(300))
    per_attribute = ((probabilities > 0.5) == labels.bool()).float().mean(0)
    assert model.test_accuracy == pytest.approx(float(per_attribute.mean()))


@pytest.mark.parametrize("size", [8, 28, 64])
def test_features_have_one_size_for_every_image_size_and_class_probabilities_sum_to_one(size):
    model = Classifier(in_channels=3, num_outputs=5, label_kind="class")
    images = torch.rand(4, 3, size, size)
    assert model.features(images).shape == (4, classifier_module.FEATURES)
    assert torch.allclose(model.probabilities(images).sum(1), torch.ones(4))


def test_vectors_and_unlabelled_images_are_refused_with_a_clear_error(tmp_path):
    vectors = DataSplit(torch.randn(10, 2), torch.zeros(10, dtype=torch.long), "class")
    with pytest.raises(ValueError, match="needs images; dataset 'moons' holds vectors of shape \\(2,\\)"):
        load_or_train_classifier(EvalData("moons", {}, vectors, vectors, tmp_path), seed=0, device=CPU)
    unlabelled = DataSplit(torch.zeros(10, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="the train split of dataset 'blank' has none"):
        load_or_train_classifier(EvalData("blank", {}, unlabelled, unlabelled, tmp_path), seed=0, device=CPU)
    assert not (tmp_path / "classifiers").exists()


@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist"])
def test_every_shipped_classifier_matches_its_manifest_and_loads_weights_only(dataset):
    weights, manifest_path = frozen_paths(dataset)
    manifest = json.loads(manifest_path.read_text())
    assert sha256_of(weights) == manifest["sha256"] and manifest["file"] == weights.name
    assert manifest["command"].endswith(f"train_frozen_extractors.py {dataset}") and manifest["test_accuracy"] > 0.8
    found = load_frozen_classifier(dataset, CPU)
    assert found is not None and found.model.test_accuracy == manifest["test_accuracy"]


def test_the_shipped_digits_classifier_is_used_whatever_the_seed_and_retraining_stays_available(tmp_path):
    weights, manifest_path = frozen_paths("digits")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["test_accuracy"] > 0.9 and manifest["command"].endswith("train_frozen_extractors.py digits")
    assert torch.load(weights, weights_only=True)["test_accuracy"] == manifest["test_accuracy"]
    data = _digits(tmp_path)
    found = [resolve_classifier(data, seed=seed, device=CPU) for seed in (0, 7)]
    assert all(f.frozen and f.path == weights and f.sha256 == manifest["sha256"] for f in found)
    assert not (tmp_path / "classifiers").exists()  # nothing trained
    retrained = resolve_classifier(data, seed=0, device=CPU, epochs=1, frozen=False)
    assert not retrained.frozen and retrained.path == classifier_path(data, seed=0, epochs=1)


def test_a_shipped_file_whose_sha256_differs_from_its_manifest_is_refused_naming_both_and_the_fix(tmp_path):
    weights, manifest = frozen_paths("digits")
    shutil.copy(manifest, tmp_path / manifest.name)
    tampered = bytearray(weights.read_bytes())
    tampered[-100] ^= 1
    (tmp_path / weights.name).write_bytes(bytes(tampered))
    differs = "sha256 [0-9a-f]{64} differs from [0-9a-f]{64} in digits.json"
    with pytest.raises(FrozenExtractorMismatch, match=differs) as err:
        load_frozen_classifier("digits", CPU, root=tmp_path)
    assert "python bench/train_frozen_extractors.py digits" in str(err.value)
    (tmp_path / manifest.name).unlink()
    with pytest.raises(FrozenExtractorMismatch, match="has no manifest digits.json"):
        load_frozen_classifier("digits", CPU, root=tmp_path)
    assert load_frozen_classifier("stripes", CPU, root=tmp_path) is None  # none shipped: the caller retrains


def test_training_a_frozen_classifier_twice_gives_the_same_bytes_and_a_complete_manifest(tmp_path):
    data = _digits(tmp_path)
    manifests = [
        train_frozen_classifier("digits", data.train, data.test, CPU, seed=0, epochs=1, command="c", root=tmp_path / d)
        for d in ("a", "b")
    ]
    assert manifests[0] == manifests[1]
    assert set(manifests[0]) >= {"sha256", "test_accuracy", "torch_version", "command", "train_size", "seed", "epochs"}
    assert (tmp_path / "a" / "digits.pt").read_bytes() == (tmp_path / "b" / "digits.pt").read_bytes()
