"""Damaged dataset files and a wrong ``data_root`` stop ``harness run --dry-run`` with one ``error:`` line naming the
file and what is wrong (exit 2), before any cell trains; intact files still pass.

Every file is written here in the on-disk format torchvision reads, then damaged the way real copies are: empty,
truncated, never unpacked, a header that disagrees with the data, labels that do not match the images.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets.celeba
from test_dataset_torchvision import DEBIAN_FASHION, _existence_only, _idx, _write_celeba, _write_idx_set

from conftest import write_config
from harness import DatasetUnavailable
from harness.cli import main
from harness_plugins.datasets import torchvision_sets
from harness_plugins.datasets.torchvision_sets import CelebA, FashionMNIST

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def _dry_run_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: str, options: dict[str, str]) -> str:
    """``harness run CONFIG --dry-run`` on ``dataset``: asserts exit 2 and one error line (and a fix); returns it."""
    config = write_config(tmp_path / "bench.yaml", datasets={dataset: options})
    status = main(["run", str(config), "--dry-run", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("warning: plugin ")]
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("  "), err
    assert sum(line.startswith("error:") for line in lines) == 1, err
    return lines[0]


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


def _with_labels(labels: list[int]) -> Callable[[bytes], bytes]:
    return lambda _: _idx(np.asarray(labels, dtype=np.uint8))


#: (file to damage, how, words the error must contain): each a way a real copy of the files goes wrong.
UNPACKED_DAMAGE = [
    (TRAIN_IMAGES, lambda data: b"", "the file is empty"),
    (TRAIN_LABELS, lambda data: b"\x00\x00\x0c\x01" + data[4:], "bad magic number 0x00000c01"),
    (TEST_IMAGES, lambda data: gzip.compress(data), "still gzipped"),
    (TEST_IMAGES, lambda data: data[:-100], "truncated"),
    (TRAIN_IMAGES, lambda data: data + b"\x00" * 7, "trailing bytes"),
    (TRAIN_LABELS, lambda data: data[:6], "ends inside its 8-byte header"),
    (TRAIN_LABELS, _with_labels([1, 2, 3, 4]), "5 images but train-labels-idx1-ubyte has 4 labels"),
    (TEST_LABELS, _with_labels([0, 10, 3]), "label 10 at index 1 is out of range"),
    (TEST_IMAGES, lambda data: _idx(np.zeros((3, 32, 32), dtype=np.uint8)), "32×32"),
]


@pytest.mark.parametrize(("victim", "damage", "says"), UNPACKED_DAMAGE, ids=[s for _, _, s in UNPACKED_DAMAGE])
def test_damaged_idx_file_stops_the_dry_run_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], victim: str, damage: Callable[[bytes], bytes], says: str
) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    _write_idx_set(raw, seed=0)
    _rewrite(raw / victim, damage)
    error = _dry_run_error(capsys, tmp_path, "mnist", {"data_root": str(tmp_path / "data")})
    # A count mismatch names the images file first and the damaged labels file after it.
    assert f"{raw}/" in error and victim in error and says in error


def test_intact_idx_files_pass_the_same_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_idx_set(tmp_path / "data" / "MNIST" / "raw", seed=0)
    config = write_config(tmp_path / "bench.yaml", datasets={"mnist": {"data_root": str(tmp_path / "data")}})
    assert main(["run", str(config), "--dry-run", "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err


PACKED_DAMAGE = [
    (TRAIN_IMAGES, lambda data: data[: len(data) // 2], "the gzip stream ends early: the file is truncated"),
    (TEST_LABELS, lambda data: b"not gzip at all", "not a valid gzip file"),
    (TRAIN_IMAGES, lambda data: gzip.compress(b""), "the file is empty"),
    (TRAIN_LABELS, lambda data: gzip.compress(_idx(np.arange(6, dtype=np.uint8))), "5 images but"),
]


@pytest.mark.parametrize(("victim", "damage", "says"), PACKED_DAMAGE, ids=[s for _, _, s in PACKED_DAMAGE])
def test_damaged_gz_file_stops_the_dry_run_and_leaves_no_unpacked_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], victim: str, damage: Callable[[bytes], bytes], says: str
) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    _write_idx_set(raw, seed=1, packed=True)
    _rewrite(raw / f"{victim}.gz", damage)
    error = _dry_run_error(capsys, tmp_path, "mnist", {"data_root": str(tmp_path / "data")})
    assert f"{raw}/" in error and f"{victim}.gz" in error and says in error
    # Nothing unpacked: a later run must not find (and trust) a copy made from a damaged file.
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{name}.gz" for name in torchvision_sets.IDX_FILES)


def test_damaged_debian_copy_names_the_package_file_and_says_reinstall(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    debian = tmp_path / "debian"
    _write_idx_set(debian, seed=2, packed=True)
    _rewrite(debian / f"{TEST_IMAGES}.gz", lambda data: data[:40])
    monkeypatch.setattr(FashionMNIST, "debian_root", debian)
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path / "cache"))
    with pytest.raises(DatasetUnavailable) as info:
        FashionMNIST().check_available()
    assert f"{debian / TEST_IMAGES}.gz: the gzip stream ends early" in info.value.message
    assert info.value.fix is not None and "--reinstall dataset-fashion-mnist" in info.value.fix


def test_a_data_root_that_does_not_exist_is_an_error_not_a_fall_back_to_another_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_idx_set(tmp_path / "debian", seed=3, packed=True)  # a copy that must not stand in for the user's files
    monkeypatch.setattr(FashionMNIST, "debian_root", tmp_path / "debian")
    error = _dry_run_error(capsys, tmp_path, "fashion-mnist", {"data_root": str(tmp_path / "my-data")})
    assert f"data_root {tmp_path / 'my-data'} does not exist" in error
    assert not (tmp_path / "my-data").exists()


def test_a_data_root_without_the_files_does_not_use_the_debian_copy_but_says_how_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_idx_set(tmp_path / "debian", seed=3, packed=True)
    monkeypatch.setattr(FashionMNIST, "debian_root", tmp_path / "debian")
    (tmp_path / "my-data").mkdir()
    with pytest.raises(DatasetUnavailable) as info:
        FashionMNIST(data_root=str(tmp_path / "my-data")).check_available()
    assert "missing FashionMNIST/raw/train-images-idx3-ubyte" in info.value.message
    assert info.value.fix is not None
    assert f"leave data_root out to use the copy in {tmp_path / 'debian'}" in info.value.fix
    assert not (tmp_path / "my-data" / "FashionMNIST").exists()


def test_a_data_root_that_is_a_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "oops").write_text("")
    error = _dry_run_error(capsys, tmp_path, "mnist", {"data_root": str(tmp_path / "oops")})
    assert f"data_root {tmp_path / 'oops'} is not a folder" in error


def test_a_data_root_naming_the_files_folder_itself_says_where_the_root_is(tmp_path: Path) -> None:
    _write_idx_set(tmp_path / "flat", seed=4, packed=True)
    with pytest.raises(DatasetUnavailable) as info:
        FashionMNIST(data_root=str(tmp_path / "flat")).check_available()
    assert "data_root is the folder above FashionMNIST/raw/" in info.value.message


def test_gz_files_are_unpacked_once_then_only_their_headers_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_idx_set(tmp_path / "data" / "MNIST" / "raw", seed=5, packed=True)
    unpacked: list[Path] = []
    real = torchvision_sets.unpack_gz
    monkeypatch.setattr(torchvision_sets, "unpack_gz", lambda path: unpacked.append(path) or real(path))
    torchvision_sets.MNIST(data_root=str(tmp_path / "data")).check_available()
    assert len(unpacked) == 4
    torchvision_sets.MNIST(data_root=str(tmp_path / "data")).check_available()
    assert len(unpacked) == 4


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason=f"dataset-fashion-mnist is not installed ({DEBIAN_FASHION})")
def test_real_fashion_mnist_passes_every_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path))
    FashionMNIST().check_available()  # unpacks and checks the 60,000 + 10,000 images and labels
    FashionMNIST().check_available()  # and again from the unpacked copy


# --- CelebA -----------------------------------------------------------------------------------------------------


def test_celeba_image_listed_but_missing_stops_the_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_celeba(tmp_path / "data")
    monkeypatch.setattr(torchvision.datasets.celeba, "check_integrity", _existence_only)
    (tmp_path / "data" / "celeba" / "img_align_celeba" / "000004.jpg").unlink()
    error = _dry_run_error(capsys, tmp_path, "celeba", {"data_root": str(tmp_path / "data")})
    assert "1 of the 6 images listed in" in error and "(the first: 000004.jpg)" in error


def test_celeba_unreadable_jpeg_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_celeba(tmp_path)
    monkeypatch.setattr(torchvision.datasets.celeba, "check_integrity", _existence_only)
    (tmp_path / "celeba" / "img_align_celeba" / "000002.jpg").write_bytes(b"")
    with pytest.raises(DatasetUnavailable, match=r"cannot decode .*000002\.jpg"):
        CelebA(data_root=str(tmp_path)).load("train")


def test_celeba_corrupt_cache_is_decoded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_celeba(tmp_path)
    monkeypatch.setattr(torchvision.datasets.celeba, "check_integrity", _existence_only)
    first = CelebA(data_root=str(tmp_path)).load("test")
    cache = tmp_path / "celeba" / "harness-test-64px-all.pt"
    cache.write_bytes(cache.read_bytes()[:100])
    again = CelebA(data_root=str(tmp_path)).load("test")
    assert (first.x == again.x).all() and len(cache.read_bytes()) > 100


def test_a_damaged_unpacked_copy_of_the_debian_files_says_delete_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_idx_set(tmp_path / "debian", seed=6, packed=True)
    monkeypatch.setattr(FashionMNIST, "debian_root", tmp_path / "debian")
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path / "cache"))
    FashionMNIST().check_available()  # unpacks the four files into the cache
    copy = tmp_path / "cache" / "FashionMNIST" / "raw" / TRAIN_LABELS
    copy.write_bytes(b"")
    with pytest.raises(DatasetUnavailable) as info:
        FashionMNIST().check_available()
    assert f"{copy}: the file is empty" in info.value.message
    assert info.value.fix == f"delete {copy}: the next run unpacks it again from {tmp_path / 'debian'}"
    copy.unlink()
    FashionMNIST().check_available()
