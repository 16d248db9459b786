"""FID, KID and the Inception Score, computed by torch-fidelity (``calculate_metrics``), never reimplemented,
but for the Inception Score's final arithmetic on the harness classifier's probabilities (below).

Generated images are decoder means of prior samples, clipped to [0, 1], quantised to uint8 and (grayscale)
repeated to 3 channels; the reference is the test split treated the same way. Two feature extractors:

- ``inception``: torch-fidelity's ``inception-v3-compat``, the number papers report. Its weights file is looked
  for at ``weights_path`` or in the torch hub cache, downloaded there only with ``download: true``, and its
  absence stops the run before anything trains.
- ``classifier``: the harness classifier's penultimate features (``classifier.py``), registered into
  torch-fidelity as the feature extractor ``harness-classifier`` so the FID/KID arithmetic stays torch-fidelity's.
  Works offline on any labelled image dataset; its numbers are comparable only with the same classifier. With
  ``classifier: frozen`` (the default) it is the file shipped for the dataset (``extractors/<dataset>.pt``, sha256
  checked) where there is one, else the classifier trained for the cell's seed; ``classifier: retrain`` always
  trains per seed, as before the shipped files. For the Inception Score it is the classifier's softmax over the
  dataset's own classes, in place of Inception's over ImageNet's (class datasets only). torch-fidelity takes
  ready-made class scores only through an internal function (``metric_isc.isc_features_to_metric``), so
  ``inception_score_from_probabilities`` repeats its few lines (shuffle, splits, mean and population std); the
  tests check the two agree.

With ``prc: true`` the same call also computes improved precision and recall (Kynkäänniemi et al. 2019, k-NN
balls of radius the ``prc_neighborhood``-th neighbour distance) in the same features, so they are extracted once.

Reference features and statistics are cached by torch-fidelity under ``<cache_dir>/fidelity`` with a name made of
the dataset, a hash of its options, the split, its size and the extractor (with a hash of its weights, and the
seed for a retrained classifier); generated samples never are. Precision and recall read the same cached reference
features. Each evaluation writes ``<name>-details.json`` into the cell's folder: extractor, sample count, reference
split and size, the classifier's file, sha256 and test accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch_fidelity
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from harness import EvalData, Evaluator, TrainedModel, hookimpl, pretrained_weights, progress
from harness.api import checked_options
from harness_plugins.evaluators.details import write_details
from harness_plugins.evaluators.classifier import (
    Classifier,
    ClassifierFile,
    dataset_cache_key,
    load_classifier,
    resolve_classifier,
    sha256_of,
)

INCEPTION_EXTRACTOR = "inception-v3-compat"
CLASSIFIER_EXTRACTOR = "harness-classifier"
#: torch-fidelity's default KID subset size; smaller sets use all their samples in every subset.
KID_SUBSET_SIZE = 1000


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """The harness classifier inside torch-fidelity, loaded from its cache file as Inception is from its weights.

    torch-fidelity builds extractors itself from a registered class, so the classifier reaches it as a file path
    (``feature_extractor_weights_path``), the documented way to hand an extractor its weights.
    """

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str, **kwargs: Any) -> None:
        super().__init__(name, features_list)
        self.classifier = load_classifier(Path(feature_extractor_weights_path), torch.device("cpu"))

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    def forward(self, images: Tensor) -> tuple[Tensor]:
        return (self.classifier.features(classifier_input(self.classifier, images)),)


def classifier_input(classifier: Classifier, images: Tensor) -> Tensor:
    """uint8 RGB images [B, 3, H, W] as the classifier reads them: floats in [0, 1], one channel if it is grayscale
    (the three channels are identical copies there)."""
    x = images.float() / 255.0
    return x[:, :1] if classifier.in_channels == 1 else x


def classifier_details(found: ClassifierFile) -> dict[str, Any]:
    """The classifier's identity for a details file: shipped or retrained, its file, sha256 and test accuracy."""
    return {
        "classifier_test_accuracy": found.model.test_accuracy,
        "classifier": "frozen" if found.frozen else "retrain",
        "classifier_file": found.path.name if found.frozen else str(found.path),
        "classifier_sha256": found.sha256,
    }


