"""The training loop of one cell: the two objectives of the paper (§3; the README's "Using it") with exact gradient routing.

    L_φψ = E_q[-log pψ(x|z)] + β·R(z; q, pθ)     backpropagated into φ, ψ only
    L_θ  = prior.fit_loss(z.detach())            backpropagated into θ only (never weighted by β)

Both use Adam; a checkpoint after each epoch lets an interrupted cell resume where it stopped, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from harness.api import DataSplit, GaussianPosterior, Prior, Regularizer, TrainedModel, as_float
from harness.grid import Cell
from harness.model.checkpoint import CHECKPOINT, resume, save_checkpoint
from harness.model.likelihoods import Likelihood, build_likelihood
from harness.model.perceptual import PerceptualLoss, build_perceptual
from harness.registry import Registry
from harness.progress import bars_enabled
from harness.seeds import derived_seed



class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or inf; the message names the epoch, step and term."""


@dataclass
class Model:
    """Everything a cell trains, with its two optimizers."""

    encoder: nn.Module
    decoder: nn.Module
    likelihood: Likelihood
    prior: Prior
    regularizer: Regularizer
    opt_model: torch.optim.Optimizer = field(init=False)
    opt_prior: torch.optim.Optimizer | None = field(init=False)
    lr: float = 1e-3
    prior_lr: float = 1e-3
    #: Steps of θ per step of φ and ψ (``train.prior_steps``), each on the same detached codes.
    prior_steps: int = 1
    #: Run the encoder and decoder under bf16 autocast (CUDA only); every loss term stays float32.
    autocast: bool = False
    #: The VGG19 perceptual term added to the reconstruction loss (``model.perceptual``). Frozen and not one of
    #: ``modules()``: checkpoints leave it out and it is reloaded from its weights file.
    perceptual: PerceptualLoss | None = None
    #: Learning rate of a learned log γ (``model.gamma_lr``), its own Adam parameter group; None: ``lr``.
    gamma_lr: float | None = None

    def __post_init__(self) -> None:
        params = self.model_params()
        log_gamma = getattr(self.likelihood, "log_gamma", None)
        if self.gamma_lr is not None and isinstance(log_gamma, nn.Parameter) and log_gamma.requires_grad:
            rest = [p for p in params if p is not log_gamma]
            groups = [{"params": rest}, {"params": [log_gamma], "lr": self.gamma_lr}]
            self.opt_model = torch.optim.Adam(groups, lr=self.lr)
        else:
            self.opt_model = torch.optim.Adam(params, lr=self.lr)
        prior_params = self.prior_params()
        self.opt_prior = torch.optim.Adam(prior_params, lr=self.prior_lr) if prior_params else None

    def model_params(self) -> list[nn.Parameter]:
        """φ and ψ: encoder, decoder and likelihood parameters."""
        mods = (self.encoder, self.decoder, self.likelihood)
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def prior_params(self) -> list[nn.Parameter]:
        """θ, as the prior declares it."""
        return list(self.prior.fit_parameters())

    def modules(self) -> dict[str, nn.Module]:
        return {
            "encoder": self.encoder,
            "decoder": self.decoder,
            "likelihood": self.likelihood,
            "prior": self.prior,
            "regularizer": self.regularizer,
        }

    def train(self, mode: bool = True) -> None:
        for module in self.modules().values():
            module.train(mode)

    def view(
        self, cell: Cell, data_shape: tuple[int, ...], device: torch.device, workdir: Path, conditions: Tensor | None = None
    ) -> TrainedModel:
        """What evaluators see; ``conditions``: the test split's, for a conditional model."""
        self.train(False)
        return TrainedModel(
            self.encoder,
            self.decoder,
            self.prior,
            self.likelihood.mean,
            int(cell.model["latent_dim"]),
            data_shape,
            device,
            cell.seed,
            workdir,
            conditions,
        )


