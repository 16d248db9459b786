"""A benchmark -> the cells it crosses: datasets × priors (× list-valued options) × regularizers × β × seeds.

Every plugin name and option is checked here, before anything trains. A cell's id is the hash of its fully
resolved config, so the same experiment has the same id in every run and a rerun can skip it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from harness.config import BenchmarkConfig, ConfigError, suggest
from harness.options import validate_options
from harness.plugins import Kind, Registry


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
        shown = self.prior_options if self.prior_options_given is None else self.prior_options_given
        opts = ",".join(f"{k}={v}" for k, v in sorted(shown.items()))
        prior = f"{self.prior}({opts})" if opts else self.prior
        beta = "" if self.beta is None else f" β={self.beta:g}"
        variant = f"[{self.variant}] " if self.variant else ""
        return f"{variant}{self.dataset} {prior} {self.regularizer}{beta} seed={self.seed}"


def _axes(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expand list-valued options into one options dict per combination."""
    keys = list(options)
    values = [v if isinstance(v, list) else [v] for v in options.values()]
    for key, vals in zip(keys, values):
        if not vals:
            raise ValueError(key)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _plugin(registry: Registry, kind: Kind, name: str, where: str) -> type[Any]:
    if name not in registry.plugins[kind]:
        raise ConfigError(where, f"unknown {kind} {name!r}{suggest(name, registry.names(kind))}")
    return registry.get(kind, name)


def _constructed(cls: type[Any], options: dict[str, Any], where: str, **supplied: Any) -> dict[str, Any]:
    """Build the plugin once: a constructor that rejects a value (ValueError) is bad input, not a crash later.

    ``supplied`` are the arguments the harness passes itself (a prior's ``latent_dim``).
    """
    try:
        cls(**supplied, **options)
    except ValueError as exc:
        raise ConfigError(where, f"{options!r}: {' '.join(str(exc).split())}") from None
    return options


def _variants(
    registry: Registry, kind: Kind, name: str, options: Any, where: str, **supplied: Any
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One (options as written, options resolved) pair per combination of the list-valued options."""
    cls = _plugin(registry, kind, name, where)
    if not isinstance(options, Mapping):
        raise ConfigError(where, f"{options!r}: options must be a mapping of option: value")
    try:
        combos = _axes(options)
    except ValueError as exc:
        raise ConfigError(f"{where}.{exc}", "[]: an empty list gives no values to try") from None
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
    datasets: list[tuple[str, dict[str, Any]]] = []
    for ds, raw in bench.datasets.items():
        ds_at = f"{at}.datasets.{ds}"
        ds_cls = _plugin(registry, "dataset", ds, ds_at)
        datasets.append((ds, _constructed(ds_cls, validate_options(ds_cls, raw, ds_at), ds_at)))
    evaluators: dict[str, dict[str, Any]] = {}
    for ev, raw in bench.evaluators.items():
        ev_at = f"{at}.evaluators.{ev}"
        ev_cls = _plugin(registry, "evaluator", ev, ev_at)
        evaluators[ev] = _constructed(ev_cls, validate_options(ev_cls, raw, ev_at), ev_at)
    directions = metric_directions(registry, evaluators)
    if bench.primary_metric is not None and bench.primary_metric not in directions:
        raise ConfigError(
            f"{at}.primary_metric",
            f"unknown metric {bench.primary_metric!r}{suggest(bench.primary_metric, directions)}",
            "metrics come from the benchmark's evaluators: <evaluator> or <evaluator>.<key>",
        )
    _check_claims(bench, directions, at)

    cells: list[Cell] = []
    for variant, prior_specs, reg_specs, model_config, bench_betas in bench.variants():
        v_at = at if variant is None else f"{at}.models.{variant}"
        arch_cls = _plugin(registry, "architecture", model_config.architecture, f"{v_at}.model.architecture")
        arch_at = f"{v_at}.model.architecture_options"
        arch_opts = _constructed(arch_cls, validate_options(arch_cls, model_config.architecture_options, arch_at), arch_at)
        # exclude_none: an unset ``perceptual`` leaves no key behind, so cells without it keep their ids.
        model = {**model_config.model_dump(mode="json", exclude_none=True), "architecture_options": arch_opts}
        priors = [
            (p, given, opts)
            for p, raw in prior_specs.items()
            for given, opts in _variants(
                registry, "prior", p, raw, f"{v_at}.priors.{p}", latent_dim=model_config.latent_dim
            )
        ]
        regularizers = [
            (r, opts)
            for r, raw in reg_specs.items()
            for _, opts in _variants(registry, "regularizer", r, raw, f"{v_at}.regularizers.{r}")
        ]
        for (ds, ds_opts), (prior, p_given, p_opts), (reg, r_opts) in itertools.product(datasets, priors, regularizers):
            reg_cls = registry.get("regularizer", reg)
            betas: list[float | None] = list(bench_betas) if reg_cls.uses_beta else [None]
            reason = reg_cls.incompatibility(registry.get("prior", prior))
            for beta, seed in itertools.product(betas, bench.seeds):
                cells.append(
                    Cell(
                        benchmark=name,
                        dataset=ds,
                        dataset_options=ds_opts,
                        model=model,
                        prior=prior,
                        prior_options=p_opts,
                        regularizer=reg,
                        regularizer_options=r_opts,
                        beta=beta,
                        seed=seed,
                        train=bench.train.model_dump(mode="json"),
                        evaluators=evaluators,
                        sample_grid=bench.sample_grid,
                        skip_reason=reason,
                        prior_options_given=p_given,
                        variant=variant,
                    )
                )
    return cells


def _check_claims(bench: BenchmarkConfig, directions: Mapping[str, str], at: str) -> None:
    """Claims may only name metrics the benchmark measures and model variants it defines."""
    variants = set(bench.models or {})
    for i, claim in enumerate(bench.claims):
        for side_name, side in (("a", claim.a), ("b", claim.b)):
            if side is None:
                continue
            metric = side.metric or claim.metric
            if metric not in directions:
                raise ConfigError(f"{at}.claims[{i}].{side_name}", f"unknown metric {metric!r}{suggest(str(metric), directions)}")
            if side.model is not None and side.model not in variants:
                raise ConfigError(f"{at}.claims[{i}].{side_name}.model", f"unknown model {side.model!r}{suggest(side.model, variants)}")
