"""A RealNVP flow prior (Dinh et al. 2017): affine couplings that split the code in half at each step.

The flow fθ maps codes in Z_T to Z_0, where z0 ~ N(μ(cond), I) (paper §3). Both directions cost one pass,
so the density (``log_prob``, data -> base) and sampling (``sample``, base -> data) are equally cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from harness import Prior, hookimpl, standard_normal_log_prob
from harness.api import checked_options
from harness_plugins.conditioning import ConditionEncoder, condition_features

#: |log-scale| of one coupling is at most this: each coupling stretches or shrinks by at most e² per dimension.
SCALE_BOUND = 2.0
#: Floor on the batch standard deviation ActNorm divides by, so a constant dimension does not give an inf scale.
ACTNORM_EPS = 1e-6


class ActNorm(nn.Module):
    """y = (x + bias) · exp(log_scale) per dimension (Kingma & Dhariwal 2018, Glow).

    The first batch of at least two rows seen in training mode in the data -> base direction sets bias and
    log_scale so that batch leaves with mean 0 and standard deviation 1. ``initialized`` is a persistent buffer:
    a restored checkpoint keeps its fitted values instead of re-initialising on its next batch.
    """

    initialized: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x -> (y, log|det ∂y/∂x|) with the log-determinant per row, [B]."""
        # One row has no spread to normalise by: wait for a real batch.
        if self.training and x.shape[0] > 1 and not bool(self.initialized):
            with torch.no_grad():
                self.bias.copy_(-x.mean(dim=0))
                self.log_scale.copy_(-x.std(dim=0, unbiased=False).clamp_min(ACTNORM_EPS).log())
                self.initialized.fill_(True)
        y = (x + self.bias) * self.log_scale.exp()
        return y, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class _AffineCoupling(nn.Module):
    """Keeps one part of the vector, and scales and shifts the other by an MLP of the kept part (and cond).

    With ``flip`` False the first ``dim // 2`` entries are kept and the last ``dim - dim // 2`` change; with
    ``flip`` True the last ``dim // 2`` are kept and the first ``dim - dim // 2`` change. Alternating ``flip``
    between layers transforms every entry (for odd ``dim`` the middle one in both), with no permutation op.
    """

    def __init__(self, dim: int, flip: bool, hidden: int, layers: int, cond_dim: int) -> None:
        super().__init__()
        n_keep = dim // 2
        self.n_change = dim - n_keep
        self.keep = slice(dim - n_keep, dim) if flip else slice(0, n_keep)
        self.change = slice(0, self.n_change) if flip else slice(n_keep, dim)
        self.flip = flip
        widths = [n_keep + cond_dim] + [hidden] * layers
        body: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            body += [nn.Linear(w_in, w_out), nn.ReLU()]
        last = nn.Linear(widths[-1], 2 * self.n_change)
        # Zero output: log-scale 0 and shift 0, so the coupling starts as the identity.
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*body, last)

    def _scale_shift(self, kept: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        h = kept if cond is None else torch.cat([kept, cond], dim=-1)
        raw, shift = self.net(h).split(self.n_change, dim=-1)
        # A soft bound: unbounded log-scales compound over layers into inf samples from the inverse.
        return SCALE_BOUND * torch.tanh(raw / SCALE_BOUND), shift

    def _join(self, kept: Tensor, changed: Tensor) -> Tensor:
        return torch.cat([changed, kept] if self.flip else [kept, changed], dim=-1)

    def forward(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """x -> (y, log|det ∂y/∂x|) with the log-determinant per row, [B]."""
        kept = x[:, self.keep]
        log_scale, shift = self._scale_shift(kept, cond)
        changed = x[:, self.change] * log_scale.exp() + shift
        return self._join(kept, changed), log_scale.sum(dim=-1)

    def inverse(self, y: Tensor, cond: Tensor | None) -> Tensor:
        kept = y[:, self.keep]
        log_scale, shift = self._scale_shift(kept, cond)
        return self._join(kept, (y[:, self.change] - shift) * torch.exp(-log_scale))


class RealNVPPrior(Prior):
    """pθ(z) = N(fθ(z); μ(cond), I) · |det ∂fθ/∂z|, with fθ a stack of affine couplings (RealNVP).

    Options:

    - ``depth``: number of coupling layers. Consecutive layers swap which half is kept, so ``depth >= 2`` is
      needed for every dimension to be transformed.
    - ``hidden``, ``layers``: each coupling's MLP has ``layers`` hidden layers of width ``hidden`` (ReLU). It maps
      the kept half (and ``cond``) to a log-scale and a shift for the other half.
    - ``actnorm``: put an ActNorm layer (Glow) before each coupling: a per-dimension affine map set from the first
      training batch so that batch is standardised. Codes of an autoencoder can have any scale; ActNorm puts
      them where the couplings' bounded scales and identity start work well. Its "initialised" flag is saved in
      the state dict, so a restored prior is not re-initialised.
    - ``cond_dim``: width of a condition vector ``cond`` [B, cond_dim] passed directly (for callers with their
      own conditions); 0 makes the prior unconditional and ``cond`` is ignored. When positive, ``cond`` is
      required, is concatenated to every coupling MLP's input, and a linear map gives the base mean μ(cond)
      (zero-initialised, so a new prior starts at N(0, I)).

    On a benchmark's conditional data the harness passes ``condition_shape`` instead (the paper's conditional
    flow, §6): a condition network (``harness_plugins.conditioning``, part of θ) turns y into ``hidden``
    features, which condition every coupling and the base mean μ(y) as ``cond`` does above.

    Design choices: each coupling's log-scale is bounded to ±``SCALE_BOUND`` (= 2) by ``2·tanh(s/2)`` so sampling
    through the inverse cannot overflow; the last layer of every coupling MLP is zero-initialised so the flow
    starts as the identity (plus ActNorm) and training begins from a well-conditioned Gaussian.
    """

    name = "realnvp"
    invertible = True
    conditional = True
    has_density = True
    #: ActNorm's data-dependent start happens in the first step, which a pack runs per member, unpacked; after it
    #: ``initialized`` is True in every member and its Python branch is the same for all.
    packable = True

    @checked_options
    def __init__(
        self,
        latent_dim: Annotated[int, Field(ge=2, description="a coupling flow splits it in two")],
        depth: Annotated[int, Field(ge=1)] = 6,
        hidden: Annotated[int, Field(ge=1)] = 128,
        layers: Annotated[int, Field(ge=1)] = 2,
        actnorm: bool = True,
        cond_dim: Annotated[int, Field(ge=0, description="0 is unconditional")] = 0,
        condition_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if cond_dim and condition_shape is not None:
            raise ValueError(f"cond_dim={cond_dim} and a dataset condition {condition_shape}: give one, not both")
        self.latent_dim = latent_dim
        self.condition_net = None if condition_shape is None else ConditionEncoder(tuple(condition_shape), hidden)
        # The couplings read the condition network's features when there is one, else the raw vector.
        cond_dim = hidden if self.condition_net is not None else cond_dim
        self.cond_dim = cond_dim
        self.couplings = nn.ModuleList(
            _AffineCoupling(latent_dim, flip=i % 2 == 1, hidden=hidden, layers=layers, cond_dim=cond_dim)
            for i in range(depth)
        )
        self.actnorms = nn.ModuleList(ActNorm(latent_dim) for _ in range(depth)) if actnorm else None
        self.base_mean = nn.Linear(cond_dim, latent_dim) if cond_dim else None
        if self.base_mean is not None:
            nn.init.zeros_(self.base_mean.weight)
            nn.init.zeros_(self.base_mean.bias)

    def _condition(self, cond: Tensor | None, batch: int, like: Tensor) -> Tensor | None:
        """``cond`` checked and cast to ``like``'s dtype (through the condition network when there is one), or None
        for an unconditional prior. Computed once per call and shared by every coupling."""
        if not self.cond_dim:
            return None
        if self.condition_net is not None:
            return condition_features(self.condition_net, cond, like, "realnvp")
        if cond is None:
            raise ValueError(
                f"prior 'realnvp' has cond_dim={self.cond_dim} and needs cond of shape [B, {self.cond_dim}]"
            )
        if cond.shape != (batch, self.cond_dim):
            raise ValueError(f"cond has shape {list(cond.shape)}, expected [{batch}, {self.cond_dim}]")
        # Conditions may arrive as integer labels or attributes.
        return cond.to(device=like.device, dtype=like.dtype)

    def _to_base_and_logdet(self, z: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[0])
        for i, coupling in enumerate(self.couplings):
            if self.actnorms is not None:
                z, ld = self.actnorms[i](z)
                logdet = logdet + ld
            z, ld = coupling(z, cond)
            logdet = logdet + ld
        return z, logdet

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return self._to_base_and_logdet(z, self._condition(cond, z.shape[0], z))[0]

    def from_base(self, z0: Tensor, cond: Tensor | None = None) -> Tensor:
        return self._from_base(z0, self._condition(cond, z0.shape[0], z0))

    def _from_base(self, z0: Tensor, cond: Tensor | None) -> Tensor:
        z = z0
        for i in reversed(range(len(self.couplings))):
            z = self.couplings[i].inverse(z, cond)
            if self.actnorms is not None:
                z = self.actnorms[i].inverse(z)
        return z

    def _mean(self, cond: Tensor | None, like: Tensor) -> Tensor:
        """μ(cond) of z0: [B, D], or a broadcastable zero when unconditional (``cond`` is then None)."""
        return like.new_zeros(()) if self.base_mean is None or cond is None else self.base_mean(cond)

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        c = self._condition(cond, z.shape[0], z)
        z0, logdet = self._to_base_and_logdet(z, c)
        log_base = standard_normal_log_prob(z0 - self._mean(c, z0))
        return log_base + logdet

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        eps = torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)
        c = self._condition(cond, n, eps)
        return self._from_base(eps + self._mean(c, eps), c)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(RealNVPPrior)
