"""The GAN prior (Prior-AAE): it learns a multimodal code distribution, trains only its generator through the
harness, steps its own discriminator inside ``fit_loss``, and keeps that discriminator's Adam in checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from harness_plugins.priors.gan import GANPrior
from harness_plugins.regularizers.adversarial import AdversarialRegularizer
from harness_plugins.regularizers.kl import KLRegularizer

CENTERS = torch.stack([2 * torch.cos(torch.arange(8) * math.pi / 4), 2 * torch.sin(torch.arange(8) * math.pi / 4)], 1)


def _eight_gaussians(n: int, generator: torch.Generator) -> Tensor:
    """8 modes on a circle of radius 2, std 0.05: codes a unimodal prior cannot fit."""
    mode = torch.randint(0, 8, (n,), generator=generator)
    return CENTERS[mode] + 0.05 * torch.randn(n, 2, generator=generator)


def _mmd(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)) -> float:
    """Biased MMD² with a sum of RBF kernels, so both fine (per-mode) and coarse (ring) structure count."""
    xy = torch.cat([x, y])
    sq = torch.cdist(xy, xy).pow(2)
    k = sum(torch.exp(-sq / (2 * b * b)) for b in bandwidths)
    n = x.shape[0]
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())


def _weights(module: torch.nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _fit_alone(prior: GANPrior, codes: Tensor, steps: int) -> None:
    opt = torch.optim.Adam(prior.fit_parameters(), lr=1e-3)  # what the harness does with θ (prior_lr = lr)
    for _ in range(steps):
        loss = prior.fit_loss(codes[torch.randint(0, len(codes), (128,))])
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=prior.fit_parameters())
        opt.step()


def _mode_shares(prior: GANPrior) -> Tensor:
    with torch.no_grad():
        samples = prior.sample(2000)
    dist, nearest = torch.cdist(samples, CENTERS).min(dim=1)
    return torch.bincount(nearest[dist < 0.5], minlength=8).float() / len(samples)


def test_default_options_cover_eight_gaussian_codes_within_a_short_run_where_the_old_defaults_collapse():
    # 300 generator steps is about what the quick benchmark gives the prior (30 epochs of digits). With D at lr 2e-4
    # and one D step per generator step (the defaults before) the generator collapsed there onto 2-4 of 10 digits.
    data = torch.Generator().manual_seed(0)
    codes = _eight_gaussians(4000, data)
    shares = {}
    for label, options in (("default", {}), ("old", {"lr": 2e-4, "d_steps": 1})):
        torch.manual_seed(0)
        prior = GANPrior(latent_dim=2, hidden=64, **options)
        _fit_alone(prior, codes, 300)
        shares[label] = _mode_shares(prior)
    covered = {label: int((share >= 0.03).sum()) for label, share in shares.items()}
    assert covered["default"] >= 7, f"the defaults drop modes: {shares['default'].tolist()}"
    assert covered["old"] < covered["default"], f"the control should collapse: {shares['old'].tolist()}"


def test_generator_fitted_to_eight_gaussian_codes_covers_every_mode_and_beats_standard_normal_in_mmd():
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(0)
    codes, held_out = _eight_gaussians(4000, data), _eight_gaussians(2000, data)
    prior = GANPrior(latent_dim=2)
    _fit_alone(prior, codes, 600)

    with torch.no_grad():
        samples = prior.sample(2000)
    share = _mode_shares(prior)
    assert bool((share >= 0.03).all()), f"a mode is (nearly) dropped: {share.tolist()}"
    assert float(share.sum()) >= 0.5, "most samples should land on a mode, not between them"
    gan, gaussian = _mmd(samples, held_out), _mmd(torch.randn(2000, 2), held_out)
    assert gan < 0.6 * gaussian, (gan, gaussian)


def test_fit_parameters_are_the_generator_only():
    prior = GANPrior(latent_dim=3)
    theta = {id(p) for p in prior.fit_parameters()}
    assert theta == {id(p) for p in prior.generator.parameters()}
    assert theta.isdisjoint(id(p) for p in prior.discriminator.parameters())


def test_fit_loss_steps_its_own_discriminator_and_leaves_the_generator_to_the_harness():
    torch.manual_seed(0)
    prior = GANPrior(latent_dim=3, hidden=16)
    gen, disc = _weights(prior.generator), _weights(prior.discriminator)
    loss = prior.fit_loss(torch.randn(64, 3) + 2.0)
    assert all(not torch.equal(a, b) for a, b in zip(disc, _weights(prior.discriminator)))
    assert all(torch.equal(a, b) for a, b in zip(gen, _weights(prior.generator)))
    # The generator's loss reaches θ (it depends on G) and a harness step moves only θ.
    opt = torch.optim.Adam(prior.fit_parameters(), lr=1e-3)
    disc_after_own_step = _weights(prior.discriminator)
    loss.backward(inputs=prior.fit_parameters())
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in prior.fit_parameters())
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(gen, _weights(prior.generator)))
    assert all(torch.equal(a, b) for a, b in zip(disc_after_own_step, _weights(prior.discriminator)))


def test_gradients_a_plain_backward_leaves_on_the_discriminator_do_not_leak_into_its_next_step():
    torch.manual_seed(0)
    codes = torch.randn(64, 2)
    careless = GANPrior(latent_dim=2, hidden=16)
    careful = GANPrior(latent_dim=2, hidden=16)
    careful.load_state_dict(careless.state_dict())
    for prior in (careless, careful):
        torch.manual_seed(1)
        loss = prior.fit_loss(codes)
        if prior is careless:
            loss.backward()  # no inputs=: the generator's loss also fills the discriminator's .grad
        torch.manual_seed(2)
        prior.fit_loss(codes)
    assert any(p.grad is not None for p in careless.discriminator.parameters())
    assert all(torch.equal(a, b) for a, b in zip(_weights(careless.discriminator), _weights(careful.discriminator)))


def test_eval_mode_fit_loss_scores_the_generator_without_stepping_the_discriminator():
    prior = GANPrior(latent_dim=2, hidden=16).eval()
    disc = _weights(prior.discriminator)
    assert torch.isfinite(prior.fit_loss(torch.randn(32, 2)))
    assert all(torch.equal(a, b) for a, b in zip(disc, _weights(prior.discriminator)))


def test_gan_has_no_density_so_kl_is_skipped_with_a_reason_but_adversarial_is_allowed():
    assert "density" in KLRegularizer.incompatibility(GANPrior)
    assert AdversarialRegularizer.incompatibility(GANPrior) is None
    with pytest.raises(NotImplementedError):
        GANPrior(latent_dim=2).log_prob(torch.zeros(4, 2))


def test_samples_come_out_on_the_priors_dtype_and_shape():
    prior = GANPrior(latent_dim=5, noise_dim=3).double()
    z = prior.sample(7)
    assert z.shape == (7, 5) and z.dtype == torch.float64


def test_checkpoint_round_trip_restores_the_discriminators_adam_moments(tmp_path):
    torch.manual_seed(0)
    codes = torch.randn(64, 2)
    original = GANPrior(latent_dim=2, hidden=16)
    for _ in range(3):
        original.fit_loss(codes)
    torch.save(original.state_dict(), tmp_path / "prior.pt")
    restored = GANPrior(latent_dim=2, hidden=16)
    restored.load_state_dict(torch.load(tmp_path / "prior.pt", weights_only=True))
    weights_only_copy = GANPrior(latent_dim=2, hidden=16)  # same weights, fresh Adam: the control
    weights_only_copy.load_state_dict({k: v for k, v in original.state_dict().items() if "_extra_state" not in k},
                                      strict=False)

    after = []
    for prior in (original, restored, weights_only_copy):
        torch.manual_seed(1)
        prior.fit_loss(codes)
        after.append(_weights(prior.discriminator))
    assert all(torch.equal(a, b) for a, b in zip(after[0], after[1]))
    assert not all(torch.equal(a, b) for a, b in zip(after[0], after[2])), "Adam moments made no difference"


@pytest.mark.parametrize(
    "options",
    [{"hidden": 0}, {"layers": 0}, {"noise_dim": 0}, {"lr": 0.0}, {"lr": -1e-3}, {"r1": -1.0}, {"d_steps": 0}],
)
def test_nonsense_options_raise_value_error(options):
    with pytest.raises(ValueError):
        GANPrior(latent_dim=2, **options)


def test_minibatch_std_appends_the_batch_spread_averaged_over_features():
    from harness_plugins.adversarial_common import MinibatchStd

    h = torch.randn(16, 5)
    out = MinibatchStd()(h)
    expected = h.numpy().std(axis=0).mean()  # numpy's std is the population one, as Karras et al. use
    assert out.shape == (16, 6)
    torch.testing.assert_close(out[:, :5], h)
    torch.testing.assert_close(out[:, 5], torch.full((16,), float(expected)))
    assert float(MinibatchStd()(h[:1])[0, 5]) == 0.0  # one row has no spread, and no NaN


def test_only_a_minibatch_std_discriminator_tells_a_batch_of_one_repeated_code_from_real_codes():
    # Fake batches are one N(0, I) point repeated: row by row they are distributed as the real codes, so a
    # discriminator that judges rows one at a time cannot tell them apart, while the batch's spread (0 vs ~1) can.
    from harness_plugins.adversarial_common import LatentDiscriminator

    gaps = {}
    for minibatch_std in (False, True):
        torch.manual_seed(0)
        disc = LatentDiscriminator(2, 32, 2, 1e-2, 1.0, minibatch_std=minibatch_std)
        for _ in range(300):
            logs = disc.step(real=torch.randn(64, 2), fake=torch.randn(1, 2).expand(64, 2))
        gaps[minibatch_std] = logs["d_real"] - logs["d_fake"]
    assert gaps[True] > 0.25, gaps
    assert abs(gaps[False]) < 0.1, gaps


def test_minibatch_std_is_an_option_of_the_gan_prior_and_off_by_default_in_the_shared_discriminator():
    from harness_plugins.adversarial_common import LatentDiscriminator, MinibatchStd

    assert not any(isinstance(m, MinibatchStd) for m in LatentDiscriminator(2, 8, 1, 1e-3, 1.0).modules())
    prior = GANPrior(latent_dim=2, hidden=8, minibatch_std=True)
    assert any(isinstance(m, MinibatchStd) for m in prior.discriminator.modules())
    assert prior.fit_loss(torch.randn(32, 2)).shape == ()
