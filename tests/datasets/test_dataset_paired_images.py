"""``paired-images`` on tiny A|B files written here: the left half A is one flat colour and the right half B a
left-to-right gradient, so every check can tell which half went where (PNG, so pixel values are exact)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import Dataset, DatasetUnavailable
from harness.testing import DatasetContract
from harness_plugins.datasets import paired_images
from harness_plugins.datasets.paired_images import ARCHIVES_URL, PairedImages

#: Height of each written file (and width of each half); the files are 2·HEIGHT wide.
HEIGHT = 16
A_COLOUR = (200, 40, 90)


def _write_pair(path: Path, a_colour: tuple[int, int, int] = A_COLOUR, height: int = HEIGHT) -> None:
    """A flat ``a_colour`` left half and a right half whose red rises 0..255 from left to right (green 128, blue 0)."""
    pixels = np.zeros((height, 2 * height, 3), dtype=np.uint8)
    pixels[:, :height] = a_colour
    pixels[:, height:, 0] = np.linspace(0, 255, height).round().astype(np.uint8)
    pixels[:, height:, 1] = 128
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _write_set(root: Path, train: int = 3, test: int = 2) -> Path:
    for i in range(train):
        _write_pair(root / "train" / f"{i}.png", a_colour=(10 * i, 40, 90))
    for i in range(test):
        _write_pair(root / "val" / f"{i}.png", a_colour=(10 * i, 40, 90))
    return root


def _unavailable(dataset: PairedImages, split: str | None = None) -> DatasetUnavailable:
    with pytest.raises(DatasetUnavailable) as caught:
        dataset.check_available() if split is None else dataset.load(split)  # type: ignore[arg-type]
    return caught.value


def test_paired_images_registers_under_its_yaml_name() -> None:
    registered: list[type[Dataset]] = []
    paired_images.harness_register_datasets(registered.append)
    assert [cls.name for cls in registered] == ["paired-images"]


def test_installed_entry_point_finds_paired_images(tmp_path: Path) -> None:
    # From another folder, as a user's `harness` sees the installed metadata: run from the checkout, Python would
    # read a git-ignored prior_harness.egg-info left there by an older build instead.
    script = (
        "from harness.testing import load_plugin; "
        "from harness_plugins.datasets.paired_images import PairedImages; "
        "assert load_plugin('dataset', 'paired-images') is PairedImages"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_atob_conditions_on_the_left_half_and_generates_the_right_half(tmp_path: Path) -> None:
    _write_pair(tmp_path / "train" / "0.png")
    data = PairedImages(root=str(tmp_path), size=8).load("train")
    assert data.cond is not None
    # A is flat, and exactly so: each half is resized on its own, so no gradient bleeds in across the seam.
    assert bool((data.cond[0] == torch.tensor(A_COLOUR, dtype=torch.uint8)[:, None, None]).all())
    red, green = data.x[0, 0].long(), data.x[0, 1]
    assert bool((red[:, 1:] > red[:, :-1]).all()), "B's red must rise left to right"
    assert bool((green == 128).all())
    assert data.labels is None and data.label_kind is None


def test_btoa_swaps_the_condition_and_the_generated_image(tmp_path: Path) -> None:
    _write_set(tmp_path)
    a_to_b = PairedImages(root=str(tmp_path), size=8).load("train")
    b_to_a = PairedImages(root=str(tmp_path), size=8, direction="BtoA").load("train")
    assert a_to_b.cond is not None and b_to_a.cond is not None
    assert torch.equal(b_to_a.x, a_to_b.cond) and torch.equal(b_to_a.cond, a_to_b.x)


@pytest.mark.parametrize("size", [8, 12, 40])
def test_both_halves_are_uint8_size_by_size_images(tmp_path: Path, size: int) -> None:
    _write_set(tmp_path)
    data = PairedImages(root=str(tmp_path), size=size).load("test")
    assert data.cond is not None
    for images in (data.x, data.cond):
        assert images.dtype == torch.uint8 and images.shape == (2, 3, size, size)


def test_channels_1_gives_grayscale_halves(tmp_path: Path) -> None:
    _write_pair(tmp_path / "train" / "0.png")
    data = PairedImages(root=str(tmp_path), size=8, channels=1).load("train")
    assert data.cond is not None
    assert data.x.shape == data.cond.shape == (1, 1, 8, 8)
    gray = Image.new("RGB", (1, 1), A_COLOUR).convert("L").getpixel((0, 0))
    assert bool((data.cond == gray).all())


def test_files_are_read_in_sorted_name_order(tmp_path: Path) -> None:
    for name, red in [("c.png", 30), ("a.png", 10), ("b.png", 20)]:
        _write_pair(tmp_path / "train" / name, a_colour=(red, 0, 0))
    data = PairedImages(root=str(tmp_path), size=8).load("train")
    assert data.cond is not None
    assert data.cond[:, 0, 0, 0].tolist() == [10, 20, 30]


def test_max_train_and_max_test_keep_the_first_files_in_name_order(tmp_path: Path) -> None:
    _write_set(tmp_path, train=5, test=4)
    dataset = PairedImages(root=str(tmp_path), size=8, max_train=2, max_test=3)
    train, test = dataset.load("train"), dataset.load("test")
    assert train.cond is not None and test.cond is not None
    assert train.cond[:, 0, 0, 0].tolist() == [0, 10]
    assert len(test) == len(test.cond) == 3


def test_jpeg_png_and_uppercase_suffixes_are_read_and_other_files_ignored(tmp_path: Path) -> None:
    for name in ("a.JPG", "b.jpeg", "c.png"):
        _write_pair(tmp_path / "train" / name)
    (tmp_path / "train" / "README.txt").write_text("not an image")
    (tmp_path / "train" / "._c.png").write_bytes(b"a macOS resource fork, not an image")
    assert len(PairedImages(root=str(tmp_path), size=8).load("train")) == 3


def test_root_is_expanded_from_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _write_set(tmp_path / "facades")
    dataset = PairedImages(root="~/facades", size=8)
    dataset.check_available()
    assert len(dataset.load("train")) == 3


def test_split_folders_are_chosen_by_option(tmp_path: Path) -> None:
    _write_set(tmp_path)
    _write_pair(tmp_path / "test" / "0.png")
    assert len(PairedImages(root=str(tmp_path), size=8, test_split="test").load("test")) == 1


def test_missing_root_is_unavailable_naming_it_and_where_to_get_the_data(tmp_path: Path) -> None:
    missing = tmp_path / "edges2shoes"
    error = _unavailable(PairedImages(root=str(missing)))
    assert f"root {missing} does not exist" in error.message
    assert error.fix is not None and ARCHIVES_URL in error.fix and f"{missing / 'train'}/*.jpg" in error.fix


def test_missing_split_folder_is_unavailable_naming_the_folder_and_the_option(tmp_path: Path) -> None:
    _write_pair(tmp_path / "train" / "0.png")
    _write_pair(tmp_path / "test" / "0.png")
    error = _unavailable(PairedImages(root=str(tmp_path)))
    assert f"test_split folder {tmp_path / 'val'} does not exist" in error.message
    assert "holds test, train" in error.message
    assert error.fix is not None and ARCHIVES_URL in error.fix


def test_split_folder_without_images_is_unavailable_naming_it(tmp_path: Path) -> None:
    _write_set(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("")
    error = _unavailable(PairedImages(root=str(tmp_path), train_split="empty"))
    assert f"train_split folder {tmp_path / 'empty'} holds no .jpg, .jpeg, .png files" in error.message
    assert error.fix is not None and ARCHIVES_URL in error.fix


def test_image_not_twice_as_wide_as_high_is_unavailable_naming_the_file_and_its_size(tmp_path: Path) -> None:
    _write_set(tmp_path)
    odd = tmp_path / "train" / "odd.png"
    Image.new("RGB", (30, 20)).save(odd)
    error = _unavailable(PairedImages(root=str(tmp_path), size=8), "train")
    assert f"{odd} is 30×20 pixels" in error.message and "twice as wide as high" in error.message


def test_undecodable_image_is_unavailable_naming_the_file(tmp_path: Path) -> None:
    _write_set(tmp_path)
    broken = tmp_path / "train" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    error = _unavailable(PairedImages(root=str(tmp_path), size=8), "train")
    assert f"cannot decode {broken}" in error.message


def test_truncated_png_is_unavailable_naming_the_file(tmp_path: Path) -> None:
    _write_set(tmp_path)
    whole = tmp_path / "train" / "0.png"
    truncated = tmp_path / "train" / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[:60])
    error = _unavailable(PairedImages(root=str(tmp_path), size=8), "train")
    assert f"cannot decode {truncated}" in error.message


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [("size", 4, "size must be at least 8"), ("max_train", 0, "max_train must be at least 1")],
)
def test_out_of_range_options_are_rejected_with_their_range(option: str, value: int, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        PairedImages(root="unused", **{option: value})


def test_cond_has_one_row_per_item_and_loads_the_same_every_time(tmp_path: Path) -> None:
    _write_set(tmp_path)
    dataset = PairedImages(root=str(tmp_path), size=8)
    first, second = dataset.load("train"), dataset.load("train")
    assert first.cond is not None and second.cond is not None
    assert len(first.cond) == len(first.x) == 3
    assert torch.equal(first.cond, second.cond) and torch.equal(first.x, second.x)


class TestPairedImagesContract(DatasetContract):
    @pytest.fixture
    def dataset(self, tmp_path: Path) -> Dataset:
        return PairedImages(root=str(_write_set(tmp_path)), size=8)


class TestMissingPairedImagesContract(DatasetContract):
    @pytest.fixture
    def dataset(self, tmp_path: Path) -> Dataset:
        return PairedImages(root=str(tmp_path / "absent"))