# torch-fidelity refuses a second registration of a name, as when this file is imported under a second module name.
if CLASSIFIER_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(CLASSIFIER_EXTRACTOR, ClassifierFeatureExtractor)


class _Images(TorchDataset):
    """A uint8 [N, 3, H, W] tensor as the map-style dataset torch-fidelity reads one image at a time."""

    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]


def _as_uint8_rgb(images: Tensor) -> Tensor:
    """Images (uint8, or float in [0, 1]) as uint8 [N, 3, H, W] on the CPU: what torch-fidelity's extractors take."""
    if images.dtype != torch.uint8:
        images = images.mul(255).round().to(torch.uint8)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.cpu().contiguous()


def _generate(model: TrainedModel, n: int, batch_size: int, desc: str) -> Tensor:
    """``n`` decoded prior samples as uint8 RGB, sampled in batches so large counts fit in device memory."""
    sizes = [min(batch_size, n - start) for start in range(0, n, batch_size)]
    batches = progress.bar(sizes, desc=f"{desc}: generating samples", unit="batch")
    return torch.cat([_as_uint8_rgb(model.sample(size)) for size in batches])


def _require_images(data: EvalData, evaluator: str) -> None:
    if not data.test.is_image:
        raise ValueError(
            f"{evaluator} compares images; dataset {data.dataset!r} holds vectors of shape "
            f"{tuple(data.test.x.shape[1:])}"
        )


def inception_weights(evaluator: str, weights_path: str | None, download: bool, alternative: str = "") -> Path:
    """torch-fidelity's Inception weights file (see ``harness.pretrained_weights``)."""
    return pretrained_weights("Inception", URL_INCEPTION_V3, evaluator, weights_path, download, alternative)


def _calculate(
    model: TrainedModel, generated: Tensor, weights: Path, batch_size: int, **options: Any
) -> dict[str, float]:
    """torch-fidelity's ``calculate_metrics`` with ``generated`` as input1, on the model's device, seeded by it."""
    cuda = model.device.type == "cuda"
    # torch-fidelity moves its extractor to the current CUDA device: make that the model's.
    with torch.cuda.device(model.device) if cuda else nullcontext():
        return torch_fidelity.calculate_metrics(
            input1=_Images(generated),
            feature_extractor_weights_path=str(weights),
            batch_size=batch_size,
            cuda=cuda,
            # No DataLoader worker processes: the images are already in memory, and workers would fork the run.
            save_cpu_ram=True,
            rng_seed=model.seed,
            verbose=False,
            **options,
        )


