"""The harness's own image classifier, shared by the evaluators that need a feature space or labels offline.

FID/KID with ``extractor: classifier`` and feature diversity measure in its penultimate features; linear
separability labels samples with its outputs.

Two sources, in this order:

- frozen: ``extractors/<dataset>.pt``, shipped with the harness for the datasets it can load offline (``digits``,
  ``fashion-mnist``), trained once on the whole training split by ``bench/train_frozen_extractors.py`` and
  checked against the sha256 in ``extractors/<dataset>.json`` on every load. Every machine, thread count and seed
  measures with the same bytes; a retrained classifier moves FID by more than many differences between priors.
- retrained: for any other dataset (or with ``frozen=False``), trained once per dataset, dataset options, seed and
  epoch count on the training split's labels and cached under ``EvalData.cache_dir``, so every cell of a benchmark
  (and every rerun on the same machine) measures with the same network.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import DataSplit, EvalData, as_float, progress

#: Enough for digits to pass 90 % test accuracy in a few seconds on a CPU core.
DEFAULT_EPOCHS = 10
FEATURES = 128
_BATCH_SIZE = 128
_LR = 1e-3
#: Batch size for inference only (test accuracy): no gradients, so larger batches fit.
_EVAL_BATCH_SIZE = 1000
#: The shipped classifiers: ``<dataset>.pt`` (weights) beside ``<dataset>.json`` (manifest with its sha256).
EXTRACTORS_DIR = Path(__file__).parent / "extractors"


class Classifier(nn.Module):
    """A small CNN for images from 8×8 to 64×64: adaptive pooling gives the same feature size for every input size."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        label_kind: Literal["class", "attributes"],
        test_accuracy: float = float("nan"),
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_outputs = num_outputs
        self.label_kind = label_kind
        self.test_accuracy = test_accuracy
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(128 * 2 * 2, FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, num_outputs)

    def features(self, images: Tensor) -> Tensor:
        """Float images [B, C, H, W] in [0, 1] -> penultimate features [B, FEATURES]."""
        return self.body(images)

    def forward(self, images: Tensor) -> Tensor:
        """Logits [B, K]: one per class, or one per attribute."""
        return self.head(self.features(images))

    def probabilities(self, images: Tensor) -> Tensor:
        """[B, K]: a softmax over classes, or an independent sigmoid per attribute."""
        logits = self(images)
        return logits.softmax(dim=-1) if self.label_kind == "class" else logits.sigmoid()


def dataset_cache_key(data: EvalData) -> str:
    """``<dataset>-<hash of its options>``: cached files of one dataset configuration never serve another."""
    options = json.dumps(dict(data.dataset_options), sort_keys=True)
    return f"{data.dataset}-{hashlib.sha256(options.encode()).hexdigest()[:8]}"


def classifier_path(data: EvalData, seed: int, epochs: int = DEFAULT_EPOCHS) -> Path:
    """Where the classifier for ``data`` and ``seed`` is cached."""
    return Path(data.cache_dir) / "classifiers" / f"{dataset_cache_key(data)}-seed{seed}-epochs{epochs}.pt"


def load_classifier(path: Path, device: torch.device) -> Classifier:
    """A cached classifier, frozen and in eval mode (a measuring instrument), its recorded test accuracy included."""
    saved = torch.load(path, map_location=device, weights_only=True)
    # Layer initialisation draws from the global RNG, then the weights overwrite it: keep the caller's stream intact.
    with torch.random.fork_rng(devices=[]):
        model = Classifier(saved["in_channels"], saved["num_outputs"], saved["label_kind"], saved["test_accuracy"])
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval().requires_grad_(False)


@dataclass(frozen=True)
class ClassifierFile:
    """A classifier, the file it was loaded from, that file's sha256, and whether it is a shipped (frozen) one."""

    model: Classifier
    path: Path
    sha256: str
    frozen: bool


class FrozenExtractorMismatch(ValueError):
    """A shipped classifier whose bytes are not those its manifest records."""


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def frozen_paths(dataset: str, root: Path | None = None) -> tuple[Path, Path]:
    """``(weights, manifest)`` of the shipped classifier for ``dataset`` (which may not exist)."""
    root = EXTRACTORS_DIR if root is None else root
    return root / f"{dataset}.pt", root / f"{dataset}.json"


def load_frozen_classifier(dataset: str, device: torch.device, root: Path | None = None) -> ClassifierFile | None:
    """The shipped classifier for ``dataset``, its sha256 checked against its manifest; None when none is shipped.

    Raises FrozenExtractorMismatch when the file's sha256 differs from the manifest's, or the manifest is missing.
    """
    weights, manifest = frozen_paths(dataset, root)
    if not weights.is_file():
        return None
    retrain = f"python bench/train_frozen_extractors.py {dataset}"
    if not manifest.is_file():
        raise FrozenExtractorMismatch(
            f"frozen classifier {weights} has no manifest {manifest.name} to check it against\n"
            f"  restore both files from git, or retrain them with: {retrain}"
        )
    expected = json.loads(manifest.read_text(encoding="utf-8"))["sha256"]
    actual = sha256_of(weights)
    if actual != expected:
        raise FrozenExtractorMismatch(
            f"frozen classifier {weights}: sha256 {actual} differs from {expected} in {manifest.name}\n"
            f"  restore it from git (git checkout -- {weights.name}), or retrain both files with: {retrain}"
        )
    return ClassifierFile(load_classifier(weights, device), weights, actual, frozen=True)


