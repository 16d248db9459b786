"""Linear separability (Karras et al. 2019): how well hyperplanes in latent space split the labels of samples.

Attribute datasets (CelebA) follow StyleGAN's ``metrics/linear_separability.py``: label prior samples with an
attribute classifier, keep the most confident half per attribute, fit a linear SVM on the latents, and report
2 ** Σ_attributes H(label | SVM prediction) in bits. 1 means every attribute is linearly separable; each attribute
a hyperplane cannot predict at all adds up to a factor of 2.

Class datasets (MNIST) have one categorical label, not K binary ones: counted one class against the rest, the most
confident half would be nearly all confident negatives and the score ≈ 1 by construction. Their label is the
classifier's argmax, its confidence the softmax maximum; a multi-class linear SVM is fitted on the most confident
half and the score is 2 ** H(label | SVM prediction) · K / K_kept (``categorical_separability``): 1 when the kept
classes are linearly separable and all K classes are kept, K when the prediction says nothing about the label.
Measured in Z_T and, for invertible priors, in Z_0 (paper §5.1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from sklearn.svm import LinearSVC
from torch import Tensor

from harness import EvalData, Evaluator, TrainedModel, hookimpl
from harness.api import checked_options
from harness_plugins.evaluators.details import write_details


#: ``per-label``: the most confident half of each predicted label; ``overall``: the most confident half of all.
KeepRule = Literal["per-label", "overall"]


def conditional_entropy(table: np.ndarray) -> float:
    """H(Y | X) in bits of a joint count table with X (the SVM prediction) on rows and Y (the label) on columns.

    Computed as Σ p(x, y) log2(p(x) / p(x, y)), which is H(Y) - I(X; Y) as StyleGAN writes it, but never
    slips below 0 through rounding.
    """
    p = np.asarray(table, dtype=np.float64)
    p = p / p.sum()
    px = np.broadcast_to(p.sum(axis=1, keepdims=True), p.shape)
    seen = p > 0
    return float(np.sum(p[seen] * np.log2(px[seen] / p[seen])))


def attribute_entropies(latents: np.ndarray | Tensor, probabilities: np.ndarray | Tensor) -> np.ndarray:
    """H(label | linear SVM prediction) in bits for each attribute, [K].

    ``probabilities`` [N, K] is each sample's probability of having attribute k. StyleGAN's classifiers give a
    softmax over (attribute, not attribute); with ``labels: one-vs-rest`` a class softmax column is used the same
    way, one class against the rest. The label is the likelier side, the confidence its probability; the SVM sees
    the most confident half.
    """
    z = _numpy(latents)
    probs = _numpy(probabilities)
    keep_count = len(z) // 2
    entropies = np.zeros(probs.shape[1])
    for k, p in enumerate(probs.T):
        kept = np.argsort(-np.maximum(p, 1.0 - p), kind="stable")[:keep_count]
        labels = (p[kept] >= 0.5).astype(np.int64)
        # One label only: LinearSVC refuses to fit and StyleGAN then counts the prediction as perfect. Either way
        # H(Y | X) <= H(Y) = 0, so the attribute adds nothing.
        if labels.min() == labels.max():
            continue
        predicted = _linear_svm(z[kept], labels).predict(z[kept])
        table = np.bincount(2 * predicted + labels, minlength=4).reshape(2, 2)
        entropies[k] = conditional_entropy(table)
    return entropies


def separability_score(latents: np.ndarray | Tensor, probabilities: np.ndarray | Tensor) -> float:
    """2 ** Σ_attributes H(label | SVM prediction): 1 when every attribute is linearly separable."""
    return float(2.0 ** attribute_entropies(latents, probabilities).sum())


@dataclass(frozen=True)
class CategoricalSeparability:
    """What ``categorical_separability`` measured: the score, and how many samples and labels it was measured on."""

    score: float
    kept: int
    distinct_labels: int


def categorical_separability(
    latents: np.ndarray | Tensor, probabilities: np.ndarray | Tensor, keep: KeepRule = "per-label"
) -> CategoricalSeparability:
    """Separability of one categorical label: ``probabilities`` [N, K] is a softmax over the K classes.

    The label is the argmax, the confidence its probability; the most confident half is kept (``keep``, see
    ``most_confident_half``), a multi-class (one-vs-rest, primal) linear SVM is fitted on its latents, and
    H(label | prediction) in bits comes from the K×K table of predictions (rows) against labels (columns). The
    score is 2 ** H · K / K_kept, K_kept the number of distinct labels in the kept half.

    Why the factor K / K_kept: 2 ** H(Y | X) <= 2 ** H(Y) <= K_kept, so a sampler that emits fewer classes has fewer
    to separate and would score better for it; a mode-collapsed sampler (K_kept = 1) has H(Y | X) = 0 and would be
    "perfect". A class missing from the kept half is instead counted as one no hyperplane can find: each such class
    multiplies the score as a fully confused one would. A one-class sampler therefore gets K, the score of labels
    independent of z (the metric's worst), and never ranks above a sampler covering all classes. The factor is 1
    when every class is kept, so such samplers get StyleGAN's 2 ** H(Y | X) unchanged. With the ``per-label`` keep
    rule every class the sampler emitted at least once is kept, so K_kept counts the classes emitted; how evenly
    they were emitted is not this metric's question but coverage's (``coverage.kl``). NaN ("not measured") was
    rejected: the leaderboard pools seeds with a NaN-skipping mean and cannot rank a NaN, so a collapsed cell
    would either vanish or float to the top.
    """
    z = _numpy(latents)
    probs = _numpy(probabilities)
    num_classes = probs.shape[1]
    kept = most_confident_half(probs, keep)
    labels = probs[kept].argmax(axis=1)
    present = np.unique(labels)
    if len(present) < 2:
        # LinearSVC refuses a single class; the prediction is that class and H(Y | X) = 0.
        entropy = 0.0
    else:
        predicted = _linear_svm(z[kept], labels).predict(z[kept])
        table = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(table, (predicted, labels), 1)
        entropy = conditional_entropy(table)
    score = 2.0**entropy * num_classes / len(present)
    return CategoricalSeparability(float(score), len(kept), len(present))


def most_confident_half(probabilities: np.ndarray, keep: KeepRule = "per-label") -> np.ndarray:
    """Indices of the samples the SVM is fitted on, sorted: about half of them, the most confident ones.

    ``overall`` is StyleGAN's rule applied to one categorical label: the N // 2 samples with the largest softmax
    maximum. On a class dataset it drops whole classes: the classifier is surer of some classes (trousers, bags)
    than of others (shirts), so the confident half of Fashion-MNIST samples held only 8 of the 10 classes and the
    score then measured how well the easy classes separate. ``per-label`` (the default) keeps the most confident
    ⌈n_k / 2⌉ of the n_k samples labelled k, for every label k: every class the sampler emitted is in the kept
    half, in the proportion it was emitted, and the confidence cut still removes the ambiguous samples within each.
    """
    confidence = probabilities.max(axis=1)
    if keep == "overall":
        return np.sort(np.argsort(-confidence, kind="stable")[: len(probabilities) // 2])
    labels = probabilities.argmax(axis=1)
    kept: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranked = members[np.argsort(-confidence[members], kind="stable")]
        kept.append(ranked[: (len(members) + 1) // 2])
    return np.sort(np.concatenate(kept))


def _linear_svm(z: np.ndarray, labels: np.ndarray) -> LinearSVC:
    """StyleGAN's ``LinearSVC()`` (C=1, squared hinge, L2, tol 1e-4, at most 1000 iterations), solved in the primal.

    StyleGAN ran the liblinear dual of its day; with 100,000 kept points and a few dozen dimensions the dual's
    coordinate descent stops at its iteration cap before converging, while the primal Newton solver reaches the
    same optimum in a few iterations and draws no random numbers.
    """
    return LinearSVC(C=1.0, dual=False).fit(z, labels)


def _numpy(x: np.ndarray | Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


class SeparabilityEvaluator(Evaluator):
    """``zT``: linear separability of ``samples`` prior draws in Z_T, labelled by the harness classifier from their
    decoded images; ``z0``: the same draws and labels mapped to Z_0 by ``prior.to_base`` (invertible priors only).

    ``labels``: ``auto`` treats a class dataset's label as one categorical attribute (``categorical_separability``)
    and an attribute dataset's (CelebA) attributes one by one, as StyleGAN does; ``one-vs-rest`` counts each class
    of a class dataset as a binary attribute, the behaviour before ``labels`` existed (its scores are ≈ 1 by
    construction; kept to reproduce old numbers). StyleGAN draws 200,000 samples and keeps 100,000 per attribute.
    ``keep`` (categorical labels only): ``per-label`` keeps the most confident half of each predicted class,
    ``overall`` the most confident half of all samples, which drops the classes the classifier is least sure of
    (``most_confident_half``). ``separability-details.json`` records the labelling, the keep rule, the samples
    drawn, and per space how many were kept and how many distinct labels they held.
    """

    name = "separability"
    metrics = {"zT": "min", "z0": "min"}

    @checked_options
    def __init__(
        self,
        samples: Annotated[int, Field(ge=4, description="half are kept, and an SVM needs two")] = 200_000,
        batch_size: Annotated[int, Field(ge=1)] = 1000,
        labels: Literal["auto", "one-vs-rest"] = "auto",
        keep: KeepRule = "per-label",
    ) -> None:
        self.samples = samples
        self.batch_size = batch_size
        self.labels = labels
        self.keep = keep

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        # Imported here: only this metric needs the classifier, which trains (once per dataset and seed) on demand.
        from harness_plugins.evaluators.classifier import load_or_train_classifier

        if model.conditional:
            raise ValueError("separability measures an unconditional prior's codes; this model is conditional")
        classifier = load_or_train_classifier(data, model.seed, model.device)
        prior = model.prior
        z_t: list[Tensor] = []
        z_0: list[Tensor] = []
        probabilities: list[Tensor] = []
        for start in range(0, self.samples, self.batch_size):
            z = prior.sample(min(self.batch_size, self.samples - start))
            probabilities.append(classifier.probabilities(model.decode(z)).cpu())
            z_t.append(z.cpu())
            if prior.invertible:
                z_0.append(prior.to_base(z).cpu())
        probs = torch.cat(probabilities)
        spaces = {"zT": torch.cat(z_t), **({"z0": torch.cat(z_0)} if z_0 else {})}
        categorical = classifier.label_kind == "class" and self.labels == "auto"
        result: dict[str, float] = {}
        details: dict[str, Any] = {
            "labels": "categorical" if categorical else "per-attribute",
            **({"keep": self.keep} if categorical else {}),
            "samples": self.samples,
            "kept": {},
            "distinct_labels": {},
        }
        for space, latents in spaces.items():
            if categorical:
                measured = categorical_separability(latents, probs, self.keep)
                result[space] = measured.score
                details["kept"][space] = measured.kept
                details["distinct_labels"][space] = measured.distinct_labels
            else:
                result[space] = separability_score(latents, probs)
                details["kept"][space] = len(probs) // 2
                # Per attribute: how many of its two labels (present, absent) the kept half held.
                details["distinct_labels"][space] = _kept_labels_per_attribute(probs)
        write_details(model, self.name, details)
        return result


def _kept_labels_per_attribute(probabilities: Tensor) -> list[int]:
    p = probabilities.numpy()
    counts = []
    for column in p.T:
        kept = np.argsort(-np.maximum(column, 1.0 - column), kind="stable")[: len(p) // 2]
        counts.append(len(np.unique(column[kept] >= 0.5)))
    return counts


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(SeparabilityEvaluator)
