"""Several cells that differ only in seed and β, trained as one vectorised model (issue 17).

A pack of K members runs one ``torch.func.vmap`` over the members' stacked parameters instead of K small models
one after another. Each member k is still exactly its cell trained alone (to float rounding):

- the same data order: its batches are ``batches(n, batch_size, seed_k, epoch, device)``, as unpacked;
- the same ε: drawn from a generator of its own whose state is where the global RNG stands when its unpacked
  ``train`` starts (after ``torch.manual_seed(seed_k)`` and ``build_model``, as ``run_cell`` does), with the
  shape, dtype and device ``GaussianPosterior.rsample`` uses;
- the same optimiser: one Adam over tensors stacked along a leading member axis is K independent Adams, because
  Adam is elementwise and the members share lr, betas and eps (their configs are identical);
- the same objectives, summed over members, which share no parameter, so each gets exactly its own gradient:

      L_φψ = Σ_k rec_k + β_k·reg_k     backpropagated into the stacked φ, ψ only
      L_θ  = Σ_k fit_k                 backpropagated into the stacked θ only

After every epoch each member's parameters, buffers, Adam state and RNG state go back into its own ``Model`` and
its own checkpoint (``save_checkpoint``), so an interrupted pack resumes, packed or any member alone, exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from harness.api import DataSplit, GaussianPosterior, Regularizer, as_float
from harness.conditions import CONDITION_KEY
from harness.grid import Cell
from harness.model.checkpoint import CHECKPOINT, resume, save_checkpoint
from harness.model.likelihoods import BernoulliLikelihood, GaussianLikelihood
from harness.model.train import (
    CHECK_EVERY, TERMS, Model, NonFiniteLoss, _check_finite, batches, build_model, training_step,
)  # fmt: skip
from harness.progress import bars_enabled
from harness.registry import Registry, load_registry

#: ``on_epoch(member, epoch, means)``: called after that epoch's checkpoints of every member are written.
OnMemberEpoch = Callable[[int, int, dict[str, float]], None]

#: Cell fields that may differ between members: what packing is for, and what only names a cell.
_FREE_FIELDS = ("seed", "beta", "benchmark", "skip_reason", "prior_options_given", "variant")


class PackedNonFiniteLoss(NonFiniteLoss):
    """One member's loss became NaN or inf; ``member`` is its index, the message names its cell.

    The other members are unharmed (they share nothing) and their checkpoints hold the last finished epoch: a
    caller can record this cell as failed and resume the others, packed or not.
    """

    def __init__(self, message: str, member: int) -> None:
        super().__init__(message)
        self.member = member


@dataclass(frozen=True)
class RngState:
    """The global RNG states (CPU and every CUDA device) at one moment: what ``save_checkpoint`` records."""

    cpu: Tensor
    cuda: tuple[Tensor, ...] = ()

    @classmethod
    def capture(cls) -> RngState:
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return cls(torch.get_rng_state(), tuple(torch.cuda.get_rng_state_all()) if cuda else ())

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda:
            torch.cuda.set_rng_state_all(list(self.cuda))


def build_members(
    cells: Sequence[Cell],
    registry: Registry,
    data_shape: tuple[int, ...],
    device: torch.device,
) -> tuple[list[Model], list[RngState]]:
    """Each cell's model built as ``run_cell`` builds it (``torch.manual_seed(seed)``, then ``build_model``), and
    the RNG state right after: where member k's unpacked ``train`` would start drawing ε."""
    models, states = [], []
    for cell in cells:
        torch.manual_seed(cell.seed)
        models.append(build_model(cell, registry, data_shape, device))
        states.append(RngState.capture())
    return models, states


# --- Which cells may pack -----------------------------------------------------------------------------------------


