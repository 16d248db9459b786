"""A benchmark -> the cells it crosses: datasets × priors (× list-valued options) × regularizers × β × seeds.

Every plugin name and option is checked here, before anything trains. A cell's id is the hash of its fully
resolved config, so the same experiment has the same id in every run and a rerun can skip it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)
from torch.nn.parameter import is_lazy

from harness.conditions import CONDITION_KEY, dataset_label, split_options
from harness.config import BenchmarkConfig, ConfigError, SubGrid, quote, suggest
from harness.options import validate_options
from harness.registry import Kind, Registry


@dataclass(frozen=True)
class Cell:
    """One model to train and evaluate. Everything that determines its result is in here."""

    benchmark: str
    dataset: str
    dataset_options: Mapping[str, Any]
    model: Mapping[str, Any]
    prior: str
    prior_options: Mapping[str, Any]
    regularizer: str
    regularizer_options: Mapping[str, Any]
    #: None when the regularizer ignores β (``none``).
    beta: float | None
    seed: int
    train: Mapping[str, Any]
    evaluators: Mapping[str, Mapping[str, Any]]
    sample_grid: int = 64
    skip_reason: str | None = field(default=None, compare=False)
    #: The prior options as the config wrote them (defaults left out): what leaderboards display.
    prior_options_given: Mapping[str, Any] | None = field(default=None, compare=False)
    #: The benchmark's name for this cell's model variant (``models:``), when it has named ones.
    variant: str | None = field(default=None, compare=False)

    def identity(self) -> dict[str, Any]:
        """What the id hashes: everything but the benchmark's name (the same cell in two benchmarks is one)
        and the display-only fields."""
        data = asdict(self)
        del data["benchmark"], data["skip_reason"], data["prior_options_given"], data["variant"]
        return data

    @cached_property
    def cell_id(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"cell_id": self.cell_id, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        fields = {k: v for k, v in data.items() if k != "cell_id"}
        return cls(**fields)

    @property
    def label(self) -> str:
        return self.describe()

    def describe(self, with_seed: bool = True) -> str:
        """``[variant] dataset prior(options) regularizer β=b seed=s``: how every console line, leaderboard row
        and figure title names this cell. Options are those the config wrote (defaults left out)."""
        shown = self.prior_options if self.prior_options_given is None else self.prior_options_given
        opts = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
        prior = f"{self.prior}({opts})" if opts else self.prior
        beta = "" if self.beta is None else f" β={self.beta:g}"
        seed = f" seed={self.seed}" if with_seed else ""
        variant = f"[{self.variant}] " if self.variant else ""
        return f"{variant}{dataset_label(self.dataset, self.dataset_options)} {prior} {self.regularizer}{beta}{seed}"


def selected_by(cell: Mapping[str, Any], selector: Mapping[str, Any]) -> bool:
    """Whether a cell (as ``Cell.to_json`` stores it) is one a ``latent_figures:`` selector picks: every key the
    selector gives (prior, regularizer, beta, seed, model) matches."""
    wanted = {k: selector.get(k) for k in ("prior", "regularizer", "beta", "seed")} | {"variant": selector.get("model")}
    return all(v is None or cell.get(k) == v for k, v in wanted.items())


#: Most combinations one plugin's list-valued options may make, and most cells one benchmark may have: each
#: combination is built once at validation, and nobody trains 100,000 cells of one benchmark.
MAX_COMBINATIONS = 10_000
MAX_CELLS = 100_000


class _TooManyCombinations(Exception):
    def __init__(self, count: int) -> None:
        self.count = count


def _axes(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expand list-valued options into one options dict per combination."""
    keys = list(options)
    values = [v if isinstance(v, list) else [v] for v in options.values()]
    for key, vals in zip(keys, values):
        if not vals:
            raise ValueError(key)
    count = math.prod(len(v) for v in values)
    if count > MAX_COMBINATIONS:
        raise _TooManyCombinations(count)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _plugin(registry: Registry, kind: Kind, name: str, where: str) -> type[Any]:
    if name not in registry.plugins[kind]:
        raise ConfigError(where, f"unknown {kind} {quote(name)}{suggest(str(name), registry.names(kind))}")
    return registry.get(kind, name)


