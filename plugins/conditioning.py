"""The condition networks the built-in conditional plugins share: y (an image or a vector) -> a feature vector.

A conditional prior owns its network (θ): its fit loss trains it, and the contract checks that gradients reach it.
"""

from __future__ import annotations

from torch import Tensor, nn

#: Channels of the two stride-2 convolutions that read an image condition.
IMAGE_CHANNELS = (32, 64)


class ConditionEncoder(nn.Module):
    """y [B, *shape] (floats; images in [0, 1]) -> [B, features].

    Images (C, H, W): two stride-2 4×4 convolutions (SiLU) and a linear layer; vectors (K,): a two-layer MLP. Both end
    in SiLU, so what reads the features (a coupling's MLP, a linear mean) sees a nonlinear function of y.
    """

    def __init__(self, shape: tuple[int, ...], features: int) -> None:
        super().__init__()
        self.shape = tuple(shape)
        if len(self.shape) == 3:
            channels, height, width = self.shape
            first, second = IMAGE_CHANNELS
            flat = second * (height // 4) * (width // 4)
            self.net: nn.Module = nn.Sequential(
                nn.Conv2d(channels, first, 4, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(first, second, 4, stride=2, padding=1), nn.SiLU(),
                nn.Flatten(), nn.Linear(flat, features), nn.SiLU(),
            )  # fmt: skip
        elif len(self.shape) == 1:
            width = self.shape[0]
            self.net = nn.Sequential(nn.Linear(width, features), nn.SiLU(), nn.Linear(features, features), nn.SiLU())
        else:
            raise ValueError(f"a condition is an image (C, H, W) or a vector (K,), not shape {self.shape}")
        self.features = features

    def forward(self, y: Tensor) -> Tensor:
        if tuple(y.shape[1:]) != self.shape:
            raise ValueError(f"cond has shape {list(y.shape)}, expected [B, {', '.join(map(str, self.shape))}]")
        # Conditions arrive as float32 (or integer labels); the network may have been moved to float64.
        weight = next(self.parameters())
        return self.net(y.to(device=weight.device, dtype=weight.dtype))


def condition_features(net: ConditionEncoder | None, cond: Tensor | None, like: Tensor, prior: str) -> Tensor | None:
    """What a conditional prior's layers read: ``net``'s features of ``cond`` in ``like``'s dtype (one row per code
    of ``like``), None for an unconditional prior (``net`` None); a clear error when the condition is missing."""
    if net is None:
        return None
    if cond is None:
        shape = ", ".join(map(str, net.shape))
        raise ValueError(f"prior {prior!r} is conditioned on the data and needs cond of shape [B, {shape}]")
    if cond.shape[0] != like.shape[0]:
        raise ValueError(f"cond has {cond.shape[0]} rows for {like.shape[0]} codes")
    return net(cond).to(like.dtype)
