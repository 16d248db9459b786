"""Linear separability (Karras et al. 2019): how well a hyperplane in latent space splits each attribute.

Follows StyleGAN's ``metrics/linear_separability.py``: label prior samples with an attribute classifier, keep the
most confident half per attribute, fit a linear SVM on the latents, and report 2 ** Σ_attributes H(label | SVM
prediction) in bits. 1 means every attribute is linearly separable; each attribute a hyperplane cannot predict
at all adds up to a factor of 2. Measured in Z_T and, for invertible priors, in Z_0 (paper §5.1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from sklearn.svm import LinearSVC
from torch import Tensor

from harness import EvalData, Evaluator, TrainedModel, hookimpl


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
    softmax over (attribute, not attribute); a class softmax column is used the same way, one class against the
    rest. The label is the likelier side, the confidence its probability; the SVM sees the most confident half.
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

    Class datasets count each class as an attribute (one against the rest); attribute datasets (CelebA) use their
    attributes. StyleGAN draws 200,000 samples and keeps 100,000 per attribute.
    """

    name = "separability"
    metrics = {"zT": "min", "z0": "min"}

    def __init__(self, samples: int = 200_000, batch_size: int = 1000) -> None:
        if samples < 4:
            raise ValueError(f"samples must be at least 4 (half are kept, and an SVM needs two), got {samples}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.samples = samples
        self.batch_size = batch_size

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        # Imported here: only this metric needs the classifier, which trains (once per dataset and seed) on demand.
        from harness_plugins.evaluators.classifier import load_or_train_classifier

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
        labels = torch.cat(probabilities)
        result = {"zT": separability_score(torch.cat(z_t), labels)}
        if z_0:
            result["z0"] = separability_score(torch.cat(z_0), labels)
        return result


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(SeparabilityEvaluator)