def pack_reason(
    cells: Sequence[Cell],
    models: Sequence[Model],
    registry: Registry | None = None,
    workdirs: Sequence[Path] | None = None,
) -> str | None:
    """None when ``cells`` (with their built ``models``) can train as one pack, else one line saying why not.

    ``registry`` finds the architecture's class (loaded when not given); ``workdirs``, when given, are checked for
    checkpoints at different epochs, which a pack cannot resume together.
    """
    if len(cells) != len(models):
        raise ValueError(f"{len(cells)} cells but {len(models)} models")
    if not cells:
        return "no cells to pack"
    if len({c.cell_id for c in cells}) < len(cells):
        return "the same cell appears twice in the pack"
    first = pack_key(cells[0])
    for cell in cells[1:]:
        difference = _first_difference(first, pack_key(cell))
        if difference is not None:
            return f"{cells[0].label} and {cell.label} differ in {difference}"
    for reason in (config_reason(cells[0]), _plugin_reason(cells[0], models[0], registry or load_registry())):
        if reason is not None:
            return reason
    if workdirs is not None:
        return _resume_reason(cells, workdirs)
    return None


def pack_key(cell: Cell) -> dict[str, Any]:
    """What must agree between members: the cell's resolved config without the fields allowed to differ (cells
    with equal keys may pack; a runner groups by it)."""
    data = {**cell.identity(), "variant": cell.variant}
    for name in _FREE_FIELDS:
        data.pop(name, None)
    return data