class FIDEvaluator(Evaluator):
    """``fid``: Fréchet distance between features of ``samples`` generated images and of the whole test split;
    ``fid.kid`` (with ``kid: true``): the kernel distance (polynomial-kernel MMD², subsets of up to 1000) between the
    same features; ``fid.precision`` and ``fid.recall`` (with ``prc: true``): the share of generated images inside
    the reference's k-NN balls, and of reference images inside the generated images' (k = ``prc_neighborhood``).
    All by torch-fidelity, with the extractor named by ``extractor``."""

    name = "fid"
    metrics = {"": "min", "kid": "min", "precision": "max", "recall": "max"}

    @checked_options
    def __init__(
        self,
        extractor: Literal["inception", "classifier"] = "inception",
        samples: Annotated[int, Field(ge=2, description="FID needs a covariance")] = 10000,
        kid: bool = True,
        weights_path: str | None = None,
        download: bool = False,
        batch_size: Annotated[int, Field(ge=1)] = 100,
        prc: bool = False,
        prc_neighborhood: Annotated[int, Field(ge=1)] = 3,
        classifier: Literal["frozen", "retrain"] = "frozen",
    ) -> None:
        if prc and prc_neighborhood >= samples:
            # The k-th neighbour among the other samples must exist.
            raise ValueError(f"prc_neighborhood must be < samples ({samples}), got {prc_neighborhood}")
        self.extractor = extractor
        self.samples = samples
        self.kid = kid
        self.prc = prc
        self.prc_neighborhood = prc_neighborhood
        self.classifier = classifier
        self.weights_path = weights_path
        self.download = download
        self.batch_size = batch_size

    def check_available(self) -> None:
        if self.extractor == "inception":
            self._inception_weights()

    def _inception_weights(self) -> Path:
        return inception_weights(
            self.name, self.weights_path, self.download, alternative=f", or use {self.name}.extractor: classifier"
        )

    def _extractor(self, model: TrainedModel, data: EvalData) -> tuple[str, Path, str, dict[str, Any]]:
        """torch-fidelity's extractor name, its weights file, its tag in cache names, and its details."""
        if self.extractor == "inception":
            weights = self._inception_weights()
            # A short hash of the weights: cached reference features never outlive the weights they came from.
            tag = f"inception-{sha256_of(weights)[:8]}"
            return INCEPTION_EXTRACTOR, weights, tag, {"classifier_test_accuracy": None}
        found = resolve_classifier(data, model.seed, model.device, frozen=self.classifier == "frozen")
        # A shipped file serves every seed; a retrained one only its own.
        tag = f"classifier-{'frozen' if found.frozen else f'seed{model.seed}'}-{found.sha256[:8]}"
        return CLASSIFIER_EXTRACTOR, found.path, tag, classifier_details(found)

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        _require_images(data, self.name)
        feature_extractor, weights, tag, extractor_details = self._extractor(model, data)
        generated = _generate(model, self.samples, self.batch_size, desc=self.name)
        reference = _as_uint8_rgb(data.test.x)
        kid_subset_size = min(KID_SUBSET_SIZE, len(generated), len(reference))
        out = _calculate(
            model,
            generated,
            weights,
            self.batch_size,
            feature_extractor=feature_extractor,
            input2=_Images(reference),
            input2_cache_name=f"{dataset_cache_key(data)}-test-{len(reference)}-{tag}",
            cache_root=str(Path(data.cache_dir) / "fidelity"),
            fid=True,
            kid=self.kid,
            kid_subset_size=kid_subset_size,
            # In the same call as FID: features are extracted once (and the reference's read from the cache).
            prc=self.prc,
            prc_neighborhood=self.prc_neighborhood,
        )
        details: dict[str, Any] = {
            "extractor": self.extractor,
            "samples": self.samples,
            "reference_split": "test",
            "reference_size": len(reference),
            **extractor_details,
        }
        metrics = {"": out[torch_fidelity.KEY_METRIC_FID]}
        if self.kid:
            metrics["kid"] = out[torch_fidelity.KEY_METRIC_KID_MEAN]
            details.update(kid_std=out[torch_fidelity.KEY_METRIC_KID_STD], kid_subset_size=kid_subset_size)
        if self.prc:
            metrics["precision"] = out[torch_fidelity.KEY_METRIC_PRECISION]
            metrics["recall"] = out[torch_fidelity.KEY_METRIC_RECALL]
            details.update(prc_neighborhood=self.prc_neighborhood, f_score=out[torch_fidelity.KEY_METRIC_F_SCORE])
        write_details(model, self.name, details)
        return metrics


