"""The contract suites' check of a ``packable`` plugin: K copies of it with their tensors stacked and called through
``torch.func.vmap`` — as ``harness.model.packed`` trains a pack — compute and train like the copies one by one.

A plugin that declares ``packable = True`` but branches in Python on a tensor, draws random numbers or changes its
state in place inside the step fails here with torch's own error, before any benchmark packs it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from harness.model.packed import split_buffers

#: ``loss(module, *inputs)``: one scalar for one copy.
Loss = Callable[..., Tensor]


class _Calls(nn.Module):
    """``loss(module, *inputs)`` as a forward, so ``functional_call`` can swap the module's tensors in."""

    def __init__(self, module: nn.Module, loss: Loss) -> None:
        super().__init__()
        self.module = module
        self.loss = loss

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.loss(self.module, *inputs)


def packed_and_alone(
    copies: Sequence[nn.Module],
    loss: Loss,
    inputs: Sequence[tuple[Tensor, ...]],
    trainable: Callable[[nn.Module], Sequence[nn.Parameter]],
    steps: int = 5,
    lr: float = 1e-2,
) -> tuple[Tensor, Tensor, float]:
    """Train each copy ``steps`` Adam steps on ``loss(copy, *inputs[k])`` alone, and the same copies stacked as one
    vmapped pack with one Adam over the stacked tensors; returns the losses [steps, K] alone and packed, and the
    largest difference of the trained parameters.

    Both start with one forward call per copy alone, as a pack's first step is taken alone (one-time, data-dependent
    initialisation such as ActNorm's happens there). ``trainable(module)``: the parameters the harness trains.
    """
    alone = [copy.deepcopy(c) for c in copies]
    packed = [copy.deepcopy(c) for c in copies]
    for module, args in zip([*alone, *packed], [*inputs, *inputs]):
        with torch.no_grad():
            loss(module, *args)

    alone_losses = []
    for module, args in zip(alone, inputs):
        params = list(trainable(module))
        opt = torch.optim.Adam(params, lr=lr) if params else None
        row = []
        for _ in range(steps):
            value = loss(module, *args)
            row.append(value.detach())
            if opt is not None and value.requires_grad:  # a penalty identically zero (`none`) trains nothing
                opt.zero_grad()
                value.backward(inputs=params)
                opt.step()
        alone_losses.append(torch.stack(row))

    wrappers = [_Calls(m, loss) for m in packed]
    ids = {id(p) for p in trainable(packed[0])}
    trained = [name for name, p in wrappers[0].named_parameters() if id(p) in ids]
    named = [dict(w.named_parameters()) for w in wrappers]
    params = {name: torch.stack([n[name].detach() for n in named]).requires_grad_(name in trained) for name in named[0]}
    buffers, shared = split_buffers([dict(w.named_buffers()) for w in wrappers])
    base = copy.deepcopy(wrappers[0]).to("meta")
    stacked_inputs = tuple(torch.stack(column) for column in zip(*inputs))

    def one(p: dict[str, Tensor], b: dict[str, Tensor], *args: Tensor) -> Tensor:
        return functional_call(base, {**p, **b, **shared}, args)

    forward = vmap(one, in_dims=(0, 0, *([0] * len(stacked_inputs))), randomness="error")
    opt = torch.optim.Adam([params[n] for n in trained], lr=lr) if trained else None
    packed_losses = []
    for _ in range(steps):
        values = forward(params, buffers, *stacked_inputs)
        packed_losses.append(values.detach())
        if opt is not None and values.requires_grad:
            opt.zero_grad()
            values.sum().backward(inputs=[params[n] for n in trained])
            opt.step()

    difference = 0.0
    for k in range(len(wrappers)):
        for name, p in dict(_Calls(alone[k], loss).named_parameters()).items():
            difference = max(difference, float((params[name][k].detach() - p.detach()).abs().max()))
    return torch.stack(alone_losses, dim=1), torch.stack(packed_losses), difference
