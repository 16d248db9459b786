"""The adversarial (AAE) regularizer: its penalty moves only the encoder, its discriminator moves only in
``update``, it learns to separate prior samples from codes, it checkpoints its Adam, and it runs in a grid."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from harness import GaussianPosterior, Prior
from harness.cli import main
from harness.model.likelihoods import GaussianLikelihood
from harness.run.store import Store
from harness.model.train import Model, training_step
from harness_plugins.priors.gaussian import GaussianPrior
from harness_plugins.regularizers.adversarial import AdversarialRegularizer
from harness_plugins.regularizers.none import NoRegularizer

from conftest import write_config


class ShiftedPrior(Prior):
    """N(+3, 0.3²·I): a prior well away from codes placed at -3."""

    name = "shifted"

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return 3.0 + 0.3 * torch.randn(n, self.latent_dim)


class FittedAfterTraining(Prior):
    name = "afterwards"
    post_hoc = True


def _weights(module: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _model(regularizer: nn.Module) -> Model:
    torch.manual_seed(0)
    return Model(
        encoder=nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)),
        decoder=nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 6)),
        likelihood=GaussianLikelihood(0.1),
        prior=GaussianPrior(2),
        regularizer=regularizer,
        lr=0.01,
    )


def test_penalty_is_per_row_and_its_gradient_reaches_the_codes():
    reg = AdversarialRegularizer(hidden=16)
    z = torch.randn(8, 2, requires_grad=True)
    post = GaussianPosterior(torch.zeros(8, 2), torch.zeros(8, 2))
    penalty = reg.penalty(z, post, GaussianPrior(2))
    assert penalty.shape == (8,)
    penalty.sum().backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all()) and bool(z.grad.abs().sum() > 0)


def test_a_training_step_moves_the_discriminator_exactly_as_update_alone_would():
    x = torch.randn(32, 6)
    model = _model(AdversarialRegularizer(hidden=16))
    model.regularizer.update(torch.randn(32, 2), model.prior)  # warm up: built layers and Adam moments
    reference = copy.deepcopy(model)
    before = _weights(model.regularizer)

    torch.manual_seed(5)
    training_step(model, x, beta=10.0)  # a large β would show in the discriminator if L_φψ stepped it

    torch.manual_seed(5)
    mean, logvar = reference.encoder(x).chunk(2, dim=-1)
    codes = GaussianPosterior(mean, logvar).rsample().detach()
    reference.regularizer.update(codes, reference.prior)

    got, want = _weights(model.regularizer), _weights(reference.regularizer)
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    assert not all(torch.equal(g, b) for g, b in zip(got, before))


def test_the_penalty_changes_the_encoder_update_when_beta_is_positive():
    x = torch.randn(32, 6)
    updates = []
    for beta in (0.0, 1.0):
        model = _model(AdversarialRegularizer(hidden=16))
        torch.manual_seed(2)
        model.regularizer.update(torch.randn(32, 2), model.prior)
        torch.manual_seed(5)
        training_step(model, x, beta=beta)
        updates.append(_weights(model.encoder))
    assert not all(torch.equal(a, b) for a, b in zip(*updates))


def test_beta_zero_gives_the_same_encoder_decoder_updates_as_no_regularizer():
    x = torch.randn(32, 6)
    adversarial, plain = _model(AdversarialRegularizer(hidden=16)), _model(NoRegularizer())
    for step in range(3):
        for model in (adversarial, plain):
            torch.manual_seed(step)
            training_step(model, x, beta=0.0)
    for a, b in zip(adversarial.model_params(), plain.model_params()):
        assert torch.equal(a, b)


def test_discriminator_separates_prior_samples_from_codes_and_the_penalty_is_larger_on_codes():
    torch.manual_seed(0)
    prior, reg = ShiftedPrior(2), AdversarialRegularizer(hidden=32, lr=1e-3)
    codes = -3.0 + 0.3 * torch.randn(256, 2)
    for _ in range(100):
        logs = reg.update(codes, prior)
    assert set(logs) >= {"d_loss", "r1"} and all(isinstance(v, float) for v in logs.values())

    with torch.no_grad():
        real, fake = prior.sample(500), -3.0 + 0.3 * torch.randn(500, 2)
        accuracy = 0.5 * (float((reg.discriminator(real) > 0).float().mean()) +
                          float((reg.discriminator(fake) < 0).float().mean()))
        post = GaussianPosterior(torch.zeros(500, 2), torch.zeros(500, 2))
        on_codes, on_prior = reg.penalty(fake, post, prior).mean(), reg.penalty(real, post, prior).mean()
    assert accuracy > 0.95
    assert on_codes > on_prior


def test_checkpoint_round_trip_restores_the_discriminators_adam_moments(tmp_path):
    torch.manual_seed(0)
    prior, codes = GaussianPrior(2), torch.randn(64, 2) + 1.0
    original = AdversarialRegularizer(hidden=16)
    for _ in range(3):
        original.update(codes, prior)
    torch.save(original.state_dict(), tmp_path / "regularizer.pt")
    restored = AdversarialRegularizer(hidden=16)
    restored.load_state_dict(torch.load(tmp_path / "regularizer.pt", weights_only=True))
    control = AdversarialRegularizer(hidden=16)  # same weights, fresh Adam
    control.load_state_dict({k: v for k, v in original.state_dict().items() if "_extra_state" not in k}, strict=False)

    after = []
    for reg in (original, restored, control):
        torch.manual_seed(1)
        reg.update(codes, prior)
        after.append(_weights(reg))
    assert all(torch.equal(a, b) for a, b in zip(after[0], after[1]))
    assert not all(torch.equal(a, b) for a, b in zip(after[0], after[2])), "Adam moments made no difference"


def test_priors_fitted_after_training_are_incompatible_with_a_reason():
    assert AdversarialRegularizer.incompatibility(FittedAfterTraining) == (
        "prior 'afterwards' is fitted after training; the adversarial regularizer needs a prior to play against "
        "during training"
    )
    assert AdversarialRegularizer.incompatibility(GaussianPrior) is None


def test_data_dims_scale_multiplies_the_fooling_loss_by_the_number_of_data_dimensions():
    torch.manual_seed(0)
    scaled = AdversarialRegularizer(hidden=16, scale="data_dims")
    unscaled = AdversarialRegularizer(hidden=16, scale="none")
    z = torch.randn(8, 2)
    post = GaussianPosterior(torch.zeros(8, 2), torch.zeros(8, 2))
    unscaled_penalty = unscaled.penalty(z, post, GaussianPrior(2))  # builds the lazy layer
    scaled.load_state_dict(unscaled.state_dict())
    torch.testing.assert_close(scaled.penalty(z, post, GaussianPrior(2)), unscaled_penalty)  # unbound: D = 1
    scaled.bind_data_shape((1, 28, 28))
    unscaled.bind_data_shape((1, 28, 28))
    torch.testing.assert_close(scaled.penalty(z, post, GaussianPrior(2)), 784 * unscaled_penalty)
    torch.testing.assert_close(unscaled.penalty(z, post, GaussianPrior(2)), unscaled_penalty)


def test_build_model_tells_the_regularizer_the_data_shape_and_leaves_regularizers_without_the_hook_alone(tmp_path):
    from harness.config import load_config
    from harness.grid import expand
    from harness.registry import load_registry
    from harness.model.train import build_model

    cfg = write_config(tmp_path / "b.yaml", priors={"gaussian": {}}, regularizers=["adversarial", "kl"])
    registry = load_registry()
    cells = [c for c in expand("tiny", load_config(cfg).benchmarks["tiny"], registry, "b.yaml") if c.beta]
    models = {c.regularizer: build_model(c, registry, (1, 8, 8), torch.device("cpu")) for c in cells}
    assert models["adversarial"].regularizer.data_dims == 64
    assert models["adversarial"].regularizer.scale == "squared_error"
    # The tiny config's γ = 0.05: the fooling loss weighs 1/(2γ) = 10, as a unit of squared error does.
    assert models["adversarial"].regularizer.weight() == pytest.approx(10.0)
    assert not hasattr(models["kl"].regularizer, "data_dims")


def _penalty_per_unscaled(likelihood) -> float:
    """The squared_error penalty divided by the unscaled one, on the same critic and codes."""
    torch.manual_seed(0)
    scaled, unscaled = AdversarialRegularizer(hidden=16), AdversarialRegularizer(hidden=16, scale="none")
    z = torch.randn(8, 2)
    post = GaussianPosterior(torch.zeros(8, 2), torch.zeros(8, 2))
    reference = unscaled.penalty(z, post, GaussianPrior(2))
    scaled.load_state_dict(unscaled.state_dict())
    if likelihood is not None:
        scaled.bind_likelihood(likelihood)
    return float((scaled.penalty(z, post, GaussianPrior(2)) / reference).mean().detach())


def test_squared_error_scale_states_beta_in_the_units_of_the_gaussian_squared_error():
    from harness.model.likelihoods import BernoulliLikelihood

    # nll = ‖x − x̂‖²/(2γ) + const: one unit of squared error costs 1/(2γ), and so does one nat of fooling.
    assert _penalty_per_unscaled(GaussianLikelihood(0.01)) == pytest.approx(50.0)
    assert _penalty_per_unscaled(GaussianLikelihood(0.25)) == pytest.approx(2.0)
    assert _penalty_per_unscaled(BernoulliLikelihood()) == pytest.approx(1.0)  # its NLL is already the cost
    assert _penalty_per_unscaled(None) == pytest.approx(1.0)  # built by hand, never bound


def test_squared_error_scale_follows_a_learned_and_an_optimal_gamma_as_they_change():
    learned = GaussianLikelihood("learned")
    with torch.no_grad():
        learned.log_gamma.fill_(math.log(0.02))
    assert _penalty_per_unscaled(learned) == pytest.approx(25.0)
    optimal = GaussianLikelihood("optimal")
    assert _penalty_per_unscaled(optimal) == pytest.approx(1.0)  # before any batch: no γ* yet
    x = torch.zeros(4, 6)
    optimal.nll(x, x + 0.1)  # training mode: records γ* = 0.01 as the running γ
    assert _penalty_per_unscaled(optimal) == pytest.approx(50.0)


def test_the_bound_likelihood_stays_out_of_the_regularizers_parameters_and_checkpoint():
    reg = AdversarialRegularizer(hidden=16)
    reg.bind_likelihood(GaussianLikelihood("learned"))
    assert not any("log_gamma" in name for name in reg.state_dict())
    assert not any(p.ndim == 0 for p in reg.parameters())


def test_scale_is_a_resolved_option_so_it_changes_the_cell_id(tmp_path):
    from harness.config import load_config
    from harness.grid import expand
    from harness.registry import load_registry

    ids = {}
    for scale in ("squared_error", "data_dims", "none"):
        regularizers = {"adversarial": {"scale": scale}}
        cfg = write_config(tmp_path / f"{scale}.yaml", priors={"gaussian": {}}, regularizers=regularizers)
        cells = expand("tiny", load_config(cfg).benchmarks["tiny"], load_registry(), "b.yaml")
        assert {c.regularizer_options["scale"] for c in cells} == {scale}
        ids[scale] = {c.cell_id for c in cells}
    assert not ids["data_dims"] & ids["none"] and not ids["squared_error"] & ids["data_dims"]


@pytest.mark.parametrize(
    "options", [{"hidden": 0}, {"layers": 0}, {"lr": 0.0}, {"r1": -0.5}, {"d_steps": 0}, {"scale": "pixels"}]
)
def test_nonsense_options_raise_value_error(options):
    with pytest.raises(ValueError):
        AdversarialRegularizer(**options)


def test_a_run_over_gan_and_gaussian_priors_trains_every_cell_but_gan_kl_which_is_skipped(tmp_path):
    cfg = write_config(
        tmp_path / "b.yaml",
        priors={"gan": {"hidden": 32}, "gaussian": {}},
        regularizers=["adversarial", "kl", "none"],
    )
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    status = {(r.cell["prior"], r.cell["regularizer"]): r.to_json() for r in Store(out).results()}
    assert len(status) == 6
    assert status["gan", "kl"]["status"] == "skipped"
    assert "density" in status["gan", "kl"]["reason"]
    assert all(r["status"] == "done" for key, r in status.items() if key != ("gan", "kl"))
    assert [h["epoch"] for h in status["gan", "adversarial"]["history"]] == [1, 2]
