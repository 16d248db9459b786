"""A whole benchmarks.yaml: its benchmarks and searches, loaded, validated, and the benchmarks a run asked for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from harness.config.benchmark import BenchmarkConfig
from harness.config.fields import FROZEN
from harness.config.names import NAME_RULE, names_of, valid_name
from harness.config.search import SearchConfig
from harness.config.strict_yaml import load_yaml
from harness.config.translate import explain
from harness.errors import ConfigError, quote, suggest

class ConfigFile(BaseModel):
    model_config = FROZEN

    benchmarks: Annotated[dict[str, BenchmarkConfig], Field(min_length=1)]
    #: Optuna searches (``harness search``); checked against the benchmarks and plugins by ``harness.search``.
    searches: dict[str, SearchConfig] = Field(default_factory=dict)

    _benchmark_names = field_validator("benchmarks", mode="before")(names_of("benchmark"))
    _search_names = field_validator("searches", mode="before")(names_of("search"))

    @field_validator("benchmarks")
    @classmethod
    def _one_default(cls, value: dict[str, BenchmarkConfig]) -> dict[str, BenchmarkConfig]:
        defaults = [name for name, b in value.items() if b.default]
        if len(defaults) > 1:
            raise ValueError(f"more than one benchmark has default: true ({', '.join(defaults)}); keep one")
        return value


def parse_config(data: Any, source: str) -> ConfigFile:
    """Validate the shape of a loaded YAML document."""
    if not isinstance(data, Mapping):
        what = {list: "a list", str: "a string", bool: "true or false", int: "a number", float: "a number"}.get(
            type(data), "null" if data is None else f"a {type(data).__name__}")
        raise ConfigError(source, f"the top level is {what}; the file must be a mapping with a top-level 'benchmarks:' key")
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise explain(exc, source, ConfigFile) from None


def load_config(path: str | Path) -> ConfigFile:
    path = Path(path)
    return parse_config(load_yaml(path), str(path))


def choose_benchmarks(config: ConfigFile, names: Sequence[str], source: str) -> list[str]:
    """The benchmarks a run asked for: ``names``, or the default one, or the only one."""
    for name in names:
        if not valid_name(name):  # a name is a folder under --out: never a path
            raise ConfigError(f"{source}: --benchmark", f"{quote(name)} is not a valid benchmark name; names are {NAME_RULE}")
        if name not in config.benchmarks:
            raise ConfigError(f"{source}: --benchmark", f"unknown benchmark {quote(name)}{suggest(name, config.benchmarks)}")
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
