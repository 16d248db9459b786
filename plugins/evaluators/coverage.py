"""Class coverage: how many of a class dataset's classes a prior's samples show, and in what proportions.

Mode collapse hides from per-sample metrics (each image can be sharp and well classified); it shows in the label
histogram of many samples. Samples are decoded prior draws labelled by the harness classifier's argmax.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field

from harness import EvalData, Evaluator, TrainedModel, hookimpl
from harness.api import checked_options
from harness_plugins.evaluators.details import write_details

#: Pseudo-count added to every class of the sample histogram (Jeffreys / Krichevsky–Trofimov): keeps the KL finite
#: for a class the samples never show, and biases a matching histogram by only about (K - 1) / (2 · samples) nats.
SMOOTHING = 0.5


def class_kl(reference_counts: np.ndarray, sample_counts: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """KL(p_reference || p̂_samples) in nats, p̂ the sample histogram with ``smoothing`` added to every class.

    This direction punishes what coverage is about: a class the reference holds and the samples miss costs
    p_ref(k) · log(p_ref(k) / p̂(k)), large because p̂(k) is a pseudo-count over the sample size. The other
    direction, KL(p_samples || p_ref), weighs classes by the sampler's own mass and barely notices dropped ones
    (a one-class sampler on 10 balanced classes would pay only log 10). The reference histogram is not smoothed:
    its zero classes add nothing.
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    ref = ref / ref.sum()
    est = np.asarray(sample_counts, dtype=np.float64) + smoothing
    est = est / est.sum()
    seen = ref > 0
    return float(np.sum(ref[seen] * np.log(ref[seen] / est[seen])))


class CoverageEvaluator(Evaluator):
    """``classes``: how many distinct classes ``samples`` decoded prior draws fall in (harness classifier argmax);
    ``kl``: ``class_kl`` of the test split's label histogram against theirs, in nats (0 when they match).

    Class datasets only: on an attribute dataset (CelebA) there is no class histogram, so nothing is reported and
    ``coverage-details.json`` says why; the cell's other metrics are kept. The details file otherwise records the
    sample count, the number of classes, and both histograms.
    """

    name = "coverage"
    metrics = {"classes": "max", "kl": "min"}

    @checked_options
    def __init__(
        self, samples: Annotated[int, Field(ge=1)] = 2000, batch_size: Annotated[int, Field(ge=1)] = 1000
    ) -> None:
        self.samples = samples
        self.batch_size = batch_size

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        # Imported here, as separability does: the classifier trains (once per dataset and seed) on demand.
        from harness_plugins.evaluators.classifier import load_or_train_classifier

        test = data.test
        if test.label_kind == "attributes":
            write_details(model, self.name, {"skipped": f"dataset {data.dataset!r} has attributes, not classes"})
            return {}
        classifier = load_or_train_classifier(data, model.seed, model.device)
        assert test.labels is not None  # load_or_train_classifier refuses unlabelled splits
        predicted = torch.cat(
            [
                classifier.probabilities(model.sample(min(self.batch_size, self.samples - start))).argmax(dim=1).cpu()
                for start in range(0, self.samples, self.batch_size)
            ]
        )
        num_classes = max(classifier.num_outputs, int(test.labels.max()) + 1)
        sample_counts = torch.bincount(predicted, minlength=num_classes).numpy()
        test_counts = torch.bincount(test.labels.cpu(), minlength=num_classes).numpy()
        details: dict[str, Any] = {
            "samples": self.samples,
            "num_classes": num_classes,
            "sample_histogram": sample_counts.tolist(),
            "test_histogram": test_counts.tolist(),
            "kl": "KL(p_test || p_samples) in nats, samples smoothed by " + str(SMOOTHING),
        }
        write_details(model, self.name, details)
        kl = class_kl(test_counts, sample_counts)
        assert math.isfinite(kl)
        return {"classes": float(np.count_nonzero(sample_counts)), "kl": kl}


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(CoverageEvaluator)
