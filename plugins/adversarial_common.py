"""What the two adversarial plugins share: a latent discriminator that trains itself, and the encoder/generator loss.

Used by the ``gan`` prior (``priors/gan.py``) and the ``adversarial`` regularizer (``regularizers/adversarial.py``).
A plain helper module, not a plugin: it registers nothing and has no entry point.

The game is the non-saturating logistic GAN of Goodfellow et al. (2014) with an R1 penalty on the real side
(Mescheder et al. 2018, "Which training methods for GANs do actually converge?"):

    discriminator:  softplus(-D(real)) + softplus(D(fake)) + r1/2 · ‖∇_x D(real)‖²      (D = logit)
    player:         softplus(-D(x))  =  -log σ(D(x))                                      per row
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

#: Adam as in most GAN work since DCGAN: a low first-moment decay keeps the critic responsive to a moving target.
BETAS = (0.5, 0.999)


# The discriminator options both adversarial plugins take, with their ranges declared once: the YAML is checked
# against them before anything trains, and ``harness.api.checked_options`` checks direct construction.
HiddenWidth = Annotated[int, Field(ge=1)]
HiddenLayers = Annotated[int, Field(ge=1, description="a discriminator without a hidden layer is linear")]
LearningRate = Annotated[float, Field(gt=0)]
R1Weight = Annotated[float, Field(ge=0, description="0 turns the gradient penalty off")]
DiscriminatorSteps = Annotated[int, Field(ge=1)]


def mlp(in_dim: int | None, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` (>= 1) hidden layers of width ``hidden``, LeakyReLU(0.2); ``in_dim=None`` infers it on first use."""
    first: nn.Module = nn.LazyLinear(hidden) if in_dim is None else nn.Linear(in_dim, hidden)
    modules: list[nn.Module] = [first, nn.LeakyReLU(0.2)]
    for _ in range(layers - 1):
        modules += [nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)]
    modules.append(nn.Linear(hidden, out_dim))
    return nn.Sequential(*modules)


def fooling_loss(logits: Tensor) -> Tensor:
    """The player's non-saturating loss per row, -log D(x) = softplus(-logit): large where D says "fake"."""
    return F.softplus(-logits)


class MinibatchStd(nn.Module):
    """Appends one feature to every row: the batch's standard deviation, averaged over features [B, F] -> [B, F + 1].

    The minibatch standard deviation of Karras et al. (2018, "Progressive growing of GANs", §3), over the whole
    batch as one group: a discriminator that sees how spread out a batch is can tell a generator that puts every
    sample in a few modes from the real codes, so the generator's loss rewards covering them all.
    """

    def forward(self, h: Tensor) -> Tensor:
        spread = h.std(dim=0, unbiased=False).mean() if len(h) > 1 else h.new_zeros(())
        return torch.cat([h, spread.expand(len(h), 1)], dim=1)


class LatentDiscriminator(nn.Module):
    """A logistic critic on latent codes that owns its Adam and is stepped only by ``step``.

    Its optimizer state is checkpointed with ``state_dict`` (``get_extra_state``), so a resumed run continues the
    game with the same Adam moments. With ``dim=None`` the input width is inferred on the first call (the
    regularizer is built before it sees a code); the optimizer is then created on the first ``step``.
    """

    def __init__(
        self, dim: int | None, hidden: int, layers: int, lr: float, r1: float, minibatch_std: bool = False
    ) -> None:
        super().__init__()
        self.net = mlp(dim, hidden, layers, 1)
        if minibatch_std:
            # The statistic enters after the last hidden layer, as in Karras et al., so the head weighs it.
            self.net = nn.Sequential(*self.net[:-1], MinibatchStd(), nn.Linear(hidden + 1, 1))
        self.lr = lr
        self.r1 = r1
        self._optimizer: torch.optim.Adam | None = None
        self._pending: dict[str, Any] | None = None  # optimizer state loaded before the lazy layer was built

    def forward(self, z: Tensor) -> Tensor:
        """Logits, one per row [B]: positive means "real"."""
        return self.net(z).squeeze(-1)

    @property
    def optimizer(self) -> torch.optim.Adam:
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, betas=BETAS)
            if self._pending is not None:
                self._optimizer.load_state_dict(self._pending)
                self._pending = None
        return self._optimizer

    def step(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        """One Adam step on the R1-penalised logistic loss; ``real`` and ``fake`` are detached here."""
        real = real.detach().requires_grad_(self.r1 > 0)
        fake = fake.detach()
        with torch.enable_grad():
            logits_real, logits_fake = self(real), self(fake)
            loss = F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()
            penalty = logits_real.new_zeros(())
            if self.r1 > 0:
                (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
                penalty = grad.pow(2).sum(dim=-1).mean()
                loss = loss + 0.5 * self.r1 * penalty
            params = list(self.net.parameters())
            # Whatever a player's loss left in .grad (a plain backward() without inputs=) must not leak in.
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
        self.optimizer.step()
        return {
            "d_loss": float(loss.detach()),
            "r1": float(penalty.detach()),
            "d_real": float(torch.sigmoid(logits_real.detach()).mean()),
            "d_fake": float(torch.sigmoid(logits_fake.detach()).mean()),
        }

    def get_extra_state(self) -> dict[str, Any]:
        if self._optimizer is not None:
            return {"optimizer": self._optimizer.state_dict()}
        return {"optimizer": self._pending}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._optimizer, self._pending = None, state["optimizer"]
