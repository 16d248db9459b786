"""benchmarks.yaml -> validated, frozen config objects.

Validation happens here, at the boundary, in two passes: the file's shape (pydantic models below), then
everything that needs the plugins (names, plugin options, metrics) in ``harness.resolve``. Every problem is a
``ConfigError`` naming the file, the key path, the bad value and the valid choices.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails


class ConfigError(Exception):
    """Bad input. Printed as ``error: <where>: <message>`` (plus an indented fix line), exit status 2."""

    def __init__(self, where: str, message: str, fix: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message
        self.fix = fix

    def render(self) -> str:
        text = f"error: {self}"
        return f"{text}\n  {self.fix}" if self.fix else text


def suggest(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?); known: a, b, c`` — the tail every unknown-name error ends with."""
    choices = sorted(choices)
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; known: {', '.join(choices) if choices else '(none)'}"


def key_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- YAML -------------------------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(str(path), "no such config file")
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: line {exc.line}", f"duplicate key {exc.key!r} (each key may appear once)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}: line {mark.line + 1} column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(where, f"invalid YAML: {problem}") from None


# --- the file's shape -------------------------------------------------------------------------------------

_FROZEN = ConfigDict(extra="forbid", frozen=True)
PositiveInt = Annotated[int, Field(ge=1)]
Options = dict[str, Any]


