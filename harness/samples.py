"""The picture each cell leaves behind: a grid of decoded samples from its trained prior."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from harness.api import DataSplit, TrainedModel


def save_samples(model: TrainedModel, test: DataSplit, path: Path, n: int) -> None:
    """Images: a PNG grid of decoder means. 2-D vectors: prior samples over the test points (scatter)."""
    with torch.inference_mode():
        samples = model.sample(n).float().cpu()
    if test.is_image:
        from torchvision.utils import save_image

        # Small images (8×8 digits) are scaled up by whole pixels so the grid is legible.
        scale = max(1, 32 // samples.shape[-1])
        samples = samples.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)
        save_image(samples, path, nrow=max(1, int(math.sqrt(n))), padding=1)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    data = test.x.float().cpu()
    ax.scatter(data[:, 0], data[:, 1], s=2, alpha=0.3, label="test data", color="0.6")
    ax.scatter(samples[:, 0], samples[:, 1], s=4, alpha=0.8, label="samples", color="tab:red")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