def build_model(
    cell: Cell,
    registry: Registry,
    data_shape: tuple[int, ...],
    device: torch.device,
    condition_shape: tuple[int, ...] | None = None,
) -> Model:
    """Construct every module of a cell from its resolved config (seed torch first for a fixed init).

    ``condition_shape`` (one row's condition, for a conditional cell) goes to the architecture and the prior;
    unconditional cells build exactly as before conditions existed.
    """
    latent_dim = int(cell.model["latent_dim"])
    arch = registry.get("architecture", cell.model["architecture"])(**cell.model["architecture_options"])
    conditioned = {} if condition_shape is None else {"condition_shape": tuple(condition_shape)}
    encoder, decoder = arch.build(data_shape, latent_dim, **conditioned)
    prior = registry.get("prior", cell.prior)(latent_dim=latent_dim, **cell.prior_options, **conditioned)
    # An optional hook: a prior built on the encoder (VampPrior's mixture of posteriors) is handed it here.
    bind_encoder = getattr(prior, "bind_encoder", None)
    if callable(bind_encoder):
        bind_encoder(encoder, tuple(data_shape))
    regularizer = registry.get("regularizer", cell.regularizer)(**cell.regularizer_options)
    # An optional hook, not a constructor argument: a regularizer that wants the data's shape (the adversarial
    # one, to put its penalty in the units of the summed reconstruction) defines it; others never see it.
    bind = getattr(regularizer, "bind_data_shape", None)
    if callable(bind):
        bind(tuple(data_shape))
    likelihood = build_likelihood(cell.model["likelihood"], cell.model["gamma"])
    # Likewise for the likelihood, so a regularizer can state β in the units of the squared error (1/(2γ)).
    bind_likelihood = getattr(regularizer, "bind_likelihood", None)
    if callable(bind_likelihood):
        bind_likelihood(likelihood)
    perceptual = build_perceptual(cell.model["perceptual"], data_shape) if cell.model.get("perceptual") else None
    for module in (encoder, decoder, prior, regularizer, likelihood, perceptual):
        if module is not None:
            module.to(device)
    if cell.train.get("compile"):
        # Compiled wrappers share the parameters (and state_dict keys, via _orig_mod) of the originals.
        encoder, decoder = torch.compile(encoder), torch.compile(decoder)
    lr = float(cell.train["lr"])
    prior_lr = float(cell.train.get("prior_lr") or lr)
    autocast = bool(cell.train.get("autocast", True)) and device.type == "cuda"
    gamma_lr = cell.model.get("gamma_lr")
    return Model(
        encoder, decoder, likelihood, prior, regularizer, lr=lr, prior_lr=prior_lr, autocast=autocast,
        perceptual=perceptual, gamma_lr=None if gamma_lr is None else float(gamma_lr),
        prior_steps=int(cell.train.get("prior_steps", 1)),
    )  # fmt: skip


def training_step(model: Model, x: Tensor, beta: float, cond: Tensor | None = None) -> Tensor:
    """One update of φ, ψ (from L_φψ) and ``prior_steps`` of θ (from L_θ); returns the detached loss terms
    [rec, reg, fit], fit from θ's first step. ``cond``: the batch's conditions as floats (conditional cells)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=model.autocast):
        h = model.encoder(x) if cond is None else model.encoder(x, cond)
    # The networks may run in bf16; the posterior, the likelihood, the KL and the prior (a flow's log-det
    # included) are computed in float32, where their sums of many small terms stay accurate.
    mean, logvar = h.float().chunk(2, dim=-1)
    posterior = GaussianPosterior(mean, logvar)
    z = posterior.rsample()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=model.autocast):
        raw = (model.decoder(z) if cond is None else model.decoder(z, cond)).float()
    rec_rows = model.likelihood.nll(x, raw)
    if model.perceptual is not None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=model.autocast):
            rec_rows = rec_rows + model.perceptual(x, model.likelihood.mean(raw))
    rec = rec_rows.mean()
    # β = 0 (or a regularizer that ignores β) contributes nothing: skip computing it.
    reg = model.regularizer.penalty(z, posterior, model.prior, cond).mean() if beta else rec.new_zeros(())
    loss_model = rec + beta * reg
    codes = z.detach()
    first_fit = fit = model.prior.fit_loss(codes, cond)

    model.opt_model.zero_grad(set_to_none=True)
    # `inputs=` routes gradients: L_φψ reaches pθ through log pθ(z), but θ must not learn from it.
    loss_model.backward(inputs=model.model_params())
    model.opt_model.step()
    # θ's steps see only the detached codes, so taking them after φ, ψ's step changes no number.
    if model.opt_prior is not None:
        for step in range(model.prior_steps):
            if step:
                fit = model.prior.fit_loss(codes, cond)
            model.opt_prior.zero_grad(set_to_none=True)
            fit.backward(inputs=model.prior_params())
            model.opt_prior.step()
    model.regularizer.update(codes, model.prior, cond)
    return torch.stack([rec.detach(), reg.detach(), first_fit.detach()])


TERMS = ("reconstruction", "regularizer", "prior_fit")


#: Steps between finiteness checks. Each check waits for the device; on a GPU a wait every step would drain the
#: queue of kernels the host has launched ahead, so the loop checks a window of steps at once.
CHECK_EVERY = 32


def _check_finite(terms: Tensor, epoch: int, first_step: int = 0) -> None:
    """Raise NonFiniteLoss naming the first step (counted from ``first_step``) of ``terms`` [steps, 3] with a NaN or
    inf, and which terms it was in."""
    finite = torch.isfinite(terms).all(dim=1)
    if bool(finite.all()):
        return
    row = int((~finite).nonzero()[0])
    bad = [f"{name}={value:g}" for name, value in zip(TERMS, terms[row].tolist()) if not math.isfinite(value)]
    raise NonFiniteLoss(f"non-finite loss at epoch {epoch + 1} step {first_step + row + 1}: {', '.join(bad)}")


def encode_means(model: Model, data: DataSplit, batch_size: int = 1024) -> Tensor:
    """Posterior means E[q(z|x)] (E[q(z|x, y)] for conditional data) of a whole split, batched."""
    with torch.inference_mode():
        parts = [
            (model.encoder(as_float(x)) if y is None else model.encoder(as_float(x), as_float(y))).chunk(2, dim=-1)[0]
            for x, y in data.batches(batch_size)
        ]
    return torch.cat(parts)


def fit_post_hoc(model: Model, data: DataSplit, seed: int) -> None:
    """Fit an ex-post prior (``Prior.post_hoc``) to the trained encoder's codes of the training split."""
    if not model.prior.post_hoc:
        return
    torch.manual_seed(seed)
    model.train(False)
    model.prior.fit_post_hoc(encode_means(model, data).clone())