def _first_difference(a: Any, b: Any, at: str = "") -> str | None:
    """The key path of the first value that differs between two configs, with both values; None when equal."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            where = f"{at}.{key}" if at else str(key)
            if key not in a or key not in b:
                return f"{where} (set in one only)"
            found = _first_difference(a[key], b[key], where)
            if found is not None:
                return found
        return None
    return None if a == b else f"{at or 'config'} ({a!r} vs {b!r})"


def config_reason(cell: Cell) -> str | None:
    """Training features the packed step does not implement."""
    gamma = cell.model.get("gamma")
    if cell.model.get("likelihood") not in ("gaussian", "bernoulli"):
        return f"likelihood {cell.model.get('likelihood')!r} is not one a pack implements (gaussian, bernoulli)"
    if cell.model.get("likelihood") == "gaussian" and (gamma is None or isinstance(gamma, str)):
        return f"model.gamma is {gamma!r}: a learned or optimal γ does not pack (a fixed number does)"
    if cell.model.get("perceptual"):
        return "model.perceptual is set: the perceptual term does not pack"
    if CONDITION_KEY in cell.dataset_options:
        return "the cells are conditional (datasets.condition): conditional cells do not pack"
    if cell.train.get("compile"):
        return "train.compile is set: compiled networks do not pack"
    if int(cell.train.get("prior_steps", 1)) != 1:
        return f"train.prior_steps is {cell.train['prior_steps']}: a pack takes one step of θ per step"
    return None


def _plugin_reason(cell: Cell, model: Model, registry: Registry) -> str | None:
    """Every plugin class must declare ``packable``; and what the built model says beyond its config."""
    classes = (
        ("architecture", registry.get("architecture", cell.model["architecture"])),
        ("prior", type(model.prior)),
        ("regularizer", type(model.regularizer)),
    )
    for kind, cls in classes:
        if not getattr(cls, "packable", False):
            return f"{kind} {getattr(cls, 'name', cls.__name__)!r} does not declare packable = True"
    if type(model.regularizer).update is not Regularizer.update:
        return f"regularizer {model.regularizer.name!r} trains its own state in update(): it does not pack"
    likelihood = model.likelihood
    fixed = isinstance(likelihood, GaussianLikelihood) and likelihood.fixed_gamma is not None
    if not (fixed or isinstance(likelihood, BernoulliLikelihood)):
        return f"likelihood {type(likelihood).__name__} has learned state: it does not pack"
    if model.perceptual is not None or model.prior_steps != 1:
        return "the model has a perceptual term or several prior steps: it does not pack"
    return None


def _resume_reason(cells: Sequence[Cell], workdirs: Sequence[Path]) -> str | None:
    """A pack trains every member through the same epochs: their checkpoints must agree on where to start."""
    starts = [_checkpoint_start(Path(w) / CHECKPOINT) for w in workdirs]
    if len(set(starts)) > 1:
        listed = ", ".join(f"{c.label}: epoch {s}" for c, s in zip(cells, starts))
        return f"the members' checkpoints resume at different epochs ({listed})"
    return None


def _checkpoint_start(path: Path) -> int:
    """The epoch a checkpoint resumes at (0 without one, or with one that ``resume`` would set aside)."""
    if not path.exists():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) + 1
    except Exception:  # noqa: BLE001 - unreadable: resume() sets it aside and the member starts from scratch
        return 0


# --- One member as a function of its tensors ----------------------------------------------------------------------


class _Member(nn.Module):
    """One member's modules; ``forward`` is ``training_step``'s forward pass with ε given instead of drawn."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.decoder = model.decoder
        self.likelihood = model.likelihood
        self.prior = model.prior
        self.regularizer = model.regularizer
        self.autocast = model.autocast

    def forward(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(rec, reg, fit) for one member's batch ``x`` and noise ``eps`` [B, latent_dim]; reg is always computed
        (the caller weights it by β, 0 included), fit from the detached codes."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            h = self.encoder(x)
        mean, logvar = h.float().chunk(2, dim=-1)
        posterior = GaussianPosterior(mean, logvar)
        z = posterior.mean + torch.exp(0.5 * posterior.logvar) * eps  # GaussianPosterior.rsample's formula
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            raw = self.decoder(z).float()
        rec = self.likelihood.nll(x, raw).mean()
        reg = self.regularizer.penalty(z, posterior, self.prior, None).mean()
        fit = self.prior.fit_loss(z.detach(), None)
        return rec, reg, fit


def _names(member: _Member, params: Sequence[Tensor]) -> list[str]:
    """The names, in ``member``, of ``params`` (an optimiser's list), in their order."""
    by_id = {id(p): name for name, p in member.named_parameters()}
    return [by_id[id(p)] for p in params]


def _group_settings(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """An optimiser's hyperparameters (lr, betas, eps, ...); a pack supports one parameter group."""
    if len(opt.param_groups) != 1:
        raise ValueError(f"{len(opt.param_groups)} parameter groups: a pack supports one")
    return {k: v for k, v in opt.param_groups[0].items() if k != "params"}


class _Pack:
    """The K members' tensors stacked along dim 0, their two Adams, and the vmapped forward.

    Members' ``Model`` objects stay the record: ``load`` stacks from them, ``store`` writes back into them.
    """

    def __init__(self, models: Sequence[Model]) -> None:
        self.models = list(models)
        self.members = [_Member(m) for m in self.models]
        # functional_call swaps every tensor in; the base only provides the code, so it holds none of its own.
        self.base = copy.deepcopy(self.members[0]).to("meta")
        self.model_names = _names(self.members[0], self.models[0].opt_model.param_groups[0]["params"])
        prior_opt = self.models[0].opt_prior
        self.prior_names = [] if prior_opt is None else _names(self.members[0], prior_opt.param_groups[0]["params"])
        for member, model in zip(self.members[1:], self.models[1:]):
            if _names(member, model.opt_model.param_groups[0]["params"]) != self.model_names:
                raise ValueError("the members' optimisers hold different parameters")
        self.load()

    def load(self) -> None:
        """Stack parameters, buffers and Adam states from the members' models (at the start, after a resume and
        after the members' first steps taken alone)."""
        trainable = set(self.model_names) | set(self.prior_names)
        named = [dict(m.named_parameters()) for m in self.members]
        self.params = {
            name: torch.stack([n[name].detach() for n in named]).requires_grad_(name in trainable)
            for name in named[0]
        }
        self.buffers, self.shared = split_buffers([dict(m.named_buffers()) for m in self.members])
        self.opt_model = self._stacked_adam([m.opt_model for m in self.models], self.model_names)
        prior_opts = [m.opt_prior for m in self.models]
        self.opt_prior = (
            None if prior_opts[0] is None else self._stacked_adam(prior_opts, self.prior_names)
        )
        self.model_params = [self.params[n] for n in self.model_names]
        self.prior_params = [self.params[n] for n in self.prior_names]
        # randomness="error": a plugin that draws inside the step would draw one stream for all members.
        self._forward = vmap(self._one, in_dims=(0, 0, 0, 0), randomness="error")

    def _stacked_adam(self, opts: Sequence[torch.optim.Optimizer], names: list[str]) -> torch.optim.Optimizer:
        """One optimiser of the members' class and settings over the stacked tensors, with their states stacked."""
        settings = _group_settings(opts[0])
        if any(_group_settings(o) != settings for o in opts[1:]):
            raise ValueError("the members' optimisers have different settings")
        stacked = [self.params[n] for n in names]
        packed = type(opts[0])([{"params": stacked, **settings}])
        for i, target in enumerate(stacked):
            states = [o.state.get(o.param_groups[0]["params"][i], {}) for o in opts]
            if not any(states):
                continue
            if not all(states):
                raise ValueError(f"{names[i]}: some members have optimiser state and others none")
            packed.state[target] = {key: _stack_state([s[key] for s in states], target) for key in states[0]}
        return packed

    def _one(
        self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, eps: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        return functional_call(self.base, {**params, **buffers, **self.shared}, (x, eps))

    def forward(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(rec, reg, fit), each [K], for batches ``x`` [K, B, ...] and noise ``eps`` [K, B, latent_dim]."""
        return self._forward(self.params, self.buffers, x, eps)

    def store(self) -> None:
        """Write each member's slice of the parameters, buffers and Adam states back into its ``Model``."""
        with torch.no_grad():
            for k, member in enumerate(self.members):
                for name, p in member.named_parameters():
                    p.copy_(self.params[name][k])
                for name, b in member.named_buffers():
                    b.copy_(self.buffers[name][k] if name in self.buffers else self.shared[name])
        for k, model in enumerate(self.models):
            _unstack_into(self.opt_model, model.opt_model, k)
            if self.opt_prior is not None and model.opt_prior is not None:
                _unstack_into(self.opt_prior, model.opt_prior, k)


def split_buffers(buffers: Sequence[Mapping[str, Tensor]]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The members' buffers as (stacked along a member axis, shared): buffers equal in every member (ActNorm's
    ``initialized``, the GMM's ``fitted``) are passed once, unbatched, so a plugin's Python branch on one
    (``bool(self.initialized)``) works under vmap."""
    stacked: dict[str, Tensor] = {}
    shared: dict[str, Tensor] = {}
    for name, first in buffers[0].items():
        if all(torch.equal(first, b[name]) for b in buffers[1:]):
            shared[name] = first.detach().clone()
        else:
            stacked[name] = torch.stack([b[name].detach() for b in buffers])
    return stacked, shared


def _stack_state(values: list[Any], target: Tensor) -> Any:
    """Members' values of one optimiser state entry: per-element tensors (Adam's moments) stacked; the rest (its
    step count, the same for every member that trained the same epochs) taken once."""
    first = values[0]
    if isinstance(first, Tensor) and first.shape == target.shape[1:] and first.dim() > 0:
        return torch.stack([v.to(target.device) for v in values])
    for v in values[1:]:
        same = torch.equal(v, first) if isinstance(first, Tensor) else v == first
        if not same:
            raise ValueError(f"optimiser state differs between members ({first!r} vs {v!r})")
    return first.clone() if isinstance(first, Tensor) else first


def _unstack_into(packed: torch.optim.Optimizer, opt: torch.optim.Optimizer, k: int) -> None:
    """Member ``k``'s slice of ``packed``'s state, as ``opt``'s state for its own parameters."""
    for stacked, own in zip(packed.param_groups[0]["params"], opt.param_groups[0]["params"]):
        state = packed.state.get(stacked)
        if not state:
            continue
        opt.state[own] = {
            key: (v[k].clone() if isinstance(v, Tensor) and v.dim() == stacked.dim() and v.shape == stacked.shape
                  else (v.clone() if isinstance(v, Tensor) else v))
            for key, v in state.items()
        }  # fmt: skip


# --- Each member's ε ----------------------------------------------------------------------------------------------


class _MemberRng:
    """A member's RNG: a generator on the training device carrying on the stream its unpacked ``train`` would
    draw ε from, and the states of the other devices, which its training does not touch."""

    def __init__(self, state: RngState, device: torch.device) -> None:
        self.state = state
        self.device = device
        self.generator = torch.Generator(device)
        self.generator.set_state(self._device_state(state))

    def _device_state(self, state: RngState) -> Tensor:
        if self.device.type == "cpu":
            return state.cpu
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        if not state.cuda:
            raise ValueError("a CUDA member needs the CUDA RNG state captured after building it (build_members)")
        return state.cuda[index]

    def now(self) -> RngState:
        """The member's whole RNG state now: what its own checkpoint records."""
        current = self.generator.get_state()
        if self.device.type == "cpu":
            return RngState(current, self.state.cuda)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        cuda = list(self.state.cuda)
        cuda[index] = current
        return RngState(self.state.cpu, tuple(cuda))

    def eps(self, shape: tuple[int, ...]) -> Tensor:
        """ε as ``GaussianPosterior.rsample`` draws it for a float32 posterior of ``shape``."""
        return torch.randn(shape, generator=self.generator, device=self.device, dtype=torch.float32)


# --- Training -----------------------------------------------------------------------------------------------------


def train_packed(
    cells: Sequence[Cell],
    models: Sequence[Model],
    data: DataSplit,
    workdirs: Sequence[Path],
    progress: bool = True,
    on_epoch: OnMemberEpoch | None = None,
    *,
    start_rng: Sequence[RngState],
    notes: Sequence[list[str]] | None = None,
) -> list[list[dict[str, float]]]:
    """Train the members (``pack_reason`` None for them) together; returns each member's history, as ``train``.

    ``start_rng``: each member's RNG state right after it was built (``build_members``); a member resumed from its
    checkpoint takes the checkpoint's. ``notes[k]`` gets a line when member k's checkpoint had to be discarded.
    Every member's checkpoint is written after each epoch. Raises ``PackedNonFiniteLoss`` naming the member.
    The global RNG is left as it was found.
    """
    if data.cond is not None:
        raise ValueError("conditional data do not pack")
    device = data.x.device
    caller_rng = RngState.capture()
    try:
        return _train_packed(cells, models, data, workdirs, progress, on_epoch, start_rng, notes, device)
    finally:
        caller_rng.restore()


def _train_packed(
    cells: Sequence[Cell],
    models: Sequence[Model],
    data: DataSplit,
    workdirs: Sequence[Path],
    progress: bool,
    on_epoch: OnMemberEpoch | None,
    start_rng: Sequence[RngState],
    notes: Sequence[list[str]] | None,
    device: torch.device,
) -> list[list[dict[str, float]]]:
    epochs, batch_size = int(cells[0].train["epochs"]), int(cells[0].train["batch_size"])
    paths = [Path(w) / CHECKPOINT for w in workdirs]
    starts, histories, rngs = [], [], []
    for k, (cell, model, path) in enumerate(zip(cells, models, paths)):
        start, history = resume(cell, model, path, device, notes[k] if notes is not None else [])
        starts.append(start)
        histories.append(history)
        # A resumed member goes on with its checkpoint's RNG state, which resume() has just made the global one.
        rngs.append(_MemberRng(RngState.capture() if start else start_rng[k], device))
    if len(set(starts)) > 1:
        raise ValueError(_resume_reason(cells, workdirs) or "the members resume at different epochs")
    start = starts[0]
    for model in models:
        model.train(True)
    pack = _Pack(models)
    betas = torch.tensor([float(c.beta or 0.0) for c in cells], device=device)
    steps = (len(data) + batch_size - 1) // batch_size
    bar = tqdm(
        total=epochs * steps, initial=start * steps, desc=f"pack of {len(cells)}: {cells[0].describe(with_seed=False)}",
        unit="step", leave=False, disable=not bars_enabled(progress),
    )  # fmt: skip
    with bar:
        for epoch in range(start, epochs):
            totals = _train_epoch(pack, cells, rngs, betas, data, epoch, batch_size, bar.update)
            pack.store()
            for k, (model, path) in enumerate(zip(models, paths)):
                means = dict(zip(TERMS, (totals[k] / steps).tolist()))
                histories[k].append({"epoch": epoch + 1, **means})
                rngs[k].now().restore()  # save_checkpoint records the global RNG: make it this member's
                save_checkpoint(model, epoch, histories[k], path)
            if on_epoch is not None:
                for k in range(len(cells)):
                    on_epoch(k, epoch, {t: histories[k][-1][t] for t in TERMS})
    for model in models:
        model.train(False)
    return histories


def _train_epoch(
    pack: _Pack,
    cells: Sequence[Cell],
    rngs: Sequence[_MemberRng],
    betas: Tensor,
    data: DataSplit,
    epoch: int,
    batch_size: int,
    on_step: Callable[[int], Any],
) -> Tensor:
    """One epoch of packed steps; returns each member's loss terms summed over the steps in step order, [K, 3].

    In the first epoch of fresh members, step 0 runs alone per member (``training_step``): a one-time
    data-dependent initialisation (RealNVP's ActNorm) then happens exactly as unpacked, before any Python branch
    on it has to run under vmap.
    """
    n, k_members = len(data), len(cells)
    device = data.x.device
    # Each member's permutation of the epoch, exactly as its unpacked run would draw it.
    order = torch.stack([torch.cat(list(batches(n, batch_size, c.seed, epoch, device))) for c in cells])
    steps = (n + batch_size - 1) // batch_size
    terms = torch.zeros(steps, k_members, len(TERMS), device=device)
    totals = torch.zeros(k_members, len(TERMS), device=device)
    fresh = epoch == 0 and not pack.opt_model.state
    checked = 0
    try:
        for step in range(steps):
            x = as_float(data.x[order[:, step * batch_size : (step + 1) * batch_size]])
            if step == 0 and fresh:
                terms[step] = _steps_alone(pack, cells, rngs, x)
            else:
                terms[step] = _packed_step(pack, rngs, betas, x)
            totals += terms[step]
            on_step(1)
            if step + 1 - checked >= CHECK_EVERY:
                _check_members(terms[checked : step + 1], cells, epoch, checked)
                checked = step + 1
    except NonFiniteLoss:
        raise
    except Exception:
        # As unpacked: a plugin that chokes on NaN parameters raises after the step that made them.
        _check_members(terms[checked:], cells, epoch, checked)
        raise
    _check_members(terms[checked:], cells, epoch, checked)
    return totals


def _steps_alone(pack: _Pack, cells: Sequence[Cell], rngs: Sequence[_MemberRng], x: Tensor) -> Tensor:
    """Each member's step on its batch ``x[k]`` through ``training_step`` with its own RNG, then restack."""
    rows = []
    for k, (cell, rng, model) in enumerate(zip(cells, rngs, pack.models)):
        _set_device_rng(rng)
        rows.append(training_step(model, x[k], float(cell.beta or 0.0)))
        rng.generator.set_state(_device_rng_state(rng.device))
    pack.load()
    return torch.stack(rows)


def _set_device_rng(rng: _MemberRng) -> None:
    if rng.device.type == "cpu":
        torch.set_rng_state(rng.generator.get_state())
    else:
        torch.cuda.set_rng_state(rng.generator.get_state(), rng.device)


def _device_rng_state(device: torch.device) -> Tensor:
    return torch.get_rng_state() if device.type == "cpu" else torch.cuda.get_rng_state(device)


def _packed_step(pack: _Pack, rngs: Sequence[_MemberRng], betas: Tensor, x: Tensor) -> Tensor:
    """One update of every member's φ, ψ and θ; returns the detached terms [K, 3] as ``training_step`` reports
    them (reg 0 for a member with β = 0, whose regulariser unpacked is never computed)."""
    rows = x.shape[1]
    latent = pack.models[0].prior.latent_dim
    eps = torch.stack([rng.eps((rows, latent)) for rng in rngs])
    rec, reg, fit = pack.forward(x, eps)
    # β = 0 weights the computed penalty by 0: that member's φ, ψ get no gradient from it, as unpacked.
    loss_model = (rec + betas * reg).sum()
    pack.opt_model.zero_grad(set_to_none=True)
    # `inputs=` routes gradients as in training_step: L_φψ must not reach θ.
    loss_model.backward(inputs=pack.model_params)
    pack.opt_model.step()
    if pack.opt_prior is not None:
        pack.opt_prior.zero_grad(set_to_none=True)
        fit.sum().backward(inputs=pack.prior_params)
        pack.opt_prior.step()
    shown_reg = torch.where(betas != 0, reg.detach(), torch.zeros_like(betas))
    return torch.stack([rec.detach(), shown_reg, fit.detach()], dim=1)


def _check_members(terms: Tensor, cells: Sequence[Cell], epoch: int, first_step: int) -> None:
    """``_check_finite`` per member over ``terms`` [steps, K, 3], with one wait for the device when all is well."""
    if terms.numel() == 0 or bool(torch.isfinite(terms).all()):
        return
    for k, cell in enumerate(cells):
        try:
            _check_finite(terms[:, k], epoch, first_step)
        except NonFiniteLoss as exc:
            raise PackedNonFiniteLoss(f"{cell.label}: {exc}", member=k) from None

