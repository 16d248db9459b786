"""Normalizing-flow priors from zuko (Rozet et al.), any of its flow families by name: ``zuko: {flow: nsf}``.

The family is a class of ``zuko.flows`` (``nsf``, ``maf``, ``naf``, ``realnvp``, ``nice``, ``ncsf``, ``sospf``, ``bpf``,
``unaf``, ``gf``, ``cnf``, and whatever a later zuko adds): a new family needs its name in YAML, no code here.
``transforms`` and the networks' ``hidden_features`` (``layers`` × ``hidden``, written so because a list in YAML is a
grid axis) go to every family that takes them; anything else of the family's own
(``bins`` of a spline flow, ``randperm`` of an autoregressive one) goes through ``options``.

Codes of an autoencoder can have any scale while zuko's splines act on [-5, 5]: ``standardize`` puts an ActNorm
layer (``realnvp.ActNorm``: per-dimension affine, set from the first training batch) in front of the flow. Conditional
on a benchmark's conditional data: a condition network (``harness_plugins.conditioning``) gives zuko its context.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
import zuko
from pydantic import Field
from torch import Tensor

from harness import Prior, hookimpl
from harness.api import checked_options
from harness_plugins.conditioning import ConditionEncoder, condition_features
from harness_plugins.priors.realnvp import ActNorm

#: Every flow family zuko provides, by lower-case class name.
FAMILIES: dict[str, type[zuko.flows.Flow]] = {
    name.lower(): cls
    for name, cls in vars(zuko.flows).items()
    if isinstance(cls, type) and issubclass(cls, zuko.flows.Flow) and cls is not zuko.flows.Flow
}
FlowName = Literal[tuple(sorted(FAMILIES))]  # type: ignore[valid-type]
#: Width of the context the condition network hands the flow.
CONTEXT_FEATURES = 64


def build_flow(
    family: str, features: int, context: int, transforms: int, hidden: list[int], options: dict[str, Any]
) -> zuko.flows.Flow:
    """A zuko flow of ``family``; ``transforms`` only for families that take it (a CNF has one ODE, no stack)."""
    cls = FAMILIES[family]
    kwargs: dict[str, Any] = {"hidden_features": tuple(hidden), **options}
    # NSF and NCSF take ``transforms`` through their MAF base class's constructor, hence the walk up the classes.
    if any("transforms" in inspect.signature(base.__init__).parameters for base in cls.__mro__ if base is not object):
        kwargs.setdefault("transforms", transforms)
    return cls(features, context, **kwargs)


class ZukoPrior(Prior):
    """pθ(z) = a zuko flow's density (after an optional ActNorm), base N(0, I); Z_0 is the flow's base space.

    Both directions exist for every family, at different costs: coupling flows (``realnvp``, ``nice``) take one
    pass each way; autoregressive ones (``maf``, ``nsf``, ``ncsf``, ``naf``, ...) score in one pass and sample in
    ``latent_dim`` passes; ``naf``, ``unaf``, ``sospf`` and ``bpf`` invert monotone networks numerically; ``cnf``
    integrates an ODE both ways.
    """

    name = "zuko"
    invertible = True
    conditional = True

    @checked_options
    def __init__(
        self,
        latent_dim: Annotated[int, Field(ge=1)],
        flow: FlowName = "nsf",
        transforms: Annotated[int, Field(ge=1, description="stacked transforms, for families that stack")] = 3,
        hidden: Annotated[int, Field(ge=1, description="width of each hidden layer of zuko's networks")] = 64,
        layers: Annotated[int, Field(ge=1, description="hidden layers of zuko's networks")] = 2,
        standardize: bool = True,
        options: dict[str, Any] = {},  # noqa: B006 - read, never mutated
        condition_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if flow not in FAMILIES:
            raise ValueError(f"unknown zuko flow {flow!r}; zuko {zuko.__version__} has {', '.join(sorted(FAMILIES))}")
        self.latent_dim = latent_dim
        self.condition_net = None if condition_shape is None else ConditionEncoder(tuple(condition_shape), CONTEXT_FEATURES)
        context = 0 if self.condition_net is None else CONTEXT_FEATURES
        self.flow = build_flow(flow, latent_dim, context, transforms, [hidden] * layers, dict(options))
        self.actnorm = ActNorm(latent_dim) if standardize else None

    def _context(self, cond: Tensor | None, like: Tensor) -> Tensor | None:
        return condition_features(self.condition_net, cond, like, self.name)

    def _standardized(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.actnorm is None:
            return z, z.new_zeros(z.shape[0])
        return self.actnorm(z)

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        u, logdet = self._standardized(z)
        return self.flow(self._context(cond, z)).log_prob(u) + logdet

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.flow(self._context(cond, z)).transform(self._standardized(z)[0])

    def from_base(self, z0: Tensor, cond: Tensor | None = None) -> Tensor:
        u = self.flow(self._context(cond, z0)).transform.inv(z0)
        return u if self.actnorm is None else self.actnorm.inverse(u)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        z0 = torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)
        return self.from_base(z0, cond)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(ZukoPrior)