def batches(n: int, batch_size: int, seed: int, epoch: int, device: torch.device) -> Iterator[Tensor]:
    """Index batches of one epoch: a permutation fixed by (seed, epoch), so a resumed run sees the same order."""
    generator = torch.Generator().manual_seed(derived_seed(seed, epoch))
    yield from torch.randperm(n, generator=generator).to(device).split(batch_size)


def _train_epoch(
    model: Model, data: DataSplit, beta: float, seed: int, epoch: int, batch_size: int, on_step: Callable[[int], Any]
) -> Tensor:
    """One epoch of training steps; returns each loss term summed over the steps, in step order.

    Raises NonFiniteLoss naming the first step with a NaN or inf term, checked every CHECK_EVERY steps.
    """
    n = len(data)
    terms = torch.zeros((n + batch_size - 1) // batch_size, len(TERMS), device=data.x.device)
    totals = torch.zeros(len(TERMS), device=data.x.device)
    checked = 0  # steps [0, checked) are known finite
    try:
        for step, idx in enumerate(batches(n, batch_size, seed, epoch, data.x.device)):
            cond = None if data.cond is None else as_float(data.cond[idx])
            terms[step] = training_step(model, as_float(data.x[idx]), beta, cond)
            totals += terms[step]
            on_step(1)
            if step + 1 - checked >= CHECK_EVERY:
                _check_finite(terms[checked : step + 1], epoch, checked)
                checked = step + 1
    except NonFiniteLoss:
        raise
    except Exception:
        # A plugin that chokes on NaN parameters (a torch.distributions argument check, say) raises after the
        # step that made them; that step's non-finite loss is the error worth reporting.
        _check_finite(terms[checked:], epoch, checked)
        raise
    _check_finite(terms[checked:], epoch, checked)
    return totals


def train(
    cell: Cell,
    model: Model,
    data: DataSplit,
    workdir: Path,
    progress: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    notes: list[str] | None = None,
    announce_resume: bool = True,
) -> list[dict[str, float]]:
    """Train ``model`` on ``data`` (already on the model's device); resume from ``workdir`` when possible.

    Returns the per-epoch mean of each loss term. ``on_epoch`` is called after each epoch's checkpoint.
    ``notes`` receives a line for the cell's result when its checkpoint had to be discarded.
    ``announce_resume``: say on stderr where it resumes from a checkpoint.
    """
    epochs, batch_size = int(cell.train["epochs"]), int(cell.train["batch_size"])
    beta = float(cell.beta or 0.0)
    ckpt_path = workdir / CHECKPOINT
    notes = notes if notes is not None else []
    start, history = resume(cell, model, ckpt_path, data.x.device, notes, announce=announce_resume)
    model.train(True)
    n = len(data)
    steps = (n + batch_size - 1) // batch_size
    bar = tqdm(
        total=epochs * steps, initial=start * steps, desc=cell.label, unit="step", leave=False,
        disable=not bars_enabled(progress),
    )
    with bar:
        for epoch in range(start, epochs):
            totals = _train_epoch(model, data, beta, cell.seed, epoch, batch_size, bar.update)
            means = dict(zip(TERMS, (totals / steps).tolist()))
            history.append({"epoch": epoch + 1, **means})
            bar.set_postfix(rec=f"{means['reconstruction']:.4g}", reg=f"{means['regularizer']:.4g}")
            save_checkpoint(model, epoch, history, ckpt_path)
            if on_epoch is not None:
                on_epoch(epoch, means)
    model.train(False)
    return history