#: A plugin whose constructor registers more tensor elements (parameters and buffers) than this is refused at
#: validation: 2**31 float32 elements are 8 GiB before gradients and Adam's moments triple them.
MAX_ELEMENTS = 2**31
#: ... or more submodules than this (a 1,000-coupling RealNVP has ~8,000): ``depth: 1e8`` makes Python objects,
#: which the meta device does not spare.
MAX_MODULES = 20_000


class _TooLarge(Exception):
    """Raised from a registration hook to stop building a plugin that is over MAX_ELEMENTS or MAX_MODULES."""


@dataclass
class _Tally:
    elements: int = 0
    modules: int = 0
    over: str | None = None


@contextmanager
def _meta_build() -> Iterator[_Tally]:
    """Plugins built in here get meta tensors (a shape, no memory), and building stops with _TooLarge once one
    registers more than MAX_ELEMENTS tensor elements or MAX_MODULES submodules.

    The registration hooks are global, so they count only this thread's registrations; the meta device is a
    torch function mode, which is per thread already.
    """
    thread = threading.get_ident()
    tally = _Tally()

    def refuse(what: str) -> None:
        tally.over = what
        raise _TooLarge(what)

    def on_tensor(module: torch.nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        if threading.get_ident() != thread or tensor is None or is_lazy(tensor):
            return
        tally.elements += tensor.numel()
        if tally.elements > MAX_ELEMENTS:
            refuse(f"more than {MAX_ELEMENTS:,} parameter and buffer elements ({MAX_ELEMENTS * 4 >> 30} GiB as float32)")

    def on_module(module: torch.nn.Module, name: str, submodule: torch.nn.Module | None) -> None:
        if threading.get_ident() != thread:
            return
        tally.modules += 1
        if tally.modules > MAX_MODULES:
            refuse(f"more than {MAX_MODULES:,} submodules")

    handles = [
        register_module_parameter_registration_hook(on_tensor),
        register_module_buffer_registration_hook(on_tensor),
        register_module_module_registration_hook(on_module),
    ]
    try:
        with torch.device("meta"):
            yield tally
    finally:
        for handle in handles:
            handle.remove()


def _needs_real_tensors(exc: Exception) -> bool:
    """torch's way of saying an operation has no meta implementation (``.item()``, copying data out)."""
    return isinstance(exc, (RuntimeError, NotImplementedError)) and "meta" in str(exc).lower()


def _build_for_validation(cls: type[Any], kwargs: dict[str, Any]) -> None:
    """Build the plugin as validation does: on the meta device, bounded; for real only when its constructor needs
    real tensors (third-party plugins may read tensor values in ``__init__``)."""
    error: Exception | None = None
    with _meta_build() as tally:
        try:
            cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - decided below, outside the meta device
            error = exc
    if tally.over is not None:  # also when the constructor caught _TooLarge and raised an error of its own
        raise _TooLarge(tally.over)
    if error is not None:
        if not _needs_real_tensors(error):
            raise error
        cls(**kwargs)


def _reason(exc: BaseException) -> str:
    """An exception as one line: its message, with the type unless it is the ValueError plugins are asked to raise."""
    text = " ".join(str(exc).split()) or "(no message)"
    text = text if len(text) <= 300 else f"{text[:300]}… ({len(text):,} chars)"
    return text if type(exc) is ValueError else f"{type(exc).__name__}: {text}"


def _largest_option(options: Mapping[str, Any]) -> str:
    sizes = {k: v for k, v in options.items() if isinstance(v, int) and not isinstance(v, bool)}
    if not sizes:
        return ""
    key = max(sizes, key=lambda k: sizes[k])
    return f" (its largest option is {key}: {sizes[key]:,})"


def _constructed(cls: type[Any], options: dict[str, Any], where: str, **supplied: Any) -> dict[str, Any]:
    """Build the plugin once, on the meta device so that validation allocates nothing: a constructor that rejects
    a value, or fails in any other way, is bad input now rather than a crash later; so is a model of absurd size.

    ``supplied`` are the arguments the harness passes itself (a prior's ``latent_dim``).
    """
    try:
        _build_for_validation(cls, {**supplied, **options})
    except _TooLarge as exc:
        kind = getattr(cls, "name", cls.__name__)
        raise ConfigError(where, f"{quote(options)}: {kind!r} would build {exc}{_largest_option(options)}",
                          "make it smaller (fewer or narrower layers, fewer components)") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever a plugin's constructor raises is bad input
        raise ConfigError(where, f"{quote(options)}: {_reason(exc)}") from None
    return options


def _option_combinations(
    registry: Registry, kind: Kind, name: str, options: Any, where: str, **supplied: Any
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One (options as written, options resolved) pair per combination of the list-valued options."""
    cls = _plugin(registry, kind, name, where)
    if not isinstance(options, Mapping):
        raise ConfigError(where, f"{quote(options)}: options must be a mapping of option: value")
    try:
        combos = _axes(options)
    except ValueError as exc:
        raise ConfigError(f"{where}.{exc}", "[]: an empty list gives no values to try") from None
    except _TooManyCombinations as exc:
        raise ConfigError(where, f"its list-valued options make {exc.count:,} combinations, more than the "
                          f"{MAX_COMBINATIONS:,} one plugin may have", "write [[...]] for one list value") from None
    return [(combo, _constructed(cls, validate_options(cls, combo, where), where, **supplied)) for combo in combos]


def metric_directions(registry: Registry, evaluators: Mapping[str, Any]) -> dict[str, str]:
    """Every metric name the benchmark's evaluators can report -> "min" or "max"."""
    out: dict[str, str] = {}
    for name in evaluators:
        for key, direction in registry.get("evaluator", name).metrics.items():
            out[f"{name}.{key}" if key else name] = direction
    return out


def primary_metric(bench: BenchmarkConfig, directions: Mapping[str, str]) -> str:
    """The metric a benchmark ranks by: its ``primary_metric``, else its first evaluator's first metric."""
    return bench.primary_metric or next(iter(directions))


def expand(name: str, bench: BenchmarkConfig, registry: Registry, source: str) -> list[Cell]:
    """All cells of a benchmark, skipped ones included (with ``skip_reason`` set)."""
    at = f"{source}: benchmarks.{name}"
    datasets = [(ds, _dataset_options(registry, ds, raw, f"{at}.datasets.{ds}")) for ds, raw in bench.datasets.items()]
    evaluators = {ev: resolved_options(registry, "evaluator", ev, raw, f"{at}.evaluators.{ev}")
                  for ev, raw in bench.evaluators.items()}
    directions = metric_directions(registry, evaluators)
    if bench.primary_metric is not None and bench.primary_metric not in directions:
        raise ConfigError(
            f"{at}.primary_metric",
            f"unknown metric {quote(bench.primary_metric)}{suggest(bench.primary_metric, directions)}",
            "metrics come from the benchmark's evaluators: <evaluator> or <evaluator>.<key>",
        )
    _check_claims(bench, directions, at)
    cells: list[Cell] = []
    for sub in bench.sub_grids():
        cells += _sub_grid_cells(name, bench, sub, datasets, evaluators, registry, at, len(cells))
    return cells


def resolved_options(registry: Registry, kind: Kind, name: str, raw: Mapping[str, Any], at: str) -> dict[str, Any]:
    """A dataset's, evaluator's or tracker's options, validated and completed with its constructor's defaults."""
    cls = _plugin(registry, kind, name, at)
    return _constructed(cls, validate_options(cls, raw, at), at)


def _dataset_options(registry: Registry, name: str, raw: Any, at: str) -> dict[str, Any]:
    """A dataset's resolved options; its ``condition`` (the harness's key) is validated apart and recorded only when
    written, so unconditional cells keep their ids."""
    if not isinstance(raw, Mapping):
        return resolved_options(registry, "dataset", name, raw, at)
    own, condition = split_options(raw, at)
    resolved = resolved_options(registry, "dataset", name, own, at)
    return resolved if condition is None else {**resolved, CONDITION_KEY: condition.to_yaml()}


def is_conditional(registry: Registry, dataset: str, options: Mapping[str, Any]) -> bool:
    """Whether a dataset's cells train conditional models: a ``condition:`` is written or the dataset brings one."""
    return CONDITION_KEY in options or registry.get("dataset", dataset).provides_condition


def _conditional_skip(registry: Registry, prior: str, variant_at: str, arch_cls: type[Any]) -> str | None:
    """Why a prior cannot be trained on conditional data (None when it can); an unconditional architecture is a
    config error, since no cell of the dataset could train."""
    if not getattr(arch_cls, "conditional", False):
        raise ConfigError(f"{variant_at}.model.architecture", f"architecture {arch_cls.name!r} takes no condition",
                          "use conv or mlp (both conditional), or remove the dataset's condition")
    prior_cls = registry.get("prior", prior)
    if not prior_cls.conditional:
        why = getattr(prior_cls, "unconditional_reason", None) or "it does not declare conditional = True"
        return f"prior {prior!r} cannot be conditioned: {why}"
    return None


def _sub_grid_cells(
    name: str,
    bench: BenchmarkConfig,
    sub: SubGrid,
    datasets: list[tuple[str, dict[str, Any]]],
    evaluators: dict[str, dict[str, Any]],
    registry: Registry,
    at: str,
    before: int,
) -> list[Cell]:
    """datasets × priors × regularizers × β × seeds of one sub-grid; ``before``: cells of the earlier ones."""
    v_at = at if sub.model_name is None else f"{at}.models.{sub.model_name}"
    arch_cls = _plugin(registry, "architecture", sub.model.architecture, f"{v_at}.model.architecture")
    arch_at = f"{v_at}.model.architecture_options"
    arch_opts = _constructed(arch_cls, validate_options(arch_cls, sub.model.architecture_options, arch_at), arch_at)
    # exclude_none: an unset ``perceptual`` leaves no key behind, so cells without it keep their ids.
    model = {**sub.model.model_dump(mode="json", exclude_none=True), "architecture_options": arch_opts}
    priors = [
        (p, given, opts)
        for p, raw in sub.priors.items()
        for given, opts in _option_combinations(
            registry, "prior", p, raw, f"{v_at}.priors.{p}", latent_dim=sub.model.latent_dim
        )
    ]
    regularizers = [
        (r, opts)
        for r, raw in sub.regularizers.items()
        for _, opts in _option_combinations(registry, "regularizer", r, raw, f"{v_at}.regularizers.{r}")
    ]
    _check_cell_count(before + len(datasets) * len(priors) * len(regularizers) * len(sub.betas) * len(bench.seeds), at)
    cells = []
    for (ds, ds_opts), (prior, p_given, p_opts), (reg, r_opts) in itertools.product(datasets, priors, regularizers):
        reg_cls = registry.get("regularizer", reg)
        betas: list[float | None] = list(sub.betas) if reg_cls.uses_beta else [None]
        reason = reg_cls.incompatibility(registry.get("prior", prior))
        if is_conditional(registry, ds, ds_opts):
            reason = _conditional_skip(registry, prior, v_at, arch_cls) or reason
        cells += [
            Cell(benchmark=name, dataset=ds, dataset_options=ds_opts, model=model, prior=prior,
                 prior_options=p_opts, regularizer=reg, regularizer_options=r_opts, beta=beta, seed=seed,
                 train=bench.train.model_dump(mode="json"), evaluators=evaluators, sample_grid=bench.sample_grid,
                 skip_reason=reason, prior_options_given=p_given, variant=sub.model_name)
            for beta, seed in itertools.product(betas, bench.seeds)
        ]
    return cells


def _check_cell_count(count: int, at: str) -> None:
    """Before the cells are made: an upper bound on how many there will be (β counts even for ``none``)."""
    if count > MAX_CELLS:
        raise ConfigError(at, f"the grid makes up to {count:,} cells, more than the {MAX_CELLS:,} a benchmark may have",
                          "split it into several benchmarks or use fewer values per axis")


def _check_claims(bench: BenchmarkConfig, directions: Mapping[str, str], at: str) -> None:
    """Claims may only name metrics the benchmark measures, and model variants and datasets it defines."""
    variants = set(bench.models or {})
    for i, claim in enumerate(bench.claims):
        for side_name, side in (("a", claim.a), ("b", claim.b)):
            if side is None:
                continue
            metric = side.metric or claim.metric
            if metric not in directions:
                raise ConfigError(f"{at}.claims[{i}].{side_name}", f"unknown metric {quote(metric)}{suggest(str(metric), directions)}")
            datasets = set(bench.datasets)
            if side.dataset is not None and side.dataset not in datasets:
                raise ConfigError(f"{at}.claims[{i}].{side_name}.dataset",
                                  f"unknown dataset {quote(side.dataset)}{suggest(side.dataset, datasets)}")
            if side.model is not None and side.model not in variants:
                raise ConfigError(f"{at}.claims[{i}].{side_name}.model", f"unknown model {quote(side.model)}{suggest(side.model, variants)}")
