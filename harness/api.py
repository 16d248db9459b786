"""The base classes plugin authors subclass.

Third-party packages depend on these signatures: change them only by adding optional things.

- ``Prior``: pθ(z) over codes in Z_T, the decoder's input space.
- ``Regularizer``: R(z; q, pθ) in L_φψ = E_q[-log pψ(x|z)] + β·R.
- ``Evaluator``: turns a trained model into named metrics.
- ``Dataset``: train/test splits held as whole tensors.
- ``Architecture``: builds the encoder Eφ and decoder Dψ for a data shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from harness.bounds import checked_options

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "Architecture",
    "DataSplit",
    "Dataset",
    "DatasetUnavailable",
    "EvalData",
    "Evaluator",
    "GaussianPosterior",
    "PluginUnavailable",
    "Prior",
    "Regularizer",
    "TrainedModel",
    "as_float",
    "checked_options",
    "standard_normal_log_prob",
]


class PluginUnavailable(Exception):
    """Something a plugin needs is missing (weights, data files). Raised before training starts.

    ``message`` says what is missing and where it was looked for; ``fix`` says how to provide it or which
    option avoids it. The CLI prints them as an ``error:`` line and an indented fix line, and exits 2.
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class DatasetUnavailable(PluginUnavailable):
    """The dataset's files are not under its root and downloading was not asked for (or failed)."""


class _Plugin:
    """What every plugin class declares: its YAML name and, optionally, a pydantic model of its options."""

    name: ClassVar[str]
    #: Optional pydantic model validating the YAML options; without it the constructor's signature is used.
    Params: ClassVar[type[BaseModel] | None] = None


