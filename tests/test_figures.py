"""Leaderboard and latent figures a reader can read: legends off the data, distinct lines, narrow label columns,
limits that hold the points, tick labels apart, titled image grids (measured with matplotlib's own renderer)."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from harness.report.figures import BETA_FREE_DASHES, bars_figure, beta_figure, series_styles  # noqa: E402
from harness.run.latent_figures import ImageGrid, grid_figure, robust_limits, scatter_figure  # noqa: E402
from harness.images import scatter_figure as samples_scatter  # noqa: E402

BETAS = [0.0, 0.01, 0.1, 1.0]


def _row(dataset, model, prior, options, regularizer, beta, seed, value):
    return {"cell_id": f"{model}{beta}{seed}", "benchmark": "b", "model": model, "dataset": dataset, "prior": prior,
            "prior_options": options, "regularizer": regularizer, "beta": beta, "seed": seed, "metric": "fid",
            "value": float(value), "details": ""}


def _long(models=("vae", "flow-vae", "aae"), free=("flow-ex-post", "gmm-ex-post", "none-ae"),
          datasets=("digits", "fashion-mnist")) -> pd.DataFrame:
    """Values that fill the whole plot, top to bottom, so any legend inside the axes would cover some."""
    rows = []
    for dataset, seed in itertools.product(datasets, (0, 1)):
        for k, model in enumerate(models):
            rows += [_row(dataset, model, "gaussian", "–", "kl", b, seed, 100 + 300 * k + 50 * i + seed)
                     for i, b in enumerate(BETAS)]
        rows += [_row(dataset, name, "gmm", "components=10", "none", None, seed, 150 + 200 * k + seed)
                 for k, name in enumerate(free)]
    return pd.DataFrame(rows)


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_beta_figure_legend_lies_outside_every_panel():
    fig = beta_figure(_long(), "fid", "min")
    renderer = _drawn(fig)
    assert len(fig.legends) == 1
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(renderer)), ax.get_title()
        assert ax.get_legend() is None
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"flow-ex-post (β-free)", "gmm-ex-post (β-free)", "none-ae (β-free)", "vae"} <= set(labels)
    plt.close(fig)


def test_every_line_of_the_beta_figure_has_its_own_colour_and_beta_free_lines_are_dashed():
    fig = beta_figure(_long(), "fid", "min")
    for ax in fig.axes:
        lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        free = [line for line in lines if line.get_label().endswith("(β-free)")]
        assert len(free) == 3
        assert all(line.get_linestyle() != "-" for line in free)
        # errorbar's data lines carry no label of their own: their colours come from the container
        colours = [to_rgba(line.get_color()) for line in free]
        colours += [to_rgba(c.lines[0].get_color()) for c in ax.containers]
        assert len(colours) == 6 and len(set(colours)) == 6
    plt.close(fig)


def test_series_styles_give_distinct_colour_and_dash_to_many_beta_free_lines():
    names = [f"m{i}" for i in range(12)]
    styles = series_styles(names, set(names[:8]))
    pairs = [(to_rgba(s["color"]), str(s["linestyle"])) for s in styles.values()]
    assert len(set(pairs)) == 12
    assert len({to_rgba(s["color"]) for s in styles.values()}) == 12
    assert {str(styles[n]["linestyle"]) for n in names[:len(BETA_FREE_DASHES)]} == {str(d) for d in BETA_FREE_DASHES}
    assert all(styles[n]["linestyle"] == "-" for n in names[8:])


def _label_share(fig) -> float:
    renderer = _drawn(fig)
    width = max(t.get_window_extent(renderer).width for ax in fig.axes for t in ax.get_yticklabels())
    return width / fig.bbox.width


def test_bar_labels_take_under_40_percent_of_the_width_even_when_long():
    long = _long(models=("a-model-variant-with-a-rather-long-descriptive-name", "vae"), free=("gmm",))
    long["model"] = "–"  # no variant names: labels spell out prior options, the longest kind
    long["prior_options"] = "depth=8, hidden=128, scale_clamp=2.0, permutation=reverse"
    long.loc[long["regularizer"] == "none", "prior"] = "realnvp"
    long.loc[long["regularizer"] == "none", "prior_options"] = "depth=4"
    fig = bars_figure(long, "fid", "min")
    assert _label_share(fig) < 0.4
    plt.close(fig)


def test_bars_put_the_best_configuration_first_with_a_linear_axis_for_one_decade():
    fig = bars_figure(_long(datasets=("digits",)), "fid", "min")
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "vae β=0" and labels[-1] == "aae β=1"  # 100.5 and 750.5: the lowest and highest FID
    assert ax.yaxis_inverted()  # so the first label is drawn at the top
    assert ax.get_xscale() == "linear" and "log" not in ax.get_xlabel()
    assert ax.get_xlim()[0] == 0
    plt.close(fig)


def test_bars_switch_to_a_labelled_log_axis_beyond_two_decades():
    long = _long(datasets=("digits",))
    long.loc[long["model"] == "vae", "value"] /= 1000
    fig = bars_figure(long, "fid", "min")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and "(log scale)" in ax.get_xlabel()
    plt.close(fig)


def test_a_variant_with_two_priors_keeps_one_bar_per_prior():
    long = _long(models=("vae",), free=(), datasets=("digits",))
    other = long.assign(prior="realnvp", prior_options="depth=4", value=long["value"] + 1)
    fig = bars_figure(pd.concat([long, other]), "fid", "min")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 2 * len(BETAS) and "vae gaussian kl β=0" in labels and "vae realnvp kl β=0" in labels
    plt.close(fig)


def test_bar_figure_grows_with_the_number_of_rows():
    few = bars_figure(_long(models=("vae",), free=(), datasets=("digits",)), "fid", "min")
    many = bars_figure(_long(datasets=("digits",)), "fid", "min")
    assert many.get_figheight() > few.get_figheight() + 2
    plt.close(few)
    plt.close(many)


def _inside(points: torch.Tensor, ax) -> float:
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    keep = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
    return float(keep.float().mean())


def test_robust_limits_hold_99_percent_of_heavy_tailed_points_and_ignore_far_outliers():
    torch.manual_seed(0)
    points = torch.distributions.Cauchy(0.0, 1.0).sample((4000, 2))
    points[:3] = torch.tensor([[1e6, -1e6], [-1e6, 1e6], [1e6, 1e6]])  # what autoscaling would have shown
    (x0, x1), (y0, y1) = robust_limits(points)
    inside = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
    assert float(inside.float().mean()) >= 0.99
    assert max(abs(x0), abs(x1), abs(y0), abs(y1)) < 1e4


def test_latent_panels_hold_99_percent_of_their_points_and_name_the_classes():
    torch.manual_seed(0)
    z_t = torch.randn(3000, 2)
    drawn = torch.distributions.StudentT(1.5).sample((3000, 2)) * 2  # heavier tails than the codes
    z_0 = z_t * 3
    labels = torch.randint(0, 3, (3000,))
    fig = scatter_figure(z_0, z_t, drawn, labels, ["T-shirt/top", "Trouser", "Pullover"])
    renderer = _drawn(fig)
    a, b, c, d = fig.axes
    assert _inside(z_0, a) >= 0.99 and _inside(z_t, b) >= 0.99 and _inside(z_t, c) >= 0.99
    assert _inside(drawn, d) >= 0.99
    assert b.get_xlim() == c.get_xlim() == d.get_xlim()
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["T-shirt/top", "Trouser", "Pullover"]
    for ax in fig.axes:
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    plt.close(fig)


def _apart(texts, renderer) -> bool:
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text()]
    return all(not p.overlaps(q) for p, q in itertools.combinations(boxes, 2))


@pytest.mark.parametrize("scale", [0.013, 1.0, 37.5, 2500.0])  # the old locator overlapped at 0.013 and 2500
def test_two_d_sample_scatter_tick_labels_do_not_overlap(scale):
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(500, 2, generator=generator) * torch.tensor([scale * 1.7, scale * 0.3])
    samples = torch.randn(200, 2, generator=generator) * scale
    fig = samples_scatter(data, samples)
    renderer = _drawn(fig)
    (ax,) = fig.axes
    assert _apart(ax.get_xticklabels(), renderer) and _apart(ax.get_yticklabels(), renderer)
    assert not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    plt.close(fig)


def test_image_grid_labels_every_row_and_column_and_keeps_its_title_inside_the_figure():
    rows = [torch.rand(6, 1, 8, 8) for _ in range(4)]
    names = ["pair 1: Z_0, slerp", "pair 1: Z_T, lerp", "pair 2: Z_0, slerp", "pair 2: Z_T, lerp"]
    columns = ["A", "t=0", "t=0.33", "t=0.67", "t=1", "B"]
    title = "Interpolations from test image A (left) to B (right), decoded by Dψ; " * 3
    fig = grid_figure(ImageGrid(rows, names, columns, title))
    renderer = _drawn(fig)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert [t.get_text() for t in ax.get_xticklabels()] == columns
    box = fig._suptitle.get_window_extent(renderer)
    assert fig._suptitle.get_text().replace("\n", " ").split() == title.split()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    assert _apart(ax.get_xticklabels(), renderer)
    plt.close(fig)
