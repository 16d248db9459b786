"""The torchvision-backed datasets, read from tiny files written here in the exact layout torchvision reads."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.celeba
import torchvision.datasets.cifar
import torchvision.datasets.mnist
from PIL import Image

from harness import Dataset, DatasetUnavailable
from harness_plugins.datasets import torchvision_sets
from harness_plugins.datasets.torchvision_sets import CIFAR10, MNIST, CelebA, FashionMNIST

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()


def _existence_only(fpath: str, md5: str | None = None) -> bool:
    """torchvision's check_integrity without the published MD5 (the files here are not the published ones)."""
    return os.path.isfile(fpath)


# --- MNIST-format idx files -------------------------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    """The idx format: two zero bytes, type 0x08 (uint8), the number of dims, each dim big-endian, the data."""
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_idx_set(folder: Path, seed: int, packed: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Four idx files (5 train, 3 test images) in ``folder``, gzipped as published when ``packed``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n in (("train", "train", 5), ("test", "t10k", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            if packed:
                (folder / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
            else:
                (folder / name).write_bytes(_idx(array))
        written[split] = (images, labels)
    return written


def _assert_idx_split_loaded(ds: Dataset, written: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for split, (images, labels) in written.items():
        data = ds.load(split)  # type: ignore[arg-type]
        assert data.x.dtype == torch.uint8 and data.x.shape == (len(images), 1, 28, 28)
        assert torch.equal(data.x[:, 0], torch.from_numpy(images))
        assert data.labels is not None and data.labels.dtype == torch.int64
        assert torch.equal(data.labels, torch.from_numpy(labels).long())
        assert data.label_kind == "class" and data.label_names is not None and len(data.label_names) == 10


def test_torchvision_sets_register_under_their_yaml_names() -> None:
    registered: list[type[Dataset]] = []
    torchvision_sets.harness_register_datasets(registered.append)
    assert [cls.name for cls in registered] == ["mnist", "fashion-mnist", "cifar10", "celeba"]


def test_data_root_defaults_to_harness_data_root_then_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HARNESS_DATA_ROOT", "~/shared-data")
    assert MNIST().root == tmp_path / "shared-data"
    assert MNIST(data_root="~/mine").root == tmp_path / "mine"
    monkeypatch.delenv("HARNESS_DATA_ROOT")
    assert MNIST().root == tmp_path / ".cache" / "prior-harness" / "datasets"


def test_mnist_reads_idx_files_written_in_torchvision_layout(tmp_path: Path) -> None:
    written = _write_idx_set(tmp_path / "MNIST" / "raw", seed=0)
    ds = MNIST(data_root=str(tmp_path))
    ds.check_available()
    _assert_idx_split_loaded(ds, written)
    assert ds.load("train").label_names[0] == "0 - zero"


def test_mnist_unpacks_gz_idx_files_placed_in_its_raw_folder(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    written = _write_idx_set(raw, seed=1, packed=True)
    ds = MNIST(data_root=str(tmp_path))
    ds.check_available()
    _assert_idx_split_loaded(ds, written)
    assert (raw / "train-images-idx3-ubyte").is_file()
    assert not list(raw.glob(".*.part"))


def test_missing_mnist_raises_dataset_unavailable_naming_root_missing_files_and_fix(tmp_path: Path) -> None:
    ds = MNIST(data_root=str(tmp_path))
    with pytest.raises(DatasetUnavailable) as info:
        ds.check_available()
    assert str(tmp_path) in info.value.message
    assert "MNIST/raw/train-images-idx3-ubyte" in info.value.message
    assert info.value.fix is not None
    assert "download: true" in info.value.fix and str(tmp_path / "MNIST" / "raw") in info.value.fix
    with pytest.raises(DatasetUnavailable):
        ds.load("train")


def test_failed_download_becomes_one_line_dataset_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    with pytest.raises(DatasetUnavailable) as info:
        MNIST(data_root=str(tmp_path), download=True).check_available()
    assert "download" in info.value.message and "Temporary failure in name resolution" in info.value.message
    assert "\n" not in info.value.message and info.value.fix is not None


def test_fashion_mnist_without_data_root_falls_back_to_the_debian_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _write_idx_set(tmp_path / "debian", seed=2, packed=True)
    monkeypatch.setattr(FashionMNIST, "debian_root", tmp_path / "debian")
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path / "root"))
    ds = FashionMNIST()
    ds.check_available()
    _assert_idx_split_loaded(ds, written)
    assert ds.load("test").label_names[0] == "T-shirt/top"
    # Unpacked once into the root, so later runs read it like any torchvision download.
    assert (tmp_path / "root" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()


def test_fashion_mnist_prefers_files_under_the_root_to_the_debian_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_idx_set(tmp_path / "debian", seed=3, packed=True)
    written = _write_idx_set(tmp_path / "root" / "FashionMNIST" / "raw", seed=4)
    monkeypatch.setattr(FashionMNIST, "debian_root", tmp_path / "debian")
    ds = FashionMNIST(data_root=str(tmp_path / "root"))
    ds.check_available()
    _assert_idx_split_loaded(ds, written)


def test_missing_fashion_mnist_names_the_debian_folder_and_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FashionMNIST, "debian_root", tmp_path / "no-package")
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path / "root"))
    with pytest.raises(DatasetUnavailable) as info:
        FashionMNIST().check_available()
    assert str(tmp_path / "root") in info.value.message and str(tmp_path / "no-package") in info.value.message
    assert info.value.fix is not None and "apt-get install dataset-fashion-mnist" in info.value.fix


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason=f"dataset-fashion-mnist is not installed ({DEBIAN_FASHION})")
def test_debian_fashion_mnist_package_loads_60000_train_and_10000_test_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path))
    ds = FashionMNIST()
    ds.check_available()
    for split, n in (("train", 60000), ("test", 10000)):
        data = ds.load(split)  # type: ignore[arg-type]
        assert data.x.shape == (n, 1, 28, 28) and data.x.dtype == torch.uint8
        assert data.labels is not None
        # Fashion-MNIST is balanced: a tenth of each split per class.
        assert torch.bincount(data.labels).tolist() == [n // 10] * 10


# --- CIFAR-10 python pickles ------------------------------------------------------------------------------------


def _write_cifar10(root: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    """cifar-10-batches-py: five training batches and a test batch of rows R(1024) G(1024) B(1024), plus the meta."""
    rng = np.random.default_rng(5)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches: dict[str, tuple[np.ndarray, list[int]]] = {}
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=2).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels, "filenames": ["a.png", "b.png"]}, f)
        batches[name] = (data, labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": 2, "num_vis": 3072}, f)
    train = [batches[f"data_batch_{k}"] for k in range(1, 6)]
    return {
        "train": (np.concatenate([d for d, _ in train]), [label for _, labels in train for label in labels]),
        "test": batches["test_batch"],
    }


def test_cifar10_reads_python_batches_as_chw_uint8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = _write_cifar10(tmp_path)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", _existence_only)
    ds = CIFAR10(data_root=str(tmp_path))
    ds.check_available()
    for split, (data, labels) in written.items():
        loaded = ds.load(split)  # type: ignore[arg-type]
        assert loaded.x.dtype == torch.uint8 and loaded.x.shape == (len(labels), 3, 32, 32)
        assert loaded.x.is_contiguous()
        assert torch.equal(loaded.x, torch.from_numpy(data).reshape(-1, 3, 32, 32))
        assert loaded.labels is not None and loaded.labels.dtype == torch.int64
        assert loaded.labels.tolist() == labels
        assert loaded.label_names is not None and loaded.label_names[9] == "truck"


def test_cifar10_failing_torchvision_checksums_is_reported_as_rejected_files(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    with pytest.raises(DatasetUnavailable) as info:
        CIFAR10(data_root=str(tmp_path)).check_available()
    assert "rejected" in info.value.message and "missing" not in info.value.message
    assert str(tmp_path) in info.value.message


def test_missing_cifar10_names_the_batches_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable) as info:
        CIFAR10(data_root=str(tmp_path)).check_available()
    assert "cifar-10-batches-py/data_batch_1" in info.value.message and str(tmp_path) in info.value.message
    assert info.value.fix is not None and "cifar-10-python.tar.gz" in info.value.fix


# --- CelebA -----------------------------------------------------------------------------------------------------

#: Per image: its partition (0 train, 1 valid, 2 test) and the colour of its central 140×140 face crop.
CELEBA_IMAGES = [
    (0, (200, 30, 30)),
    (0, (30, 200, 30)),
    (0, (30, 30, 200)),
    (1, (128, 128, 128)),
    (2, (220, 220, 40)),
    (2, (40, 220, 220)),
]
#: Outside the centre crop: a colour the crop must not let in.
CELEBA_BORDER = (0, 0, 0)


def _write_celeba(root: Path) -> torch.Tensor:
    """torchvision's CelebA layout: aligned 178×218 JPEGs and the five annotation files. Returns the ±1 attributes."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    n = len(CELEBA_IMAGES)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name, (_, colour) in zip(names, CELEBA_IMAGES):
        image = Image.new("RGB", (178, 218), CELEBA_BORDER)
        image.paste(colour, (19, 39, 159, 179))  # the central 140×140
        image.save(folder / "img_align_celeba" / name, quality=100, subsampling=0)
    attributes = torch.randint(0, 2, (n, 40), generator=torch.Generator().manual_seed(6)) * 2 - 1

    def write(file: str, header: str | None, rows: list[str]) -> None:
        lines = [] if header is None else [str(n), header]
        (folder / file).write_text("\n".join(lines + [f"{name} {row}" for name, row in zip(names, rows)]) + "\n")

    write("list_eval_partition.txt", None, [str(part) for part, _ in CELEBA_IMAGES])
    write("identity_CelebA.txt", None, [str(10 + i) for i in range(n)])
    write("list_bbox_celeba.txt", "image_id x_1 y_1 width height", ["   95  71 226 313"] * n)
    points = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
    landmarks = " ".join(f"{point}_{axis}" for point in points for axis in "xy")
    write("list_landmarks_align_celeba.txt", landmarks, ["69  109  106  113   77  142   73  152  108  154"] * n)
    # As published: the header line ends with a space, values are right-aligned in columns of two.
    attribute_rows = [" ".join(f"{v:2d}" for v in row) for row in attributes.tolist()]
    write("list_attr_celeba.txt", " ".join(CELEBA_ATTRIBUTES) + " ", attribute_rows)
    return attributes


def _expected_faces(partition: int) -> torch.Tensor:
    colours = [colour for part, colour in CELEBA_IMAGES if part == partition]
    return torch.tensor(colours, dtype=torch.uint8)[:, :, None, None].expand(-1, -1, 64, 64)


def test_celeba_center_crops_to_64px_with_40_binary_attributes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attributes = _write_celeba(tmp_path)
    monkeypatch.setattr(torchvision.datasets.celeba, "check_integrity", _existence_only)
    ds = CelebA(data_root=str(tmp_path))
    ds.check_available()
    for split, partition in (("train", 0), ("test", 2)):
        data = ds.load(split)  # type: ignore[arg-type]
        expected = _expected_faces(partition)
        assert data.x.dtype == torch.uint8 and data.x.shape == expected.shape
        # JPEG is lossy; a crop that let the black border in would be off by far more than this.
        assert (data.x.int() - expected.int()).abs().max() <= 3
        rows = [i for i, (part, _) in enumerate(CELEBA_IMAGES) if part == partition]
        assert data.labels is not None and data.labels.dtype == torch.int64 and data.labels.shape == (len(rows), 40)
        assert torch.equal(data.labels, (attributes[rows] + 1) // 2)
        assert data.label_kind == "attributes" and data.label_names == tuple(CELEBA_ATTRIBUTES)


def test_celeba_decodes_once_and_then_loads_from_its_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_celeba(tmp_path)
    monkeypatch.setattr(torchvision.datasets.celeba, "check_integrity", _existence_only)
    first = CelebA(data_root=str(tmp_path), max_images=2).load("train")
    assert len(first) == 2
    assert (tmp_path / "celeba" / "harness-train-64px-2.pt").is_file()
    for image in (tmp_path / "celeba" / "img_align_celeba").iterdir():
        image.unlink()  # a second decode would now fail: only the cache can answer
    again = CelebA(data_root=str(tmp_path), max_images=2).load("train")
    assert torch.equal(first.x, again.x) and torch.equal(first.labels, again.labels)
    assert first.label_names == again.label_names


def test_missing_celeba_names_torchvision_folder_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable) as info:
        CelebA(data_root=str(tmp_path)).check_available()
    assert str(tmp_path) in info.value.message and "celeba/img_align_celeba" in info.value.message
    assert info.value.fix is not None
    for part in ("celeba/", "img_align_celeba/", "list_attr_celeba.txt", "list_eval_partition.txt"):
        assert part in info.value.fix


def test_celeba_rejects_a_max_images_below_one() -> None:
    with pytest.raises(ValueError, match="max_images"):
        CelebA(max_images=0)