class Prior(_Plugin, nn.Module):
    """pθ(z) over Z_T. Constructed by the harness as ``cls(latent_dim=..., **options_from_yaml)``.

    Subclasses call ``super().__init__()`` (no arguments) and keep ``latent_dim`` themselves.
    ``log_prob`` returns one value per row; ``sample`` returns codes in Z_T on the prior's device and dtype;
    ``fit_loss`` is minimised over θ with the codes detached (the harness never weights it by β).
    A prior built on the encoder defines ``bind_encoder(encoder, data_shape)``, an optional hook the harness calls
    once the cell's networks exist (VampPrior).
    """

    #: The prior has a tractable ``log_prob`` (a GAN prior does not; KL then cannot be used).
    has_density: ClassVar[bool] = True
    #: The prior is a bijection to a base space Z_0 and implements ``to_base``/``from_base``.
    invertible: ClassVar[bool] = False
    #: The prior can be conditioned: built with ``condition_shape`` (the shape of one row's condition, passed by the
    #: harness for a conditional cell), ``cond`` [B, *condition_shape] then changes the distribution. A prior
    #: that cannot sets ``unconditional_reason`` to say why; its conditional cells are skipped with it.
    conditional: ClassVar[bool] = False
    unconditional_reason: ClassVar[str | None] = None
    #: Fitted to the trained encoder's codes once training ends (ex-post density estimation, e.g. a GMM):
    #: the harness then calls ``fit_post_hoc`` with the training split's posterior means.
    post_hoc: ClassVar[bool] = False
    #: Several cells of this prior may train as one vectorised model (``harness.model.packed``): a promise that its
    #: training-time computation vmaps over members (no Python branch on a tensor that differs between members, no
    #: random draw, no state changed in place after the first step, which runs unpacked for one-time initialisation
    #: such as ActNorm's). Undeclared, its cells train alone. Subclasses inherit it; one that breaks it sets False.
    packable: ClassVar[bool] = False

    latent_dim: int

    def __init__(self) -> None:
        super().__init__()
        # Lets parameter-free priors know the device and dtype they were moved to; not saved in checkpoints.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """log pθ(z) for ``z`` of shape [B, D]; returns [B]."""
        raise NotImplementedError(f"prior {self.name!r} has no density")

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        """``n`` draws from pθ in Z_T, shape [n, D]."""
        raise NotImplementedError

    def fit_loss(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """A scalar whose minimisation over θ fits the prior to the (detached) codes ``z``.

        The default is the negative mean log-likelihood; a prior without parameters returns a constant.
        """
        return -self.log_prob(z, cond).mean()

    def fit_parameters(self) -> list[nn.Parameter]:
        """θ: the parameters the harness's optimizer updates from ``fit_loss``.

        All parameters by default. A prior that trains some parameters itself (a GAN prior's discriminator,
        with its own optimizer inside ``fit_loss``) returns only the others.
        """
        return [p for p in self.parameters() if p.requires_grad]

    def fit_post_hoc(self, z: Tensor) -> None:
        """Fit to the trained encoder's codes ``z`` [N, D] (only called when ``post_hoc`` is True)."""

    def analytic_kl(self, posterior: GaussianPosterior, cond: Tensor | None = None) -> Tensor | None:
        """KL(q(z|x) || pθ) per row in closed form, or None when there is none (the default)."""
        return None

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """z0 = fθ(zT). Only for ``invertible`` priors."""
        raise NotImplementedError(f"prior {self.name!r} is not invertible")

    def from_base(self, z0: Tensor, cond: Tensor | None = None) -> Tensor:
        """zT = fθ⁻¹(z0). Only for ``invertible`` priors."""
        raise NotImplementedError(f"prior {self.name!r} is not invertible")


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension, [B]."""
    return -0.5 * (z.pow(2).sum(dim=-1) + z.shape[-1] * math.log(2 * math.pi))


@dataclass(frozen=True)
class GaussianPosterior:
    """q(z|x) = N(mean, diag(exp(logvar))), as produced by the encoder."""

    mean: Tensor
    logvar: Tensor

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.logvar) * eps

    def kl_to_standard_normal(self) -> Tensor:
        """KL(q(z|x) || N(0, I)) in closed form, [B]."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=-1)

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z|x) summed over dimensions, [B]."""
        return -0.5 * (
            (z - self.mean) ** 2 * torch.exp(-self.logvar) + self.logvar + math.log(2 * math.pi)
        ).sum(dim=-1)


class Regularizer(_Plugin, nn.Module):
    """R(z; q, pθ), weighted by β in the encoder/decoder loss. Constructed as ``cls(**options_from_yaml)``.

    A regularizer may own parameters and an optimizer (an adversarial discriminator): it updates them in
    ``update``; the harness never touches them. Parameters are checkpointed with its ``state_dict``; keep
    optimizer state there too through ``nn.Module.get_extra_state``/``set_extra_state``.
    """

    #: False when R is identically zero: the grid then makes one cell instead of one per β.
    uses_beta: ClassVar[bool] = True
    #: True when R needs ``prior.log_prob`` (priors without a density are skipped with a reason).
    requires_density: ClassVar[bool] = False
    #: Several cells with this regularizer may train as one vectorised model (``harness.model.packed``): a promise
    #: that ``penalty`` vmaps over members (no Python branch on a tensor that differs between members, no random
    #: draw) and that ``update`` trains nothing. Undeclared, its cells train alone. Subclasses inherit it.
    packable: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()

    @classmethod
    def incompatibility(cls, prior_cls: type[Prior]) -> str | None:
        """Why this regularizer cannot be used with ``prior_cls``, or None when it can."""
        if cls.requires_density and not prior_cls.has_density:
            return f"prior {prior_cls.name!r} has no density; regularizer {cls.name!r} needs log_prob"
        return None

    def penalty(self, z: Tensor, posterior: GaussianPosterior, prior: Prior, cond: Tensor | None = None) -> Tensor:
        """R per row, [B]. ``z`` is the reparameterised sample from ``posterior`` (gradients flow to φ)."""
        raise NotImplementedError

    def update(self, z: Tensor, prior: Prior, cond: Tensor | None = None) -> Mapping[str, float]:
        """Train the regularizer's own parameters on detached codes ``z``; returns losses to log."""
        return {}


