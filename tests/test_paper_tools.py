"""Model variants, claims, the FID-vs-β figure and the latent-space figures (the paper's lab bench)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from harness.report.claims import check, compare
from harness.cli import main
from harness.config import load_config
from harness.grid import expand
from harness.run.latent_figures import slerp

VARIANTS = {
    "datasets": ["digits"],
    "model": {"architecture": "mlp", "latent_dim": 2, "gamma": 0.05, "architecture_options": {"hidden": 32, "layers": 1}},
    "models": {
        "flow-vae": {"priors": {"realnvp": {"depth": 2, "hidden": 16}}, "regularizers": ["kl"]},
        "flow-vae-learned-gamma": {"priors": {"realnvp": {"depth": 2, "hidden": 16}}, "regularizers": ["kl"],
                                   "model": {"gamma": "learned"}},
        "gmm": {"priors": {"gmm": {"components": 3}}, "regularizers": ["none"]},
    },
    "beta": [0, 1],
    "seeds": [0, 1],
    "train": {"epochs": 2, "batch_size": 256, "lr": 0.003},
    "evaluators": {"reconstruction": {}, "prior_fit": {}},
    "claims": [
        {"text": "mse falls as β → 0", "kind": "falls_as_beta_falls", "metric": "reconstruction.mse",
         "a": {"model": "flow-vae"}},
        {"text": "flow β=0 beats gmm", "kind": "better", "metric": "reconstruction.mse",
         "a": {"model": "flow-vae", "beta": 0}, "b": {"model": "gmm"}},
    ],
    "latent_figures": {"model": "flow-vae", "beta": 0, "seed": 0, "pairs": 2, "steps": 4},
}


def _write(tmp_path, bench):
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump({"benchmarks": {"v": bench}}, sort_keys=False), encoding="utf-8")
    return path


def test_named_model_variants_cross_their_own_grid_and_override_model_keys(tmp_path, registry):
    cfg = load_config(_write(tmp_path, VARIANTS))
    cells = expand("v", cfg.benchmarks["v"], registry, "b.yaml")
    by_variant = {}
    for cell in cells:
        by_variant.setdefault(cell.variant, []).append(cell)
    assert {k: len(v) for k, v in by_variant.items()} == {"flow-vae": 4, "flow-vae-learned-gamma": 4, "gmm": 2}
    assert {c.model["gamma"] for c in by_variant["flow-vae-learned-gamma"]} == {"learned"}
    assert {c.model["gamma"] for c in by_variant["flow-vae"]} == {0.05}
    assert len({c.cell_id for c in cells}) == len(cells)


def test_better_verdict_is_a_one_sided_welch_test_in_the_metrics_direction():
    low, high = pd.Series([1.0, 1.1, 0.9, 1.05]), pd.Series([2.0, 2.2, 1.9, 2.1])
    verdict, p = compare(low, high, "min")
    expected = stats.ttest_ind(low, high, equal_var=False, alternative="less").pvalue
    assert verdict == "supported" and p == pytest.approx(expected)
    assert compare(high, low, "min")[0] == "not supported"
    assert compare(high, low, "max")[0] == "supported"
    assert compare(pd.Series([1.0, 1.25]), pd.Series([1.1, 1.2]), "min")[0] == "direction agrees, not significant"
    assert compare(pd.Series([], dtype=float), low, "min") == ("not measured", None)


def test_falls_as_beta_falls_compares_smallest_and_largest_beta_and_reports_spearman():
    rows = [
        {"model": "m", "prior": "p", "regularizer": "kl", "beta": b, "seed": s, "metric": "fid", "value": v}
        for b, values in ((0.0, [10, 11, 12]), (0.5, [20, 21, 22]), (1.0, [30, 31, 29]))
        for s, v in enumerate(values)
    ]
    claim = {"text": "FID falls", "kind": "falls_as_beta_falls", "metric": "fid", "a": {"model": "m"}}
    text, measured, verdict = check(claim, pd.DataFrame(rows), {"fid": "min"})
    assert "β=0: 11, β=0.5: 21, β=1: 30" in measured and "Spearman ρ(β, fid) = 0.95" in measured
    # Every β holds the same three seeds: the lowest and highest β are paired by seed.
    assert verdict.startswith("supported (one-sided paired t-test over 3 seeds p = ")


def _better_rows(a_values, b_values, b_seeds=None):
    rows = [{"model": "a", "prior": "p", "regularizer": "kl", "beta": 0.0, "seed": s, "metric": "fid", "value": v}
            for s, v in enumerate(a_values)]
    seeds = range(len(b_values)) if b_seeds is None else b_seeds
    rows += [{"model": "b", "prior": "p", "regularizer": "kl", "beta": 1.0, "seed": s, "metric": "fid", "value": v}
             for s, v in zip(seeds, b_values)]
    return pd.DataFrame(rows)


BETTER = {"text": "a beats b", "kind": "better", "metric": "fid", "a": {"model": "a"}, "b": {"model": "b"}}


def test_sides_sharing_seeds_get_a_paired_t_test_that_sees_what_welch_misses():
    # A large seed effect shared by both sides and a small, consistent gain of a: unpaired, the seed spread hides
    # the gain; paired by seed, it is plain.
    a, b = [10.0, 20.0, 30.0, 40.0], [10.5, 20.6, 30.4, 40.5]
    frame = _better_rows(a, b)
    _, _, verdict = check(BETTER, frame, {"fid": "min"})
    expected = stats.ttest_rel(a, b, alternative="less").pvalue
    assert verdict == f"supported (one-sided paired t-test over 4 seeds p = {expected:.3g})"
    welch = stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
    assert welch > 0.4 and expected < 0.01


def test_wilcoxon_is_reported_beside_the_paired_test_from_five_pairs():
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [1.4, 2.3, 3.5, 4.2, 5.6]
    _, _, verdict = check(BETTER, _better_rows(a, b), {"fid": "min"})
    w = stats.wilcoxon(a, b, alternative="less").pvalue
    assert verdict.endswith(f"; Wilcoxon signed-rank p = {w:.3g})") and "paired t-test over 5 seeds" in verdict


def test_sides_with_different_seeds_fall_back_to_welch():
    a, b = [1.0, 1.1, 0.9], [2.0, 2.2, 1.9]
    _, _, verdict = check(BETTER, _better_rows(a, b, b_seeds=[3, 4, 5]), {"fid": "min"})
    expected = stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
    assert verdict == f"supported (one-sided Welch p = {expected:.3g})"


def test_slerp_keeps_endpoints_and_moves_at_constant_angular_speed_on_the_circle():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(torch.atan2(path[:, 1], path[:, 0]), torch.linspace(0, math.pi / 2, 5))
    longer = slerp(a, 2 * b, torch.linspace(0, 1, 3))
    torch.testing.assert_close(longer[-1], 2 * b)


def test_slerp_between_unit_vectors_in_many_dimensions_preserves_the_norm_exactly():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=generator, dtype=torch.float64), torch.randn(16, generator=generator, dtype=torch.float64)
    a, b = a / a.norm(), b / b.norm()
    path = slerp(a, b, torch.linspace(0, 1, 11, dtype=torch.float64))
    torch.testing.assert_close(path.norm(dim=1), torch.ones(11, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)


def test_slerp_falls_back_to_lerp_for_parallel_vectors():
    a = torch.tensor([1.0, 2.0])
    t = torch.linspace(0, 1, 5)
    for b in (3 * a, a.clone()):
        path = slerp(a, b, t)
        assert torch.isfinite(path).all()
        torch.testing.assert_close(path, a + t[:, None] * (b - a))


def test_a_run_with_variants_writes_claims_the_beta_figure_and_latent_figures(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, VARIANTS)), "--out", str(out), "--quiet"]) == 0
    board = (out / "leaderboard.md").read_text()
    assert "## Claims" in board and "| mse falls as β → 0" in board and "flow β=0 beats gmm" in board
    assert "| rank   | model " in board and "flow-vae-learned-gamma" in board
    done = [json.loads(p.read_text()) for p in out.glob("cells/*/result.json")]
    chosen = next(r for r in done if r["cell"]["variant"] == "flow-vae" and r["cell"]["beta"] == 0
                  and r["cell"]["seed"] == 0)
    # The latent figures are drawn when the selected cell trains, into its folder; the leaderboard links them.
    folder = f"cells/{chosen['cell']['cell_id']}"
    latent = [f"{folder}/latent-{name}.png" for name in ("2d", "interpolation", "attribute-edit", "pca")]
    for name in ("v-reconstruction.mse-vs-beta.png", *latent):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
        assert f"]({name})" in board, name
    assert not list(out.glob("cells/*/latent-*.png"))[4:], "only the selected cell draws latent figures"
    frame = pd.read_csv(out / "results.csv")
    assert "likelihood.gamma" in set(frame[frame["model"] == "flow-vae-learned-gamma"]["metric"])

    # Right grid shapes, from the trained cell: 2 rows (Z_0, Z_T) per pair, steps + 2 (interpolation: A, path, B)
    # or steps + 1 (edits: start, path) columns; every row and column labelled, the title saying what is shown.
    from harness.grid import Cell
    from harness.run.latent_figures import edit_grid, interpolation_grid, load_cell
    from harness.registry import load_registry

    model, train, test = load_cell(out, Cell.from_json(chosen["cell"]), load_registry())
    pairs, steps = 2, 4
    grid = interpolation_grid(model, test, pairs, steps, seed=0)
    assert [tuple(row.shape[:2]) for row in grid.rows] == [(steps + 2, 1)] * 2 * pairs
    assert grid.row_labels == ["pair 1: Z_0, slerp", "pair 1: Z_T, lerp", "pair 2: Z_0, slerp", "pair 2: Z_T, lerp"]
    assert grid.column_labels[0] == "A" and grid.column_labels[-1] == "B" and len(grid.column_labels) == steps + 2
    assert "Z_0" in grid.title and "Z_T" in grid.title
    edits = edit_grid(model, train, test, pairs, steps, seed=0)
    assert [tuple(row.shape[:2]) for row in edits.rows] == [(steps + 1, 1)] * 2 * pairs
    assert all(label.startswith("+ ") for label in edits.row_labels) and len(edits.column_labels) == steps + 1

    # Figures lost from a folder that still has the checkpoint are drawn again by the next run, training nothing.
    drawn = {name: (out / name).read_bytes() for name in latent}
    for name in latent:
        (out / name).unlink()
    assert main(["run", str(_write(tmp_path, VARIANTS)), "--out", str(out), "--quiet"]) == 0
    assert {name: (out / name).read_bytes() for name in latent} == drawn

    # A clone has the results and figures but no checkpoints (they are not committed): the leaderboard reads
    # only files, so re-rendering links the same figures and draws nothing.
    for checkpoint in out.glob("cells/*/checkpoint.pt"):
        checkpoint.unlink()
    assert main(["leaderboard", str(out)]) == 0
    assert (out / "leaderboard.md").read_text() == board


def test_max_train_keeps_the_first_training_images_and_the_whole_test_split(registry):
    fashion = registry.get("dataset", "fashion-mnist")
    try:
        fashion().check_available()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Fashion-MNIST is not installed here ({exc})")
    full, small = fashion(), fashion(max_train=500)
    assert torch.equal(small.load("train").x, full.load("train").x[:500])
    assert len(small.load("test")) == len(full.load("test")) == 10000
