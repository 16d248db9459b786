"""The ex-post fit every prior fitted after training shares: Adam on minibatches of the finished encoder's codes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def fit_to_codes(
    module: nn.Module, loss_of: Callable[[Tensor], Tensor], codes: Tensor, steps: int, lr: float, batch_size: int
) -> None:
    """``steps`` Adam steps at ``lr`` on ``loss_of(minibatch)`` over ``module``'s trainable parameters, each step on
    ``batch_size`` codes drawn with torch's generator (seeded per cell by the harness), in training mode (the mode
    it was in is restored after)."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    was_training = module.training
    module.train(True)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, codes.shape[0], (min(batch_size, codes.shape[0]),))
            loss = loss_of(codes[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            optimizer.step()
    module.train(was_training)
