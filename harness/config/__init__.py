"""benchmarks.yaml -> validated, frozen config objects.

Validation happens at the boundary, in two passes: the file's shape (the schemas in this package), then everything
that needs the plugins (names, plugin options, metrics) in ``harness.grid`` and ``harness.search.space``. Every
problem is a ``ConfigError`` (``harness.errors``) naming the file, the key path, the bad value and the valid choices.

- ``strict_yaml``: bounded, strict YAML reading;
- ``benchmark`` and ``search``: the two schemas, on the shared ``fields``; ``names``: names that become paths;
- ``translate``: pydantic's errors as one ConfigError; ``file``: the whole file, loaded and validated.
"""

from __future__ import annotations

from harness.config.benchmark import (
    DEFAULT_GAMMA_LR,
    BenchmarkConfig,
    Claim,
    LatentFigures,
    ModelConfig,
    ModelOverride,
    ModelVariant,
    PerceptualConfig,
    Selector,
    SubGrid,
    TrainConfig,
)
from harness.config.fields import Options
from harness.config.file import ConfigFile, choose_benchmarks, load_config, parse_config
from harness.config.names import NAME_RULE, check_name, valid_name
from harness.config.search import (
    SearchConfig,
    SearchHeartbeat,
    SearchObjective,
    SearchParam,
    SearchPruner,
    SearchSampler,
)
from harness.config.strict_yaml import MAX_DEPTH, MAX_EXPANDED, MAX_FILE_BYTES, load_yaml
from harness.errors import QUOTE_LIMIT, ConfigError, first_error, key_path, quote, suggest

__all__ = [
    "DEFAULT_GAMMA_LR", "MAX_DEPTH", "MAX_EXPANDED", "MAX_FILE_BYTES", "NAME_RULE", "QUOTE_LIMIT", "BenchmarkConfig",
    "Claim", "ConfigError", "ConfigFile", "LatentFigures", "ModelConfig", "ModelOverride", "ModelVariant", "Options",
    "PerceptualConfig", "SearchConfig", "SearchHeartbeat", "SearchObjective", "SearchParam", "SearchPruner",
    "SearchSampler", "Selector", "SubGrid", "TrainConfig", "check_name", "choose_benchmarks", "first_error",
    "key_path", "load_config", "load_yaml", "parse_config", "quote", "suggest", "valid_name",
]  # fmt: skip
