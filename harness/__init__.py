"""prior-harness: a plugin-based benchmark harness comparing priors for deep latent variable models.

The public API plugin authors use is what this module exports.
"""

from harness.api import (
    Architecture,
    DataSplit,
    Dataset,
    DatasetUnavailable,
    EvalData,
    Evaluator,
    GaussianPosterior,
    PluginUnavailable,
    Prior,
    Regularizer,
    TrainedModel,
    as_float,
    standard_normal_log_prob,
)
from harness.hookspecs import hookimpl
from harness.trackers import CellEnd, TrackedCell, Tracker
from harness.weights import pretrained_weights

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "CellEnd",
    "DataSplit",
    "Dataset",
    "DatasetUnavailable",
    "EvalData",
    "Evaluator",
    "GaussianPosterior",
    "PluginUnavailable",
    "Prior",
    "Regularizer",
    "TrackedCell",
    "Tracker",
    "TrainedModel",
    "__version__",
    "as_float",
    "hookimpl",
    "pretrained_weights",
    "standard_normal_log_prob",
]
