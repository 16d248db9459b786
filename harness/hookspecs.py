"""The hook specifications of prior-harness (pluggy project name and entry-point group: ``harness``).

Each hook hands the host a ``register`` callback; a plugin calls it once per class it provides.
The host owns the registries, checks names are unique and validates options before anything trains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pluggy

from harness.api import Architecture, Dataset, Evaluator, Prior, Regularizer
from harness.trackers import Tracker

PROJECT_NAME = "harness"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

T = TypeVar("T")
Register = Callable[[T], None]


@hookspec
def harness_register_priors(register: Register[type[Prior]]) -> None:
    """Hand the host your prior classes.

    Call ``register(cls)`` once per class; ``cls.name`` is the key users write under ``priors:`` in
    benchmarks.yaml. The host builds a prior as ``cls(latent_dim=..., **options)`` after validating the options.
    """


@hookspec
def harness_register_regularizers(register: Register[type[Regularizer]]) -> None:
    """Hand the host your regularizer classes (``cls.name`` is the key under ``regularizers:``)."""


@hookspec
def harness_register_evaluators(register: Register[type[Evaluator]]) -> None:
    """Hand the host your evaluator classes (``cls.name`` is the key under ``evaluators:``).

    ``cls.metrics`` declares the metric names the evaluator reports, so ``primary_metric`` can be checked
    before training.
    """


@hookspec
def harness_register_datasets(register: Register[type[Dataset]]) -> None:
    """Hand the host your dataset classes (``cls.name`` is the key under ``datasets:``)."""


@hookspec
def harness_register_architectures(register: Register[type[Architecture]]) -> None:
    """Hand the host your encoder/decoder architectures (``cls.name`` is ``model.architecture``)."""


@hookspec
def harness_register_trackers(register: Register[type[Tracker]]) -> None:
    """Hand the host your experiment trackers (``cls.name`` is the key under ``trackers:`` and ``--tracker``).

    The host builds one as ``cls(**options)`` in every process that runs cells and calls its methods; one that
    raises is reported and switched off for the run, never failing a cell (``harness.trackers``).
    """
