"""benchmarks.yaml -> validated, frozen config objects.

Validation happens here, at the boundary, in two passes: the file's shape (pydantic models below), then
everything that needs the plugins (names, plugin options, metrics) in ``harness.resolve``. Every problem is a
``ConfigError`` naming the file, the key path, the bad value and the valid choices.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails

from harness.model.perceptual import LAYERS as PERCEPTUAL_LAYERS
from harness.model.perceptual import PAPER_LAYERS


#: Longest value an error message quotes whole. A value pasted by mistake (a long list, a blob) is shown by its
#: start and its length, so the error stays one readable line and costs nothing to print.
QUOTE_LIMIT = 80
#: The most characters of a location or message an error line carries: the last guard for text quoted without
#: ``quote`` (a plugin's exception message, a name inside a key path).
_WHERE_LIMIT, _MESSAGE_LIMIT, _KNOWN_SHOWN = 300, 1500, 30


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} chars)"


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to its first ``limit`` characters plus its length when longer."""
    return _capped(repr(value), limit)


class ConfigError(Exception):
    """Bad input. Printed as ``error: <where>: <message>`` (plus an indented fix line), exit status 2."""

    def __init__(self, where: str, message: str, fix: str | None = None) -> None:
        where, message = _capped(where, _WHERE_LIMIT), _capped(message, _MESSAGE_LIMIT)
        fix = None if fix is None else _capped(fix, _MESSAGE_LIMIT)
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message
        self.fix = fix

    def render(self) -> str:
        text = f"error: {self}"
        return f"{text}\n  {self.fix}" if self.fix else text


