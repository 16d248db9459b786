"""A search from ``benchmarks.yaml`` checked against its benchmark and the plugins, and the one cell per trial.

A trial's cell is built by the same code path as ``harness run``: the search's benchmark with its priors,
regularizers, β and seeds replaced by the search's prior, regularizer and seed, the sampled values written at
their dotted paths, validated as a benchmark and expanded to exactly one cell. The same values give the same
cell id, so a result already in the store is reused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import ValidationError

from harness.config import (
    NAME_RULE,
    BenchmarkConfig,
    ConfigError,
    ConfigFile,
    ModelConfig,
    PerceptualConfig,
    SearchConfig,
    SearchParam,
    TrainConfig,
    first_error,
    quote,
    suggest,
    valid_name,
)
from harness.grid import Cell, expand, metric_directions
from harness.options import options_model, validate_options
from harness.registry import Registry

#: Benchmark keys a trial does not inherit: the search chooses the prior, regularizer, β and seed itself.
_NOT_INHERITED = {"default", "description", "cost", "priors", "regularizers", "models", "claims", "latent_figures",
                  "beta", "seeds", "primary_metric", "datasets"}
_ROOTS_HELP = "search beta, prior.<option>, regularizer.<option>, train.<key>, model.<key>, model.architecture_options.<option> or model.perceptual.<key>"


class TrialError(Exception):
    """Sampled values that do not make a valid cell (a plugin rejected them): the trial fails with this reason."""


@dataclass(frozen=True)
class Search:
    """A validated search: everything a worker needs to turn sampled values into a cell."""

    name: str
    config: SearchConfig
    source: str
    bench_name: str
    bench: BenchmarkConfig
    dataset: str
    prior: str
    regularizer: str
    metric: str
    direction: Literal["minimize", "maximize"]
    directions: Mapping[str, str]

    @property
    def at(self) -> str:
        return f"{self.source}: searches.{self.name}"

    def base(self) -> dict[str, Any]:
        """The trial benchmark before any sampled value is written into it (plain data, as YAML would give)."""
        data = self.bench.model_dump(mode="json", exclude=_NOT_INHERITED)
        if data["model"].get("perceptual") is None:
            # Unset, it leaves no key, as before the key existed: study names (hashes of this) stay the same.
            data["model"].pop("perceptual", None)
        bench_priors = self.bench.priors or {}
        bench_regs = self.bench.regularizers or {}
        ((_, prior_opts),) = self.config.prior.items()
        ((_, reg_opts),) = self.config.regularizer.items()
        beta = self.config.beta if self.config.beta is not None else self.bench.beta[0]
        return {
            "description": "",
            "datasets": {self.dataset: copy.deepcopy(self.bench.datasets[self.dataset])},
            "model": data.pop("model"),
            "priors": {self.prior: {**copy.deepcopy(bench_priors.get(self.prior, {})), **copy.deepcopy(prior_opts)}},
            "regularizers": {self.regularizer: {**copy.deepcopy(bench_regs.get(self.regularizer, {})), **copy.deepcopy(reg_opts)}},
            "beta": [beta],
            "seeds": [self.config.seed],
            "primary_metric": self.metric,
            **data,
            **({"evaluators": copy.deepcopy(self.config.evaluators)} if self.config.evaluators else {}),
        }

    def benchmark_data(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The trial's benchmark as plain data: ``base()`` with each value written at its dotted path."""
        data = self.base()
        for path, value in values.items():
            root, _, key = path.partition(".")
            if root == "beta":
                data["beta"] = [value]
            elif root == "prior":
                data["priors"][self.prior][key] = value
            elif root == "regularizer":
                data["regularizers"][self.regularizer][key] = value
            elif root == "train":
                data["train"][key] = value
            elif key.startswith(("architecture_options.", "perceptual.")):
                # A section of model: (a search over the perceptual weight switches the term on where it was off).
                section, option = key.split(".", 1)
                data["model"][section] = {**(data["model"].get(section) or {}), option: value}
            else:
                data["model"][key] = value
        return data

    def cell(self, values: Mapping[str, Any], registry: Registry) -> Cell:
        """The one cell of the trial with these values; ``TrialError`` when they do not make a valid one."""
        data = self.benchmark_data(values)
        try:
            bench = BenchmarkConfig.model_validate(data)
        except ValidationError as exc:
            err = first_error(exc)
            where = ".".join(str(p) for p in err["loc"])
            raise TrialError(f"{where}: {quote(err.get('input'))}: {err['msg']}") from None
        try:
            cells = expand(self.bench_name, bench, registry, self.source)
        except ConfigError as exc:
            # Name the part of the trial the problem is in (prior, regularizer, train, ...), not the benchmark's.
            where = exc.where.split(": ", 1)[-1].removeprefix(f"benchmarks.{self.bench_name}.")
            where = where.replace(f"priors.{self.prior}", "prior", 1).replace(f"regularizers.{self.regularizer}", "regularizer", 1)
            raise TrialError(f"{where}: {exc.message}") from None
        if len(cells) != 1:
            raise TrialError(f"the trial expands to {len(cells)} cells, not one (a list-valued option is a grid axis)")
        cell = replace(cells[0], benchmark=self.name)
        if cell.skip_reason:
            raise TrialError(f"cannot run: {cell.skip_reason}")
        return cell

    @property
    def study_name(self) -> str:
        """Stable per search and config: what a trial's cell depends on, the space and the objective.

        ``trials``, the pruner, the sampler and the heartbeat are left out, so changing them continues the study.
        """
        key = {
            "base": self.base(),
            "space": {k: v.model_dump(mode="json") for k, v in self.config.space.items()},
            "objective": [self.metric, self.direction],
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return f"{self.name}-{digest[:10]}"


def _one(named: Mapping[str, Any]) -> tuple[str, Any]:
    ((name, options),) = named.items()
    return name, options


def known_paths(search: SearchConfig, bench: BenchmarkConfig, registry: Registry) -> list[str]:
    """Every dotted path a search may sample (for unknown-path suggestions)."""
    prior, _ = _one(search.prior)
    reg, _ = _one(search.regularizer)
    paths = ["beta"] if registry.get("regularizer", reg).uses_beta else []
    paths += [f"prior.{k}" for k in options_model(registry.get("prior", prior)).model_fields]
    paths += [f"regularizer.{k}" for k in options_model(registry.get("regularizer", reg)).model_fields]
    paths += [f"train.{k}" for k in TrainConfig.model_fields]
    paths += [f"model.{k}" for k in ModelConfig.model_fields if k not in ("architecture_options", "perceptual")]
    paths += [f"model.perceptual.{k}" for k in PerceptualConfig.model_fields]
    if bench.model.architecture in registry.plugins["architecture"]:
        arch = registry.get("architecture", bench.model.architecture)
        paths += [f"model.architecture_options.{k}" for k in options_model(arch).model_fields]
    return paths


def _probe_values(param: SearchParam) -> Iterator[tuple[str, Any]]:
    """Values that stand for the whole range: its ends and one inside (which catches a float for an int)."""
    if param.choices is not None:
        yield from (("choice", c) for c in param.choices)
        return
    assert param.low is not None and param.high is not None
    if param.type == "int":
        yield from (("low", int(param.low)), ("high", int(param.high)))
        return
    low, high = float(param.low), float(param.high)
    inside = math.exp(math.log(low) + 0.37 * (math.log(high) - math.log(low))) if param.log else low + 0.37 * (high - low)
    yield from (("low", low), ("high", high), ("value", inside))


def _in_space(param: SearchParam, value: Any) -> bool:
    if param.choices is not None:
        return value in param.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    assert param.low is not None and param.high is not None
    return param.low <= value <= param.high and (param.type == "float" or float(value).is_integer())


def resolve(config: ConfigFile, name: str | None, registry: Registry, source: str, check: bool = True) -> Search:
    """The search ``name`` (or the only one) checked against its benchmark and the plugins.

    With ``check`` every searched path is tried at the ends of its range, so a value a plugin rejects is an
    error now (exit 2), not a failed trial later. Workers skip that: their parent already checked.
    """
    name = _search_name(config, name, source)
    search = config.searches[name]
    at = f"{source}: searches.{name}"
    if search.benchmark not in config.benchmarks:
        raise ConfigError(f"{at}.benchmark", f"unknown benchmark {quote(search.benchmark)}{suggest(search.benchmark, config.benchmarks)}")
    bench = config.benchmarks[search.benchmark]
    dataset = _dataset(search, bench, at)
    prior, reg = _plugins(search, registry, at)
    uses_beta = bool(registry.get("regularizer", reg).uses_beta)
    if search.beta is None and "beta" not in search.space and uses_beta and len(bench.beta) > 1:
        raise ConfigError(f"{at}.beta", f"benchmark {quote(search.benchmark)} has several β ({quote(bench.beta)}); give one or search beta")
    _check_paths(search, bench, registry, reg, uses_beta, at)
    metric, direction, directions = _objective(name, search, bench, registry, at)
    _check_enqueue(search, at)

    found = Search(name, search, source, search.benchmark, bench, dataset, prior, reg, metric, direction,
                   directions)
    if check:
        _check_space(found, registry)
    return found


def _search_name(config: ConfigFile, name: str | None, source: str) -> str:
    """``--search`` checked, or the only search when it is left out."""
    if name is None:
        if len(config.searches) != 1:
            raise ConfigError(f"{source}: --search", "name the search to run" + suggest("", config.searches))
        name = next(iter(config.searches))
    if not valid_name(name):  # a search's name is a folder (leaderboards/search-NAME) and a study name
        raise ConfigError(f"{source}: --search", f"{quote(name)} is not a valid search name; names are {NAME_RULE}")
    if name not in config.searches:
        raise ConfigError(f"{source}: --search", f"unknown search {quote(name)}{suggest(name, config.searches)}")
    return name


def _dataset(search: SearchConfig, bench: BenchmarkConfig, at: str) -> str:
    """The search's dataset, or the benchmark's only one."""
    if search.dataset is None:
        if len(bench.datasets) > 1:
            raise ConfigError(f"{at}.dataset", f"benchmark {quote(search.benchmark)} has several datasets; pick one"
                              + suggest("", bench.datasets))
        return next(iter(bench.datasets))
    if search.dataset not in bench.datasets:
        raise ConfigError(f"{at}.dataset", f"{quote(search.dataset)} is not a dataset of benchmark {quote(search.benchmark)}"
                          + suggest(search.dataset, bench.datasets))
    return search.dataset


def _plugins(search: SearchConfig, registry: Registry, at: str) -> tuple[str, str]:
    """The search's prior and regularizer, each a known plugin with valid options."""
    prior, _ = _one(search.prior)
    reg, _ = _one(search.regularizer)
    for kind, plugin, key in (("prior", prior, "prior"), ("regularizer", reg, "regularizer")):
        if plugin not in registry.plugins[kind]:
            raise ConfigError(f"{at}.{key}", f"unknown {kind} {quote(plugin)}{suggest(plugin, registry.names(kind))}")
    for kind, plugin, options in (("prior", prior, search.prior[prior]), ("regularizer", reg, search.regularizer[reg])):
        validate_options(registry.get(kind, plugin), options, f"{at}.{kind}.{plugin}")
    return prior, reg


def _check_paths(search: SearchConfig, bench: BenchmarkConfig, registry: Registry, reg: str, uses_beta: bool,
                 at: str) -> None:
    """Every searched path names an option the cell has (β only where the regularizer uses it)."""
    paths = known_paths(search, bench, registry)
    for path in search.space:
        if path == "beta" and not uses_beta:
            raise ConfigError(f"{at}.space.beta", f"the {reg!r} regularizer ignores β, so there is nothing to search",
                              "search beta with a regularizer that uses it (kl, adversarial)")
        if path not in paths:
            raise ConfigError(f"{at}.space.{path}", f"unknown parameter {quote(path)}{suggest(path, paths)}", _ROOTS_HELP)


def _objective(name: str, search: SearchConfig, bench: BenchmarkConfig, registry: Registry,
               at: str) -> tuple[str, str, dict[str, str]]:
    """(metric, Optuna direction, every metric's direction): the objective is a metric of the evaluators, and its
    direction, when given, is the metric's own."""
    evaluators = search.evaluators or bench.evaluators
    for ev in search.evaluators or {}:
        if ev not in registry.plugins["evaluator"]:
            raise ConfigError(f"{at}.evaluators.{ev}", f"unknown evaluator {quote(ev)}{suggest(ev, registry.names('evaluator'))}")
    directions = metric_directions(registry, {ev: {} for ev in evaluators if ev in registry.plugins["evaluator"]})
    metric = search.objective.metric
    if metric not in directions:
        owner = f"searches.{name}.evaluators" if search.evaluators else f"benchmark {quote(search.benchmark)}"
        raise ConfigError(f"{at}.objective.metric", f"unknown metric {quote(metric)}{suggest(metric, directions)}",
                          f"metrics come from the evaluators of {owner}: <evaluator> or <evaluator>.<key>")
    natural = "minimize" if directions[metric] == "min" else "maximize"
    direction = search.objective.direction or natural
    if direction != natural:
        raise ConfigError(f"{at}.objective.direction", f"{direction!r}, but {metric} is {'lower' if natural == 'minimize' else 'higher'} "
                          f"is better; leave direction out or write {natural!r}")
    return metric, direction, directions


def _check_enqueue(search: SearchConfig, at: str) -> None:
    """Each enqueued point sets searched parameters only, each inside its range or choices."""
    for i, point in enumerate(search.enqueue):
        for path, value in point.items():
            if path not in search.space:
                raise ConfigError(f"{at}.enqueue[{i}].{path}", f"not a searched parameter{suggest(path, search.space)}")
            if not _in_space(search.space[path], value):
                raise ConfigError(f"{at}.enqueue[{i}].{path}", f"{quote(value)} is outside the searched range or choices")


def _check_space(search: Search, registry: Registry) -> None:
    """Every searched path at each end of its range (the others at the benchmark's values) makes one valid cell."""
    try:
        search.cell({}, registry)
    except TrialError as exc:
        raise ConfigError(search.at, f"the search's trial is not a valid cell: {exc}") from None
    for path, param in search.config.space.items():
        for what, value in _probe_values(param):
            try:
                search.cell({path: value}, registry)
            except TrialError as exc:
                raise ConfigError(f"{search.at}.space.{path}", f"{what} {quote(value)} is rejected: {exc}") from None