@dataclass(frozen=True)
class DataSplit:
    """One split held whole. ``x`` is uint8 [N, C, H, W] for images (0..255) or float32 [N, D] for vectors."""

    x: Tensor
    labels: Tensor | None = None
    #: "class": labels are int64 [N]; "attributes": labels are {0,1} int64 [N, A].
    label_kind: Literal["class", "attributes"] | None = None
    label_names: tuple[str, ...] | None = None
    #: What a conditional model is conditioned on, one row per example: uint8 [N, C, H, W] images or float32
    #: [N, K] vectors (a one-hot class, say). Set by a dataset whose data come in pairs (``paired-images``) or by
    #: the harness from a benchmark's ``condition:`` (``harness.conditions``); None for unconditional data.
    cond: Tensor | None = None

    @property
    def is_image(self) -> bool:
        return self.x.dtype == torch.uint8

    def __len__(self) -> int:
        return self.x.shape[0]

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor | None]]:
        """(x, cond) in order, ``batch_size`` rows at a time; cond is None for unconditional data."""
        for start in range(0, len(self), batch_size):
            end = start + batch_size
            yield self.x[start:end], None if self.cond is None else self.cond[start:end]

    def to(self, device: torch.device | str) -> DataSplit:
        labels = None if self.labels is None else self.labels.to(device)
        cond = None if self.cond is None else self.cond.to(device)
        return DataSplit(self.x.to(device), labels, self.label_kind, self.label_names, cond)