def suggest(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?); known: a, b, c`` — the tail every unknown-name error ends with."""
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    hint = f" (did you mean {quote(close[0])}?)" if close else ""
    shown = [_capped(c, QUOTE_LIMIT) for c in choices[:_KNOWN_SHOWN]]
    more = f", … ({len(choices) - _KNOWN_SHOWN} more)" if len(choices) > _KNOWN_SHOWN else ""
    return f"{hint}; known: {', '.join(shown) + more if choices else '(none)'}"


def key_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        text = _capped(str(part), QUOTE_LIMIT)
        out += f"[{text}]" if isinstance(part, int) else (f".{text}" if out else text)
    return out


# --- names that become file and folder names ----------------------------------------------------------------

#: Benchmark, search and model-variant names end up in paths (leaderboards/<benchmark>/, <benchmark>-fid.png,
#: leaderboards/search-<search>/): a portable file name, never a path, so ``../x`` or ``/etc`` cannot steer a write.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}", re.ASCII)
NAME_RULE = "1-80 characters: letters, digits, '_', '.' and '-', starting with a letter or digit, without '..'"


def valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None and ".." not in name


def check_name(name: object, kind: str) -> None:
    """Raise ValueError unless ``name`` is a valid ``kind`` name (a benchmark, a search, a model variant)."""
    if not valid_name(name):
        raise ValueError(f"{quote(name)} is not a valid {kind} name; names are {NAME_RULE}")


def _names(kind: str) -> Any:
    """A before-validator of a mapping whose keys are ``kind`` names."""

    def check(cls: type, value: Any) -> Any:
        if isinstance(value, Mapping):
            for name in value:
                check_name(name, kind)
        return value

    return classmethod(check)


# --- YAML -------------------------------------------------------------------------------------------------


#: What a config file may ask of the loader. The repo's benchmarks.yaml is 14 KiB, 9 levels deep and ~25,000
#: nodes and characters with its anchors expanded; an 800-byte file of nested aliases ("billion laughs") expands
#: to billions, which every later step (validation, error messages, cell configs) would copy.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
#: Nodes plus scalar characters of the document with every alias and ``<<`` merge written out.
MAX_EXPANDED = 1 << 22


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        self.key, self.line = key, line


class _Refused(Exception):
    """The document is over one of the loader's bounds (depth, expanded size) or has no content."""

    def __init__(self, message: str, mark: yaml.Mark | None = None) -> None:
        self.message, self.line = message, None if mark is None else mark.line + 1


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``) and refuses
    documents nested deeper than MAX_DEPTH or larger than MAX_EXPANDED once aliases are expanded.

    Anchors, aliases and ``<<`` merges stay allowed (benchmarks.yaml shares settings with them); only their
    expanded size is bounded, on the composed node graph, before anything is constructed from it.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # The composer recurses once per level: stop long before Python's recursion limit would.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            raise _Refused("the file is empty (nothing but whitespace or comments); write a mapping with a "
                           "top-level 'benchmarks:' key")
        _expanded_size(node, 1, {}, set())
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges: keys written beside it override the merged ones
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class reports the unhashable key
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _expanded_size(node: yaml.Node, depth: int, memo: dict[int, tuple[int, int]], open_: set[int]) -> int:
    """Nodes plus scalar characters under ``node`` with aliases written out; _Refused over the bounds.

    An alias is the same node object as its anchor, so the graph is walked once per node (``memo``: size and
    height) and the expanded size is summed, not built. ``open_`` holds the nodes being walked: an alias to one of
    them is a cycle (``&a [*a]``), which no config needs.
    """
    key = id(node)
    if key in memo:
        size, height = memo[key]
        if depth + height > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded", node.start_mark)
        return size
    if key in open_:
        raise _Refused("an alias refers to a node that contains it (a cycle)", node.start_mark)
    if depth > MAX_DEPTH:
        raise _Refused(f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded", node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        memo[key] = (1 + len(node.value), 0)
        return memo[key][0]
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
    open_.add(key)
    size, height = 1, 0
    for child in children:
        size += _expanded_size(child, depth + 1, memo, open_)
        height = max(height, memo[id(child)][1] + 1)
        if size > MAX_EXPANDED:
            raise _Refused(
                f"its aliases expand to more than {MAX_EXPANDED:,} nodes and characters (nested aliases that "
                "multiply, as in a 'billion laughs' file); write the values out or alias less deeply",
                child.start_mark,
            )
    open_.discard(key)
    memo[key] = (size, height)
    return size


def _read_text(path: Path) -> str:
    """The file as text: at most MAX_FILE_BYTES of UTF-8, else a ConfigError saying what is wrong with it."""
    if not path.exists():
        raise ConfigError(str(path), "no such config file")
    if not path.is_file():
        raise ConfigError(str(path), "not a file (a folder?); give the path of a benchmarks YAML file")
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
            size = max(len(data), path.stat().st_size)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the file: {exc.strerror or exc}") from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(str(path), f"the file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte (1 MiB) limit "
                          "for a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: byte {exc.start} (line {line})",
                          f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None


def load_yaml(path: Path) -> Any:
    text = _read_text(path)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: line {exc.line}", f"duplicate key {quote(exc.key)} (each key may appear once)") from None
    except _Refused as exc:
        raise ConfigError(f"{path}: line {exc.line}" if exc.line else str(path), exc.message) from None
    except yaml.reader.ReaderError as exc:  # a control character: no mark, and its text names "<unicode string>"
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{path}: line {line}", f"invalid YAML: character #x{exc.character:04x} is not allowed "
                          "(control characters cannot appear in YAML)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}: line {mark.line + 1} column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(where, f"invalid YAML: {' '.join(str(problem).split())}") from None
    except (ValueError, OverflowError) as exc:
        # A scalar the resolver took for a date or number but that is none (``2024-13-45``, 5,000 digits).
        raise ConfigError(str(path), f"invalid YAML value: {' '.join(str(exc).split())}") from None


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


#: Adam learning rate of log γ for ``gamma: learned`` unless ``model.gamma_lr`` says otherwise: fast enough to go
#: from γ = 1 to γ ≈ MSE ≈ 0.01 (Δ log γ ≈ 4.6) in ~250 steps, small enough to sit within ~2 % of it after.
DEFAULT_GAMMA_LR = 0.02


def _gamma(value: Any) -> float | str:
    if value in ("learned", "optimal"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{quote(value)}: gamma must be a number > 0 or 'learned' or 'optimal'")
    return float(value)


def _vgg_layer(value: Any) -> str:
    if not isinstance(value, str) or value not in PERCEPTUAL_LAYERS:
        raise ValueError(f"{quote(value)}: unknown VGG19 layer{suggest(_capped(str(value), QUOTE_LIMIT), PERCEPTUAL_LAYERS)}")
    return str(value)


class PerceptualConfig(BaseModel):
    """``model.perceptual``: add the VGG19 perceptual term (``harness.model.perceptual``) to the reconstruction loss."""

    model_config = _FROZEN

    #: Scale of the term; 1 puts each layer on the scale of the summed pixel NLL at γ = 1.
    weight: Annotated[float, Field(gt=0)] = 1.0
    layers: Annotated[list[Annotated[str, BeforeValidator(_vgg_layer)]], Field(min_length=1)] = Field(
        default_factory=lambda: list(PAPER_LAYERS)
    )
    #: The VGG19 weights file; default: vgg19-dcbb9e9d.pth in torch.hub's checkpoint folder.
    weights_path: str | None = None
    #: Fetch the weights into torch.hub's checkpoint folder when they are missing (needs the network).
    download: bool = False


class ModelConfig(BaseModel):
    model_config = _FROZEN

    architecture: str = "mlp"
    #: Options of the architecture plugin (validated against it). Lists here are values, not grid axes.
    architecture_options: Options = Field(default_factory=dict)
    latent_dim: PositiveInt = 8
    likelihood: Literal["gaussian", "bernoulli"] = "gaussian"
    #: Decoder variance γ of the Gaussian likelihood N(x | Dψ(z), γI): a fixed value, "learned" (Dai & Wipf 2019)
    #: or "optimal" (σ-VAE: γ = the batch MSE, in closed form).
    gamma: Annotated[float | str, BeforeValidator(_gamma)] = 1.0
    #: Learning rate of a learned log γ (its own Adam group). Unset: DEFAULT_GAMMA_LR for ``gamma: learned``,
    #: written into the cell config (so learned-γ cells record it and their ids say which behaviour they had);
    #: absent for other γ, whose cells keep their ids.
    gamma_lr: Annotated[float, Field(gt=0)] | None = None
    #: Off unless given (and then absent from the cell config, so cells without it keep their ids).
    perceptual: PerceptualConfig | None = None

    @model_serializer(mode="wrap")
    def _resolved_gamma_lr(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # At dump time, not validation: a variant's model is a model_copy(update=...), which skips validators.
        out = handler(self)
        if out.get("gamma") == "learned" and out.get("gamma_lr") is None:
            out["gamma_lr"] = DEFAULT_GAMMA_LR
        return out


class TrainConfig(BaseModel):
    model_config = _FROZEN

    epochs: PositiveInt = 20
    batch_size: PositiveInt = 128
    lr: Annotated[float, Field(gt=0)] = 1e-3
    #: Learning rate of the prior's parameters θ; defaults to ``lr``.
    prior_lr: Annotated[float, Field(gt=0)] | None = None
    #: Optimizer steps of the prior θ per autoencoder step, all on the batch's codes (a GAN prior needs more
    #: steps than the autoencoder takes to keep up with the codes it chases).
    prior_steps: PositiveInt = 1
    #: On CUDA, run the encoder and decoder under bf16 autocast (loss terms stay float32). No effect on CPU.
    autocast: bool = True
    #: ``torch.compile`` the encoder and decoder (pays a compile time per cell; worth it for long cells).
    compile: bool = False

    @model_serializer(mode="wrap")
    def _without_default_prior_steps(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Cells hash their dumped train config: one prior step (the only behaviour before the key existed) leaves
        # no key behind, so cells trained before it keep their ids.
        out = handler(self)
        if out.get("prior_steps") == 1:
            del out["prior_steps"]
        return out


class ModelOverride(BaseModel):
    """Keys of ``model:`` that a named model variant changes."""

    model_config = _FROZEN

    architecture: str | None = None
    architecture_options: Options | None = None
    latent_dim: PositiveInt | None = None
    likelihood: Literal["gaussian", "bernoulli"] | None = None
    gamma: Annotated[float | str, BeforeValidator(_gamma)] | None = None
    gamma_lr: Annotated[float, Field(gt=0)] | None = None
    #: ``perceptual: null`` switches off a perceptual term the benchmark's ``model:`` sets.
    perceptual: PerceptualConfig | None = None


class ModelVariant(BaseModel):
    """A named sub-grid (e.g. "flow-vae": realnvp × kl), crossed with the benchmark's datasets, β and seeds."""

    model_config = _FROZEN

    priors: Annotated[dict[str, Options], Field(min_length=1)]
    regularizers: Annotated[dict[str, Options], Field(min_length=1)]
    model: ModelOverride = Field(default_factory=ModelOverride)
    #: β values for this variant only (default: the benchmark's).
    beta: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] | None = None

    _named = field_validator("priors", "regularizers", mode="before")(classmethod(lambda cls, v: _named_options(v)))
    _lists = field_validator("beta", mode="before")(classmethod(lambda cls, v: _as_list(v)))


class Selector(BaseModel):
    """Which results a claim compares: a model variant (or prior/regularizer), a β, and optionally a metric."""

    model_config = _FROZEN

    model: str | None = None
    prior: str | None = None
    regularizer: str | None = None
    beta: Annotated[float, Field(ge=0)] | None = None
    metric: str | None = None


class Claim(BaseModel):
    """A statement of the paper, checked against the measured numbers in the leaderboard's Claims section.

    ``better``: side ``a`` beats side ``b`` on ``metric`` (in the metric's better direction).
    ``falls_as_beta_falls``: along ``a``'s β values, ``metric`` is better at the smallest β than at the largest.
    """

    model_config = _FROZEN

    text: str
    kind: Literal["better", "falls_as_beta_falls"]
    metric: str | None = None
    a: Selector
    b: Selector | None = None

    @model_validator(mode="after")
    def _sides(self) -> Claim:
        if self.kind == "better" and self.b is None:
            raise ValueError("a 'better' claim needs both sides a and b")
        if self.metric is None and (self.a.metric is None or (self.b is not None and self.b.metric is None)):
            raise ValueError("give the claim a metric (or one per side)")
        return self


class LatentFigures(BaseModel):
    """Which trained cell the latent-space figures (2-D latents, interpolations, attribute edits, PCA) show."""

    model_config = _FROZEN

    model: str | None = None
    prior: str | None = None
    regularizer: str | None = None
    beta: Annotated[float, Field(ge=0)] | None = None
    seed: int = 0
    #: Test images per interpolation grid (pairs) and the number of steps along each path.
    pairs: Annotated[int, Field(ge=1, le=16)] = 4
    steps: Annotated[int, Field(ge=3, le=16)] = 8


class BenchmarkConfig(BaseModel):
    model_config = _FROZEN

    default: bool = False
    description: str = ""
    #: Expected cost, for people choosing what to run (free text, e.g. "about 1 h on 2 CPU cores").
    cost: str = ""
    datasets: Annotated[dict[str, Options], Field(min_length=1)]
    model: ModelConfig = Field(default_factory=ModelConfig)
    #: prior name -> options; a list-valued option is a grid axis (write [[...]] for one list value).
    priors: Annotated[dict[str, Options], Field(min_length=1)] | None = None
    regularizers: Annotated[dict[str, Options], Field(min_length=1)] | None = None
    #: Named model variants instead of one priors × regularizers grid (each its own sub-grid and model keys).
    models: Annotated[dict[str, ModelVariant], Field(min_length=1)] | None = None
    claims: list[Claim] = Field(default_factory=list)
    #: Draw the latent-space figures from one trained cell (see LatentFigures).
    latent_figures: LatentFigures | None = None
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
    _variant_names = field_validator("models", mode="before")(_names("model variant"))

    @field_validator("beta", "seeds")
    @classmethod
    def _no_repeats(cls, value: list[Any]) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError(f"repeated values in {quote(value)}")
        return value

    @model_validator(mode="after")
    def _one_grid(self) -> BenchmarkConfig:
        if self.models is None and (self.priors is None or self.regularizers is None):
            raise ValueError("give priors and regularizers, or named models")
        if self.models is not None and (self.priors is not None or self.regularizers is not None):
            raise ValueError("give either priors and regularizers or named models, not both")
        return self

    def variants(self) -> list[tuple[str | None, dict[str, Options], dict[str, Options], ModelConfig, list[float]]]:
        """(name, priors, regularizers, model, betas) of each sub-grid; one unnamed one without ``models``."""
        if self.models is None:
            assert self.priors is not None and self.regularizers is not None
            return [(None, self.priors, self.regularizers, self.model, list(self.beta))]
        out = []
        for name, v in self.models.items():
            override: dict[str, Any] = {k: getattr(v.model, k) for k in v.model.model_fields_set}
            # Only ``perceptual`` can be switched off with null; for the other keys null means "not given".
            override = {k: value for k, value in override.items() if value is not None or k == "perceptual"}
            model = self.model.model_copy(update=override)
            out.append((name, v.priors, v.regularizers, model, list(v.beta or self.beta)))
        return out


class SearchParam(BaseModel):
    """One searched value: a range (``low``/``high``, float or int, ``log: true`` for log-uniform) or ``choices``."""

    model_config = _FROZEN

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
    model_config = _FROZEN

    #: A metric of the benchmark's evaluators, e.g. ``fid`` or ``reconstruction.mse``.
    metric: str
    #: Default: the metric's own direction (lower-is-better metrics are minimised).
    direction: Literal["minimize", "maximize"] | None = None


class SearchPruner(BaseModel):
    """The median pruner: a trial stops when its per-epoch value is worse than the median of earlier trials'."""

    model_config = _FROZEN

    enabled: bool = True
    #: Never prune before this many trials have finished.
    startup_trials: Annotated[int, Field(ge=0)] = 3
    #: Never prune a trial in its first ``warmup_epochs`` epochs.
    warmup_epochs: Annotated[int, Field(ge=0)] = 1


class SearchSampler(BaseModel):
    """The TPE sampler: random for the first ``startup_trials`` trials, then guided by the finished ones."""

    model_config = _FROZEN

    seed: Annotated[int, Field(ge=0)] = 0
    startup_trials: Annotated[int, Field(ge=0)] = 10


class SearchHeartbeat(BaseModel):
    """Database storage only: a trial whose worker stops beating for ``grace`` seconds is failed and retried."""

    model_config = _FROZEN

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
    value = _named_options(value)
    if isinstance(value, dict) and len(value) > 1:
        names = _capped(", ".join(map(str, value)), QUOTE_LIMIT)
        raise ValueError(f"{names}: a search has one; give a name or {{name: {{options}}}}")
    return value


class SearchConfig(BaseModel):
    """An Optuna search over one prior and regularizer of a benchmark (checked against the plugins by
    ``harness.search.resolve``)."""

    model_config = _FROZEN

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
    _evaluators = field_validator("evaluators", mode="before")(classmethod(lambda cls, v: _named_options(v)))
    _objective = field_validator("objective", mode="before")(
        classmethod(lambda cls, v: {"metric": v} if isinstance(v, str) else v)
    )


class ConfigFile(BaseModel):
    model_config = _FROZEN

    benchmarks: Annotated[dict[str, BenchmarkConfig], Field(min_length=1)]
    #: Optuna searches (``harness search``); checked against the benchmarks and plugins by ``harness.search``.
    searches: dict[str, SearchConfig] = Field(default_factory=dict)

    _benchmark_names = field_validator("benchmarks", mode="before")(_names("benchmark"))
    _search_names = field_validator("searches", mode="before")(_names("search"))

    @field_validator("benchmarks")
    @classmethod
    def _one_default(cls, value: dict[str, BenchmarkConfig]) -> dict[str, BenchmarkConfig]:
        defaults = [name for name, b in value.items() if b.default]
        if len(defaults) > 1:
            raise ValueError(f"more than one benchmark has default: true ({', '.join(defaults)}); keep one")
        return value


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` as ``X`` (pydantic reports an optional section's keys without the
    union's branch in the path)."""
    while True:
        if getattr(annotation, "__metadata__", None) is not None:
            annotation = annotation.__origin__
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            branches = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(branches) != 1:
                return annotation
            annotation = branches[0]
        else:
            return annotation


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
        current = _unwrap(current)
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
        return ConfigError(f"{source}: {key_path(loc)}", f"unknown key {quote(key)}{suggest(key, _fields_at(ConfigFile, loc[:-1]))}")
    if err["type"] == "missing":
        return ConfigError(f"{source}: {key_path(loc)}", "required key is missing")
    where = f"{source}: {key_path(loc)}" if loc else source
    if err["type"] == "too_short":  # pydantic's text says "dictionary" for a list the user wrote
        return ConfigError(where, "empty; give at least one entry")
    msg = re.sub(r" or instance of \w+", "", err["msg"].removeprefix("Value error, "))
    msg = msg[0].lower() + msg[1:]
    # Our own validators' messages already quote the offending value.
    return ConfigError(where, msg if err["type"] == "value_error" else f"{quote(err.get('input'))}: {msg}")


def parse_config(data: Any, source: str) -> ConfigFile:
    """Validate the shape of a loaded YAML document."""
    if not isinstance(data, Mapping):
        what = {list: "a list", str: "a string", bool: "true or false", int: "a number", float: "a number"}.get(
            type(data), "null" if data is None else f"a {type(data).__name__}")
        raise ConfigError(source, f"the top level is {what}; the file must be a mapping with a top-level 'benchmarks:' key")
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
