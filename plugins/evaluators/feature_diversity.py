"""Feature diversity: how different a model's samples are from one another, in the harness classifier's features.

An offline stand-in for the paper's LPIPS diversity, and not LPIPS: the features come from the harness's own small
classifier (``classifier.py``, trained on the dataset's labels), not from an ImageNet backbone, so values compare
only between models of one dataset and seed. Unconditional models: pairs are independent draws from the prior;
conditional ones: two draws for the same test condition, as ``lpips_diversity`` pairs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

import torch.nn.functional as F
from pydantic import Field

from harness import EvalData, Evaluator, TrainedModel, hookimpl
from harness.api import checked_options
from harness_plugins.evaluators.classifier import load_or_train_classifier
from harness_plugins.evaluators.pairs import sample_pairs


class FeatureDiversityEvaluator(Evaluator):
    """``feature_diversity``: the mean of 1 − cos(f(a), f(b)) over ``pairs`` pairs of independent samples a, b, with
    f the classifier's penultimate features. Cosine, not Euclidean: a distance between directions is insensitive to
    how strongly an image activates the network, as LPIPS's unit-normalised features are. The features are
    non-negative (after a ReLU), so values lie in [0, 1]: 0 when every sample looks alike (mode collapse)."""

    name = "feature_diversity"
    metrics = {"": "max"}

    @checked_options
    def __init__(
        self,
        pairs: Annotated[int, Field(ge=1)] = 1000,
        batch_size: Annotated[int, Field(ge=1)] = 500,
        conditions: Annotated[int, Field(ge=1, description="test conditions pairs are drawn for")] = 100,
    ) -> None:
        self.pairs = pairs
        self.batch_size = batch_size
        self.conditions = conditions

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        classifier = load_or_train_classifier(data, model.seed, model.device)
        total = 0.0
        for first, second in sample_pairs(model, self.pairs, self.batch_size, self.conditions):
            a, b = classifier.features(first), classifier.features(second)
            total += float((1 - F.cosine_similarity(a, b, dim=1)).sum())
        return {"": total / self.pairs}


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(FeatureDiversityEvaluator)