def inception_score_from_probabilities(
    probabilities: Tensor, splits: int, rng_seed: int | None = None
) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) of class probabilities [N, K], as torch-fidelity's ``isc_features_to_metric``
    computes it from logits: rows shuffled by numpy's ``RandomState(rng_seed).permutation`` (none when ``rng_seed``
    is None), cut into ``splits`` chunks at ``i * N // splits``, p(y) the chunk's mean, in float64; returns the
    mean and the population standard deviation of the chunks' scores.
    """
    if probabilities.dim() != 2 or not 1 <= splits <= len(probabilities):
        raise ValueError(
            f"inception score: need probabilities [N, K] and 1 <= splits <= N, got shape "
            f"{tuple(probabilities.shape)} and splits={splits}"
        )
    n = len(probabilities)
    if rng_seed is not None:
        # The same permutation torch-fidelity draws: samples in a meaningful order (a conditional model's, one per
        # test condition) would otherwise give each chunk a skewed p(y).
        probabilities = probabilities[torch.from_numpy(np.random.RandomState(rng_seed).permutation(n))]
    p = probabilities.double()
    scores = []
    for i in range(splits):
        chunk = p[i * n // splits : (i + 1) * n // splits]
        marginal = chunk.mean(dim=0, keepdim=True)
        # xlogy counts a class with p(y|x) = 0 as 0, its limit; p * log p would give nan. torch-fidelity never meets
        # it, working from logits with log_softmax.
        kl = (torch.special.xlogy(chunk, chunk) - torch.special.xlogy(chunk, marginal)).sum(dim=1)
        scores.append(kl.mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def _class_probabilities(classifier: Classifier, images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """p(y|x) [N, K] of uint8 RGB images, in batches on ``device``, gathered on the CPU."""
    batches = [
        classifier.probabilities(classifier_input(classifier, images[start : start + batch_size].to(device))).cpu()
        for start in range(0, len(images), batch_size)
    ]
    return torch.cat(batches)


class InceptionScoreEvaluator(Evaluator):
    """``inception_score``: exp(E KL(p(y|x) || p(y))) of class posteriors over ``samples`` generated images,
    averaged over ``splits``. ``extractor: inception`` (the number papers report): Inception's posteriors over
    ImageNet's classes, by torch-fidelity. ``extractor: classifier`` (offline): the harness classifier's softmax
    over the dataset's own K classes (``classifier: frozen`` or ``retrain``, as for ``fid``), so the score lies in
    [1, K] and is comparable only with the same classifier; class datasets only."""

    name = "inception_score"
    metrics = {"": "max"}

    @checked_options
    def __init__(
        self,
        extractor: Literal["inception", "classifier"] = "inception",
        samples: Annotated[int, Field(ge=1)] = 10000,
        splits: Annotated[int, Field(ge=1)] = 10,
        weights_path: str | None = None,
        download: bool = False,
        batch_size: Annotated[int, Field(ge=1)] = 100,
        classifier: Literal["frozen", "retrain"] = "frozen",
    ) -> None:
        if splits > samples:
            raise ValueError(f"splits must be between 1 and samples ({samples}), got {splits}")
        self.extractor = extractor
        self.samples = samples
        self.splits = splits
        self.weights_path = weights_path
        self.download = download
        self.batch_size = batch_size
        self.classifier = classifier

    def check_available(self) -> None:
        if self.extractor == "inception":
            self._inception_weights()

    def _inception_weights(self) -> Path:
        return inception_weights(
            self.name, self.weights_path, self.download, alternative=f", or use {self.name}.extractor: classifier"
        )

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        _require_images(data, self.name)
        if self.extractor == "classifier":
            score, details = self._classifier_score(model, data)
        else:
            score, details = self._inception_score(model)
        write_details(model, self.name, {"extractor": self.extractor, "samples": self.samples,
                                         "splits": self.splits, **details})  # fmt: skip
        return {"": score}

    def _inception_score(self, model: TrainedModel) -> tuple[float, dict[str, Any]]:
        weights = self._inception_weights()
        generated = _generate(model, self.samples, self.batch_size, desc=self.name)
        options = {"feature_extractor": INCEPTION_EXTRACTOR, "isc": True, "isc_splits": self.splits}
        out = _calculate(model, generated, weights, self.batch_size, **options)
        return out[torch_fidelity.KEY_METRIC_ISC_MEAN], {"std": out[torch_fidelity.KEY_METRIC_ISC_STD]}

    def _classifier_score(self, model: TrainedModel, data: EvalData) -> tuple[float, dict[str, Any]]:
        if data.test.label_kind == "attributes":
            # Independent sigmoids per attribute are no distribution over classes: there is no p(y) to compare with.
            raise ValueError(
                f"{self.name}.extractor: classifier needs class labels; dataset {data.dataset!r} has "
                f"{data.test.label_kind}\n  use {self.name}.extractor: inception"
            )
        found = resolve_classifier(data, model.seed, model.device, frozen=self.classifier == "frozen")
        generated = _generate(model, self.samples, self.batch_size, desc=self.name)
        probabilities = _class_probabilities(found.model, generated, self.batch_size, model.device)
        # Shuffled by the cell's seed, as torch-fidelity shuffles Inception's (``rng_seed`` in ``_calculate``).
        mean, std = inception_score_from_probabilities(probabilities, self.splits, rng_seed=model.seed)
        return mean, {"std": std, "num_classes": found.model.num_outputs, **classifier_details(found)}


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(FIDEvaluator)
    register(InceptionScoreEvaluator)