def _named_options(value: Any) -> Any:
    """``[a, {b: {...}}]`` or ``{a: {}, b: {...}}`` or ``a`` -> ``{a: {}, b: {...}}``; options None -> {}."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        merged: dict[Any, Any] = {}
        for item in value:
            if isinstance(item, dict) and len(item) == 1:
                merged.update(item)
            elif isinstance(item, str):
                merged[item] = {}
            else:
                return value  # let pydantic report the bad item
        value = merged
    if isinstance(value, dict):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _gamma(value: Any) -> float | str:
    if value == "learned":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{value!r}: gamma must be a number > 0 or 'learned'")
    return float(value)


class ModelConfig(BaseModel):
    model_config = _FROZEN

    architecture: str = "mlp"
    #: Options of the architecture plugin (validated against it). Lists here are values, not grid axes.
    architecture_options: Options = Field(default_factory=dict)
    latent_dim: PositiveInt = 8
    likelihood: Literal["gaussian", "bernoulli"] = "gaussian"
    #: Decoder variance γ of the Gaussian likelihood N(x | Dψ(z), γI): a fixed value, or "learned".
    gamma: Annotated[float | str, BeforeValidator(_gamma)] = 1.0


class TrainConfig(BaseModel):
    model_config = _FROZEN

    epochs: PositiveInt = 20
    batch_size: PositiveInt = 128
    lr: Annotated[float, Field(gt=0)] = 1e-3
    #: Learning rate of the prior's parameters θ; defaults to ``lr``.
    prior_lr: Annotated[float, Field(gt=0)] | None = None
    #: On CUDA, run the encoder and decoder under bf16 autocast (loss terms stay float32). No effect on CPU.
    autocast: bool = True
    #: ``torch.compile`` the encoder and decoder (pays a compile time per cell; worth it for long cells).
    compile: bool = False


class BenchmarkConfig(BaseModel):
    model_config = _FROZEN

    default: bool = False
    description: str = ""
    datasets: Annotated[dict[str, Options], Field(min_length=1)]
    model: ModelConfig = Field(default_factory=ModelConfig)
    #: prior name -> options; a list-valued option is a grid axis (write [[...]] for one list value).
    priors: Annotated[dict[str, Options], Field(min_length=1)]
    regularizers: Annotated[dict[str, Options], Field(min_length=1)]
    beta: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] = Field(default_factory=lambda: [1.0])
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = Field(default_factory=lambda: [0])
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluators: Annotated[dict[str, Options], Field(min_length=1)] = Field(default_factory=lambda: {"reconstruction": {}})
    #: The metric the leaderboard ranks by; default: the first metric of the first evaluator.
    primary_metric: str | None = None
    #: How many prior samples each cell draws into its samples.png grid.
    sample_grid: Annotated[int, Field(ge=0, le=1024)] = 64

    _named = field_validator("datasets", "priors", "regularizers", "evaluators", mode="before")(
        classmethod(lambda cls, v: _named_options(v))
    )
    _lists = field_validator("beta", "seeds", mode="before")(classmethod(lambda cls, v: _as_list(v)))

    @field_validator("beta", "seeds")
    @classmethod
    def _no_repeats(cls, value: list[Any]) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError(f"repeated values in {value}")
        return value


class ConfigFile(BaseModel):
    model_config = _FROZEN

    benchmarks: Annotated[dict[str, BenchmarkConfig], Field(min_length=1)]
    #: Optuna searches (validated by ``harness search``); kept opaque here.
    searches: dict[str, Any] = Field(default_factory=dict)

    @field_validator("benchmarks")
    @classmethod
    def _one_default(cls, value: dict[str, BenchmarkConfig]) -> dict[str, BenchmarkConfig]:
        defaults = [name for name, b in value.items() if b.default]
        if len(defaults) > 1:
            raise ValueError(f"more than one benchmark has default: true ({', '.join(defaults)}); keep one")
        return value


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The keys allowed at ``loc`` inside ``model`` (for unknown-key suggestions)."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif getattr(current, "__origin__", None) is dict:
            current = current.__args__[1]
        else:
            return []
        while getattr(current, "__metadata__", None) is not None:  # unwrap Annotated
            current = current.__origin__
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def first_error(exc: ValidationError) -> ErrorDetails:
    """The error to report: an unknown key first, since a misspelt key also makes the real one "missing"."""
    errors = exc.errors(include_url=False)
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def _explain(exc: ValidationError, source: str) -> ConfigError:
    err = first_error(exc)
    loc = list(err["loc"])
    if err["type"] == "extra_forbidden":
        key = str(loc[-1])
        return ConfigError(f"{source}: {key_path(loc)}", f"unknown key {key!r}{suggest(key, _fields_at(ConfigFile, loc[:-1]))}")
    if err["type"] == "missing":
        return ConfigError(f"{source}: {key_path(loc)}", "required key is missing")
    where = f"{source}: {key_path(loc)}" if loc else source
    if err["type"] == "too_short":  # pydantic's text says "dictionary" for a list the user wrote
        return ConfigError(where, "empty; give at least one entry")
    msg = re.sub(r" or instance of \w+", "", err["msg"].removeprefix("Value error, "))
    msg = msg[0].lower() + msg[1:]
    # Our own validators' messages already quote the offending value.
    return ConfigError(where, msg if err["type"] == "value_error" else f"{err.get('input')!r}: {msg}")


def parse_config(data: Any, source: str) -> ConfigFile:
    """Validate the shape of a loaded YAML document."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, "the file must be a mapping with a top-level 'benchmarks:' key")
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, source) from None


def load_config(path: str | Path) -> ConfigFile:
    path = Path(path)
    return parse_config(load_yaml(path), str(path))


def choose_benchmarks(config: ConfigFile, names: Sequence[str], source: str) -> list[str]:
    """The benchmarks a run asked for: ``names``, or the default one, or the only one."""
    for name in names:
        if name not in config.benchmarks:
            raise ConfigError(f"{source}: --benchmark", f"unknown benchmark {name!r}{suggest(name, config.benchmarks)}")
    if names:
        return list(dict.fromkeys(names))
    defaults = [n for n, b in config.benchmarks.items() if b.default]
    if defaults:
        return defaults
    if len(config.benchmarks) == 1:
        return list(config.benchmarks)
    raise ConfigError(
        source, "no benchmark has default: true; pick one with --benchmark" + suggest("", config.benchmarks)
    )