def as_float(x: Tensor) -> Tensor:
    """A batch as the model sees it: images scaled to [0, 1], vectors unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class Dataset(_Plugin):
    """A dataset with a train and a test split. Constructed as ``cls(**options_from_yaml)``.

    ``condition`` is not one of its options: the harness takes it out and derives ``DataSplit.cond`` itself
    (``harness.conditions``).
    """

    #: Its splits carry a condition of their own (``DataSplit.cond``, e.g. the A half of A|B pairs).
    provides_condition: ClassVar[bool] = False

    def check_available(self) -> None:
        """Raise ``DatasetUnavailable`` (what is missing, where, how to get it) when the data cannot load.

        Called for every dataset of a benchmark before any cell trains; may download when asked to.
        """

    def load(self, split: Literal["train", "test"]) -> DataSplit:
        raise NotImplementedError


@dataclass(frozen=True)
class EvalData:
    """What an evaluator gets besides the model: the dataset's splits (on the model's device) and a cache."""

    dataset: str
    dataset_options: Mapping[str, Any]
    train: DataSplit
    test: DataSplit
    #: A folder (pathlib.Path) shared across cells for things worth computing once (reference statistics).
    cache_dir: Any


class Evaluator(_Plugin):
    """Turns a trained model into metrics. Constructed as ``cls(**options_from_yaml)``.

    ``metrics`` declares what ``evaluate`` may return: key suffix -> "min" or "max" (the better direction).
    The empty key names the metric after the evaluator itself (``fid``); other keys become
    ``<evaluator>.<key>`` (``reconstruction.mse``). The harness seeds torch before calling ``evaluate``
    and runs it under ``torch.inference_mode``. How a metric was measured (feature extractor, sample count,
    reference split) goes in ``<name>-details.json`` in ``model.workdir``: the leaderboard writes it beside each
    of the evaluator's rows in results.csv.
    """

    metrics: ClassVar[Mapping[str, Literal["min", "max"]]] = {}

    def check_available(self) -> None:
        """Raise ``PluginUnavailable`` when weights or files this evaluator needs are missing."""

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        raise NotImplementedError


class Architecture(_Plugin):
    """Builds Eφ and Dψ. Constructed as ``cls(**options_from_yaml)`` from ``model.architecture_options``.

    The encoder maps a float batch of the data shape to [B, 2·latent_dim] (mean, log-variance); the decoder
    maps [B, latent_dim] to the raw output of the data shape that the likelihood turns into a mean.

    A ``conditional`` architecture is built with ``condition_shape`` (one row's condition: (C, H, W) images of the
    data's height and width, or (K,) vectors) when the cell's data carry a condition y. Its encoder is then
    called as ``encoder(x, y)`` (q(z | x, y)) and its decoder as ``decoder(z, y)`` (p(x | y, z)), y as floats
    (images in [0, 1]). Without a condition both are called with one argument, as before.
    """

    #: Accepts ``condition_shape`` in ``build`` and the condition as the networks' second argument.
    conditional: ClassVar[bool] = False
    #: Several cells of this architecture may train as one vectorised model (``harness.model.packed``): a promise
    #: that its networks vmap over members (no Python branch on a tensor that differs between members, no random
    #: draw, no batch statistics updated in place). Undeclared, its cells train alone. Subclasses inherit it.
    packable: ClassVar[bool] = False

    def incompatibility(self, data_shape: tuple[int, ...]) -> str | None:
        """Why this architecture cannot model data of ``data_shape`` (without batch), or None."""
        return None

    def build(
        self, data_shape: tuple[int, ...], latent_dim: int, condition_shape: tuple[int, ...] | None = None
    ) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError


class TrainedModel:
    """The view evaluators receive: a trained encoder, decoder and prior, in eval mode.

    A conditional model (``conditional``) holds the test split's conditions: ``sample(n)`` without ``cond``
    generates for the first ``n`` of them, in order and cycling, so an evaluator that only samples (FID, coverage)
    measures samples conditioned on the test inputs; ``encode`` and ``decode`` need the condition passed.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: Prior,
        output_mean: Any,
        latent_dim: int,
        data_shape: tuple[int, ...],
        device: torch.device,
        seed: int,
        workdir: Any,
        conditions: Tensor | None = None,
    ) -> None:
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self._output_mean = output_mean
        self.latent_dim = latent_dim
        self.data_shape = data_shape
        self.device = device
        self.seed = seed
        #: A folder (pathlib.Path) of the cell where an evaluator may write files.
        self.workdir = workdir
        #: The test split's conditions as stored (uint8 images or float vectors), or None when unconditional.
        self.conditions = conditions

    @property
    def conditional(self) -> bool:
        return self.conditions is not None

    def _cond(self, cond: Tensor | None, what: str) -> Tensor | None:
        """A raw condition batch as the networks take it; a conditional model refuses to go without one."""
        if cond is None:
            if self.conditional:
                raise ValueError(f"this model is conditional: {what} needs cond (one condition per row)")
            return None
        return as_float(cond.to(self.device))

    def test_conditions(self, n: int, start: int = 0, among: int | None = None) -> Tensor:
        """Conditions ``start .. start + n`` of the test split, cycling through its first ``among`` (all by
        default)."""
        if self.conditions is None:
            raise ValueError("this model is unconditional: it has no test conditions")
        count = self.conditions.shape[0] if among is None else min(among, self.conditions.shape[0])
        index = torch.arange(start, start + n, device=self.conditions.device) % count
        return self.conditions[index]

    def encode(self, x: Tensor, cond: Tensor | None = None) -> GaussianPosterior:
        """q(z|x) (q(z|x, y) for a conditional model) for a raw batch (uint8 images or float vectors)."""
        x = as_float(x.to(self.device))
        y = self._cond(cond, "encode")
        h = self.encoder(x) if y is None else self.encoder(x, y)
        mean, logvar = h.chunk(2, dim=-1)
        return GaussianPosterior(mean, logvar)

    def decode(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """The decoder mean for codes ``z`` (and conditions); images are clipped to [0, 1]."""
        return self._decode(z, self._cond(cond, "decode"))

    def _decode(self, z: Tensor, y: Tensor | None) -> Tensor:
        """``decode`` for conditions already as the networks take them."""
        z = z.to(self.device)
        out = self._output_mean(self.decoder(z) if y is None else self.decoder(z, y))
        return out.clamp(0.0, 1.0) if len(self.data_shape) > 1 else out

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        """Decoded samples from the trained prior; a conditional model without ``cond`` samples for the test
        conditions in order (see the class docstring)."""
        if cond is None and self.conditional:
            cond = self.test_conditions(n)
        y = self._cond(cond, "sample")
        return self._decode(self.prior.sample(n, y), y)
