"""The shape of one benchmark: datasets, model, priors × regularizers (or named models), β, seeds, training,
evaluators, claims and figures."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from harness.config.fields import FROZEN, Options, PositiveInt, as_list, named_options
from harness.config.names import names_of
from harness.errors import QUOTE_LIMIT, capped, quote, suggest
from harness.vgg19 import LAYERS as PERCEPTUAL_LAYERS
from harness.vgg19 import PAPER_LAYERS

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
        raise ValueError(f"{quote(value)}: unknown VGG19 layer{suggest(capped(str(value), QUOTE_LIMIT), PERCEPTUAL_LAYERS)}")
    return str(value)


class PerceptualConfig(BaseModel):
    """``model.perceptual``: add the VGG19 perceptual term (``harness.model.perceptual``) to the reconstruction loss."""

    model_config = FROZEN

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
    model_config = FROZEN

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
    model_config = FROZEN

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

    model_config = FROZEN

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

    model_config = FROZEN

    priors: Annotated[dict[str, Options], Field(min_length=1)]
    regularizers: Annotated[dict[str, Options], Field(min_length=1)]
    model: ModelOverride = Field(default_factory=ModelOverride)
    #: β values for this variant only (default: the benchmark's).
    beta: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] | None = None

    _named = field_validator("priors", "regularizers", mode="before")(classmethod(lambda cls, v: named_options(v)))
    _lists = field_validator("beta", mode="before")(classmethod(lambda cls, v: as_list(v)))


class Selector(BaseModel):
    """Which results a claim compares: a model variant (or prior/regularizer), a β, optionally a dataset (of a
    benchmark with several) and a metric."""

    model_config = FROZEN

    dataset: str | None = None
    model: str | None = None
    prior: str | None = None
    regularizer: str | None = None
    beta: Annotated[float, Field(ge=0)] | None = None
    metric: str | None = None


class Claim(BaseModel):
    """A statement of the paper, checked against the measured numbers in the leaderboard's Claims section.

    ``better``: side ``a`` beats side ``b`` on ``metric`` (in the metric's better direction).
    ``not_worse``: side ``a`` is not worse than side ``b`` on ``metric`` (non-inferiority: the test that ``b`` beats
    ``a`` is not significant).
    ``falls_as_beta_falls``: along ``a``'s β values, ``metric`` is better at the smallest β than at the largest.
    """

    model_config = FROZEN

    text: str
    kind: Literal["better", "not_worse", "falls_as_beta_falls"]
    metric: str | None = None
    a: Selector
    b: Selector | None = None

    @model_validator(mode="after")
    def _sides(self) -> Claim:
        if self.kind in ("better", "not_worse") and self.b is None:
            raise ValueError(f"a {self.kind!r} claim needs both sides a and b")
        if self.metric is None and (self.a.metric is None or (self.b is not None and self.b.metric is None)):
            raise ValueError("give the claim a metric (or one per side)")
        return self


class LatentFigures(BaseModel):
    """Which trained cell the latent-space figures (2-D latents, interpolations, attribute edits, PCA) show."""

    model_config = FROZEN

    model: str | None = None
    prior: str | None = None
    regularizer: str | None = None
    beta: Annotated[float, Field(ge=0)] | None = None
    seed: int = 0
    #: Test images per interpolation grid (pairs) and the number of steps along each path.
    pairs: Annotated[int, Field(ge=1, le=16)] = 4
    steps: Annotated[int, Field(ge=3, le=16)] = 8


class SubGrid(NamedTuple):
    """One grid of a benchmark: a named model's (``models:``), or the benchmark's own when it has no ``models``."""

    model_name: str | None
    priors: dict[str, Options]
    regularizers: dict[str, Options]
    model: ModelConfig
    betas: list[float]


class BenchmarkConfig(BaseModel):
    model_config = FROZEN

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
    #: Experiment trackers shown the run (tracker name -> options); never part of a cell's id.
    trackers: dict[str, Options] = Field(default_factory=dict)

    _named = field_validator("datasets", "priors", "regularizers", "evaluators", "trackers", mode="before")(
        classmethod(lambda cls, v: named_options(v))
    )
    _lists = field_validator("beta", "seeds", mode="before")(classmethod(lambda cls, v: as_list(v)))
    _variant_names = field_validator("models", mode="before")(names_of("model variant"))

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

    def sub_grids(self) -> list[SubGrid]:
        """Each priors × regularizers × β grid of this benchmark: one per named model, or one unnamed one."""
        if self.models is None:
            assert self.priors is not None and self.regularizers is not None
            return [SubGrid(None, self.priors, self.regularizers, self.model, list(self.beta))]
        out = []
        for name, v in self.models.items():
            override: dict[str, Any] = {k: getattr(v.model, k) for k in v.model.model_fields_set}
            # Only ``perceptual`` can be switched off with null; for the other keys null means "not given".
            override = {k: value for k, value in override.items() if value is not None or k == "perceptual"}
            model = self.model.model_copy(update=override)
            out.append(SubGrid(name, v.priors, v.regularizers, model, list(v.beta or self.beta)))
        return out