def resolve_classifier(
    data: EvalData, seed: int, device: torch.device, epochs: int = DEFAULT_EPOCHS, *, frozen: bool = True
) -> ClassifierFile:
    """The shipped classifier for ``data.dataset`` when ``frozen`` and one exists (whatever the dataset options and
    seed), else the one trained for ``data`` and ``seed`` (``load_or_train_classifier(..., frozen=False)``)."""
    if frozen:
        shipped = load_frozen_classifier(data.dataset, device)
        if shipped is not None:
            return shipped
    path = classifier_path(data, seed, epochs)
    if not path.is_file():
        _require_labelled_splits(data.dataset, data.train, data.test)
        model = _train(data.train, seed, device, epochs)
        model.test_accuracy = _accuracy(model, data.test)
        _save(model, path)
    return ClassifierFile(load_classifier(path, device), path, sha256_of(path), frozen=False)


def load_or_train_classifier(
    data: EvalData, seed: int, device: torch.device, epochs: int = DEFAULT_EPOCHS, *, frozen: bool = True
) -> Classifier:
    """The classifier for ``data`` and ``seed``: the shipped one for the dataset when ``frozen`` and one exists,
    else loaded from the cache, else trained on the training labels and cached.

    Raises ValueError when the dataset is not images or a split has no labels, FrozenExtractorMismatch when a
    shipped file fails its sha256 check.
    """
    return resolve_classifier(data, seed, device, epochs, frozen=frozen).model


def train_frozen_classifier(
    dataset: str,
    train: DataSplit,
    test: DataSplit,
    device: torch.device,
    *,
    seed: int,
    epochs: int,
    command: str,
    root: Path | None = None,
    dataset_options: dict | None = None,
) -> dict:
    """Train the shipped classifier for ``dataset`` deterministically and write ``<dataset>.pt`` and its manifest.

    Deterministic algorithms and one thread: the bytes depend on the seed, the data and the torch build alone.
    Returns the manifest.
    """
    _require_labelled_splits(dataset, train, test)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        model = _train(train, seed, device, epochs)
        model.test_accuracy = _accuracy(model, test)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    weights, manifest_path = frozen_paths(dataset, root)
    _save(model, weights)
    manifest = {
        "dataset": dataset,
        "dataset_options": dataset_options or {},
        "file": weights.name,
        "sha256": sha256_of(weights),
        "test_accuracy": model.test_accuracy,
        "train_size": len(train),
        "test_size": len(test),
        "seed": seed,
        "epochs": epochs,
        "torch_version": torch.__version__,
        "command": command,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _require_labelled_splits(dataset: str, train: DataSplit, test: DataSplit) -> None:
    """Raise ValueError unless both splits hold labelled images: what training and scoring a classifier need."""
    for split_name, split in (("train", train), ("test", test)):
        _require_labelled_images(dataset, split_name, split)


def _require_labelled_images(dataset: str, split_name: str, split: DataSplit) -> None:
    if not split.is_image:
        raise ValueError(
            f"the harness classifier needs images; dataset {dataset!r} holds vectors of shape "
            f"{tuple(split.x.shape[1:])}"
        )
    if split.labels is None or split.label_kind is None:
        raise ValueError(
            f"the harness classifier trains on labels; the {split_name} split of dataset {dataset!r} has none"
        )


def _num_outputs(split: DataSplit) -> int:
    assert split.labels is not None
    if split.label_kind == "attributes":
        return split.labels.shape[1]
    return len(split.label_names) if split.label_names else int(split.labels.max()) + 1


def _loss(logits: Tensor, labels: Tensor, label_kind: str) -> Tensor:
    if label_kind == "class":
        return F.cross_entropy(logits, labels)
    return F.binary_cross_entropy_with_logits(logits, labels.float())


def _train(split: DataSplit, seed: int, device: torch.device, epochs: int) -> Classifier:
    """Adam on minibatches of the whole split; a function of ``seed`` alone (on the CPU).

    The global RNG is forked so that training (or loading from the cache) never changes what the calling
    evaluator samples next; inference mode, which the harness runs evaluators under, is lifted for training.
    """
    assert split.labels is not None and split.label_kind is not None
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)
        model = Classifier(split.x.shape[1], _num_outputs(split), split.label_kind).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=_LR)
        model.train()
        # Minutes on a large dataset, before the first metric: say so (silent under --quiet and in pool workers).
        desc = f"training the evaluation classifier (seed {seed})"
        for _ in progress.bar(range(epochs), desc=desc, unit="epoch", announce=True):
            for idx in torch.randperm(len(split), device=split.x.device).split(_BATCH_SIZE):
                logits = model(as_float(split.x[idx]).to(device))
                loss = _loss(logits, split.labels[idx].to(device), split.label_kind)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return model.eval().requires_grad_(False)


def _accuracy(model: Classifier, split: DataSplit) -> float:
    """Top-1 accuracy for classes; for attributes the mean per-attribute accuracy."""
    assert split.labels is not None
    device = next(model.parameters()).device
    correct = 0.0
    with torch.inference_mode():
        for x, y in zip(split.x.split(_EVAL_BATCH_SIZE), split.labels.split(_EVAL_BATCH_SIZE)):
            logits, y = model(as_float(x).to(device)), y.to(device)
            hits = logits.argmax(-1) == y if model.label_kind == "class" else (logits > 0) == y.bool()
            correct += float(hits.float().reshape(len(y), -1).mean(dim=1).sum())
    return correct / len(split)


def _save(model: Classifier, path: Path) -> None:
    """Atomically (a temporary file, then ``os.replace``): concurrent cells never read half a file."""
    payload = {
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "in_channels": model.in_channels,
        "num_outputs": model.num_outputs,
        "label_kind": model.label_kind,
        "test_accuracy": model.test_accuracy,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
