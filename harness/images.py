"""The pictures each cell leaves behind: a grid of decoded samples from its trained prior, and for a conditional
model the paper's Fig. 7 panel (a condition, its original, samples for it)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from harness.api import DataSplit, TrainedModel, as_float

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_samples(model: TrainedModel, test: DataSplit, path: Path, n: int) -> None:
    """Images: a PNG grid of decoder means. 2-D vectors: prior samples over the test points (scatter)."""
    with torch.inference_mode():
        samples = model.sample(n).float().cpu()
    if test.is_image:
        from torchvision.utils import save_image

        samples = legible(samples)
        save_image(samples, path, nrow=max(1, int(math.sqrt(n))), padding=1)
        return
    fig = scatter_figure(test.x.float().cpu(), samples)
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)


#: The file name of a conditional cell's panel, which the leaderboard puts together into one figure.
CONDITIONAL_SAMPLES = "conditional-samples.png"


def save_conditional_samples(model: TrainedModel, test: DataSplit, path: Path, conditions: int = 6, samples: int = 6) -> None:
    """One row per test condition (the first ``conditions``): the condition when it is an image, the original test
    image, then ``samples`` samples for that condition. Paper Fig. 7, for one model."""
    if test.cond is None or not test.is_image:
        return
    n = min(conditions, len(test))
    cond = test.cond[:n].to(model.device)
    with torch.inference_mode():
        drawn = model.sample(n * samples, cond.repeat_interleave(samples, dim=0)).float().cpu()
    channels = test.x.shape[1]
    columns = [_as_channels(as_float(test.x[:n]), channels)]
    if cond.dim() == 4:
        columns.insert(0, _as_channels(as_float(cond).cpu(), channels))
    rows = torch.cat([torch.stack(columns, dim=1), drawn.view(n, samples, *drawn.shape[1:])], dim=1)
    from torchvision.utils import save_image

    save_image(legible(rows.flatten(0, 1)), path, nrow=rows.shape[1], padding=1)


def _as_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey images shown beside colour ones get three equal channels."""
    return images.expand(-1, channels, -1, -1) if images.shape[1] == 1 else images


def legible(images: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Images smaller than ``size`` pixels (8×8 digits) scaled up by whole pixels, so a grid of them can be read."""
    scale = max(1, size // images.shape[-1])
    return images.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)


def scatter_figure(data: torch.Tensor, samples: torch.Tensor) -> Figure:
    """Prior samples (red) over the test points (grey), equal axes; the legend sits above the axes, off the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(4, 4.3), dpi=100)
    ax.scatter(data[:, 0], data[:, 1], s=2, alpha=0.3, label="test data", color="0.6")
    ax.scatter(samples[:, 0], samples[:, 1], s=4, alpha=0.8, label="prior samples, decoded", color="tab:red")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=7, frameon=False, markerscale=2)
    ax.set_aspect("equal")
    # A 4-inch panel fits about five tick labels per axis; the default locator put up to nine on a wide x range.
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=5))
    ax.tick_params(labelsize=9)
    fig.tight_layout()
    return fig
