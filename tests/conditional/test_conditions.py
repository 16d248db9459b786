"""``condition:`` under a dataset: the derived conditions (edges, thumbnails, classes), how bad values are reported,
and that unconditional cells keep the ids they had before conditions existed."""

from __future__ import annotations

import torch

from harness.api import DataSplit
from harness.cli import main
from harness.conditions import Condition, edge_map, thumbnail, with_condition
from harness.config import load_config
from harness.grid import expand

from conftest import write_config


def _square(size: int = 12, lo: int = 3, hi: int = 9) -> torch.Tensor:
    """One uint8 image [1, 1, size, size]: a white square on black."""
    image = torch.zeros(1, 1, size, size, dtype=torch.uint8)
    image[..., lo:hi, lo:hi] = 255
    return image


def test_edges_of_a_square_are_its_outline_and_nothing_inside_or_far_outside():
    edges = edge_map(_square())[0, 0]
    assert edges.dtype == torch.uint8 and set(edges.unique().tolist()) <= {0, 255}
    assert bool((edges[5:7, 5:7] == 0).all()), "the inside of a flat square is not an edge"
    assert bool((edges[0, :] == 0).all()) and bool((edges[:, 0] == 0).all()), "flat background is not an edge"
    assert int(edges[3, 6]) == 255 and int(edges[6, 2]) == 255, "the square's border is an edge"


def test_a_thumbnail_is_the_block_average_shown_at_full_size():
    image = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4) * 10
    thumb = thumbnail(image, 2)
    assert thumb.shape == image.shape
    expected_top_left = round(float(image[0, 0, :2, :2].float().mean()))
    assert bool((thumb[0, 0, :2, :2] == expected_top_left).all())


def test_class_condition_is_the_one_hot_label():
    split = DataSplit(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([2, 0, 1]), "class", ("a", "b", "c"))
    cond = with_condition(split, Condition("class"), "toy").cond
    assert cond is not None and torch.equal(cond, torch.eye(3)[[2, 0, 1]])


def test_no_condition_keeps_a_datasets_own_condition():
    own = torch.ones(2, 1, 4, 4, dtype=torch.uint8)
    split = DataSplit(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), cond=own)
    assert with_condition(split, None, "pairs").cond is own


def test_unconditional_cells_record_no_condition_and_a_written_one_changes_the_id(tmp_path, registry):
    plain = write_config(tmp_path / "plain.yaml")
    edged = write_config(tmp_path / "edged.yaml", datasets={"digits": {"condition": "edges"}})
    plain_cells = expand("tiny", load_config(plain).benchmarks["tiny"], registry, str(plain))
    edged_cells = expand("tiny", load_config(edged).benchmarks["tiny"], registry, str(edged))
    assert all("condition" not in c.dataset_options for c in plain_cells)
    assert all(c.dataset_options["condition"] == "edges" for c in edged_cells)
    assert {c.cell_id for c in plain_cells}.isdisjoint(c.cell_id for c in edged_cells)


def test_an_unknown_condition_is_one_error_line_with_the_close_match(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml", datasets={"digits": {"condition": "edgs"}})
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    where = f"error: {cfg}: benchmarks.tiny.datasets.digits.condition"
    assert err[0].startswith(f"{where}: unknown condition 'edgs' (did you mean 'edges'?)")
    assert "{downsample: N}" in err[1]


def test_a_bad_thumbnail_side_names_its_key(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml", datasets={"digits": {"condition": {"downsample": 0}}})
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "benchmarks.tiny.datasets.digits.condition.downsample: 0: the thumbnail's side must be an integer >= 1" in err


def test_a_prior_that_cannot_be_conditioned_is_skipped_with_its_reason(tmp_path, registry):
    cfg = write_config(tmp_path / "b.yaml", datasets={"digits": {"condition": "class"}}, priors={"gmm": {}, "gaussian": {}})
    cells = expand("tiny", load_config(cfg).benchmarks["tiny"], registry, str(cfg))
    reasons = {c.prior: c.skip_reason for c in cells}
    assert reasons["gaussian"] is None
    assert reasons["gmm"] is not None and reasons["gmm"].startswith("prior 'gmm' cannot be conditioned: ")
