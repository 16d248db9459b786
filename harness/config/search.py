"""The shape of one Optuna search (``searches:``): what is searched, the objective, pruner, sampler, heartbeat."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from harness.config.fields import FROZEN, Options, PositiveInt, named_options
from harness.errors import QUOTE_LIMIT, capped

class SearchParam(BaseModel):
    """One searched value: a range (``low``/``high``, float or int, ``log: true`` for log-uniform) or ``choices``."""

    model_config = FROZEN

    low: int | float | None = None
    high: int | float | None = None
    type: Literal["float", "int"] = "float"
    log: bool = False
    step: Annotated[float, Field(gt=0)] | None = None
    choices: Annotated[list[bool | int | float | str | None], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _range(self) -> SearchParam:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("give either choices or a range (low, high), not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give a range (low and high) or choices")
        if self.low >= self.high:
            raise ValueError(f"empty range: low {self.low:g} >= high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got low {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("log: true and step cannot be combined")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError(f"type: int needs whole numbers, got low {self.low:g}, high {self.high:g}")
        return self


class SearchObjective(BaseModel):
    model_config = FROZEN

    #: A metric of the benchmark's evaluators, e.g. ``fid`` or ``reconstruction.mse``.
    metric: str
    #: Default: the metric's own direction (lower-is-better metrics are minimised).
    direction: Literal["minimize", "maximize"] | None = None


class SearchPruner(BaseModel):
    """The median pruner: a trial stops when its per-epoch value is worse than the median of earlier trials'."""

    model_config = FROZEN

    enabled: bool = True
    #: Never prune before this many trials have finished.
    startup_trials: Annotated[int, Field(ge=0)] = 3
    #: Never prune a trial in its first ``warmup_epochs`` epochs.
    warmup_epochs: Annotated[int, Field(ge=0)] = 1


class SearchSampler(BaseModel):
    """The TPE sampler: random for the first ``startup_trials`` trials, then guided by the finished ones."""

    model_config = FROZEN

    seed: Annotated[int, Field(ge=0)] = 0
    startup_trials: Annotated[int, Field(ge=0)] = 10


class SearchHeartbeat(BaseModel):
    """Database storage only: a trial whose worker stops beating for ``grace`` seconds is failed and retried."""

    model_config = FROZEN

    interval: PositiveInt = 60
    #: Default: twice the interval.
    grace: PositiveInt | None = None
    #: How often one trial is retried after its worker died (then it stays failed).
    max_retry: Annotated[int, Field(ge=0)] = 3

    @model_validator(mode="after")
    def _grace(self) -> SearchHeartbeat:
        if self.grace is not None and self.grace <= self.interval:
            raise ValueError(f"grace {self.grace} must be longer than interval {self.interval}")
        return self


def _one_named(value: Any) -> Any:
    value = named_options(value)
    if isinstance(value, dict) and len(value) > 1:
        names = capped(", ".join(map(str, value)), QUOTE_LIMIT)
        raise ValueError(f"{names}: a search has one; give a name or {{name: {{options}}}}")
    return value


class SearchConfig(BaseModel):
    """An Optuna search over one prior and regularizer of a benchmark (checked against the plugins by
    ``harness.search.resolve``)."""

    model_config = FROZEN

    description: str = ""
    #: Dataset, model, train and evaluators come from this benchmark.
    benchmark: str
    #: Which of the benchmark's datasets (needed when it has several).
    dataset: str | None = None
    prior: Annotated[dict[str, Options], Field(min_length=1)]
    regularizer: Annotated[dict[str, Options], Field(min_length=1)]
    #: β when it is not searched (default: the benchmark's, when it has one).
    beta: Annotated[float, Field(ge=0)] | None = None
    #: The seed every trial's cell trains with.
    seed: Annotated[int, Field(ge=0)] = 0
    #: Dotted path (beta, prior.<option>, regularizer.<option>, train.<key>, model.<key>) -> what to try.
    space: Annotated[dict[str, SearchParam], Field(min_length=1)]
    objective: SearchObjective
    #: The trials' evaluators (default: the benchmark's): keep what the objective needs for cheaper trials.
    evaluators: Annotated[dict[str, Options], Field(min_length=1)] | None = None
    #: Total trials wanted in the study (``--trials`` overrides).
    trials: PositiveInt = 20
    #: Points tried first, before the sampler's own (e.g. the benchmark's current values).
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    pruner: SearchPruner = Field(default_factory=SearchPruner)
    sampler: SearchSampler = Field(default_factory=SearchSampler)
    heartbeat: SearchHeartbeat = Field(default_factory=SearchHeartbeat)

    _named = field_validator("prior", "regularizer", mode="before")(classmethod(lambda cls, v: _one_named(v)))
    _evaluators = field_validator("evaluators", mode="before")(classmethod(lambda cls, v: named_options(v)))
    _objective = field_validator("objective", mode="before")(
        classmethod(lambda cls, v: {"metric": v} if isinstance(v, str) else v)
    )
