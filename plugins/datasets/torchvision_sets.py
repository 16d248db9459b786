"""``mnist``, ``fashion-mnist``, ``cifar10`` and ``celeba`` through torchvision's dataset classes, from a local root.

Nothing downloads unless ``download: true``. Missing files raise ``DatasetUnavailable`` naming what is missing,
where it was looked for and how to get it, so a benchmark fails before any cell trains.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

import torch
from torchvision import datasets, transforms
from torchvision.datasets.vision import VisionDataset
from tqdm import tqdm

from harness import Dataset, DatasetUnavailable, DataSplit, hookimpl

Split = Literal["train", "test"]

DEFAULT_ROOT = "~/.cache/prior-harness/datasets"
ROOT_ENV = "HARNESS_DATA_ROOT"

#: The four files of an MNIST-format set, as torchvision reads them (uncompressed) from ROOT/<Class>/raw/.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def resolve_root(data_root: str | None) -> Path:
    """The ``data_root`` option, else ``$HARNESS_DATA_ROOT``, else the per-user cache: one variable moves them all."""
    return Path(data_root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT).expanduser()


def _one_line(exc: BaseException) -> str:
    # torchvision's download errors span several lines (one per mirror); the CLI prints one.
    return " ".join(str(exc).split()) or type(exc).__name__


@contextmanager
def _replacing(dst: Path) -> Iterator[IO[bytes]]:
    """A file that appears at ``dst`` only once complete.

    torchvision trusts an idx file that merely exists, and so does the CelebA cache: an interrupted write must not
    leave a truncated one behind.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile: its files are private (0600), and a data root is often shared. The pid keeps writers apart.
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _TorchvisionDataset(Dataset):
    """A torchvision dataset under one root: availability checks, downloads and the errors that explain them."""

    tv_class: ClassVar[type[VisionDataset]]

    def __init__(self, data_root: str | None = None, download: bool = False, max_train: int | None = None) -> None:
        if max_train is not None and max_train < 1:
            raise ValueError(f"max_train must be at least 1 or null (the whole split), got {max_train}")
        self.root = resolve_root(data_root)
        self.download = download
        #: Keep only the first ``max_train`` training images (CPU-sized runs); the test split stays whole.
        self.max_train = max_train

    def check_available(self) -> None:
        self._prepare()
        if self.download:
            try:
                # One split is enough: torchvision fetches every file of the set, and skips those already present.
                self._torchvision("train", download=True)
            except Exception as exc:  # noqa: BLE001 - urllib, gdown and checksum failures all mean "not downloaded"
                raise DatasetUnavailable(
                    f"{self.name}: download into {self.root} failed: {_one_line(exc)}",
                    fix=f"check the network, or {self._manual_fix()}",
                ) from exc
        for split in ("train", "test"):
            self._open(split)

    def load(self, split: Split) -> DataSplit:
        data = self._to_split(self._open(split))
        if split == "train" and self.max_train is not None and self.max_train < len(data):
            keep = slice(0, self.max_train)
            labels = None if data.labels is None else data.labels[keep]
            data = DataSplit(data.x[keep], labels, data.label_kind, data.label_names)
        return data

    def _prepare(self) -> None:
        """Put files found elsewhere where torchvision looks; nothing to do for most sets."""

    def _torchvision(self, split: Split, download: bool) -> Any:
        return self.tv_class(str(self.root), train=split == "train", download=download)

    def _to_split(self, ds: Any) -> DataSplit:
        raise NotImplementedError

    def _open(self, split: Split) -> Any:
        try:
            return self._torchvision(split, download=False)
        except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
            missing = [path for path in self._required() if not (self.root / path).exists()]
            what = (
                f"missing {', '.join(missing)}"
                if missing
                else f"torchvision rejected the files ({_one_line(exc)}); a checksum mismatch means a partial copy"
            )
            raise DatasetUnavailable(
                f"{self.name}: {what} under {self.root}{self._looked_elsewhere()}",
                fix=f"set download: true when online, or {self._manual_fix()}",
            ) from None

    def _required(self) -> tuple[str, ...]:
        """Paths under the root that torchvision needs; the missing ones are named in the error."""
        raise NotImplementedError

    def _manual_fix(self) -> str:
        """How to get the files by hand."""
        raise NotImplementedError

    def _looked_elsewhere(self) -> str:
        return ""


class _IdxDataset(_TorchvisionDataset):
    """An MNIST-format set: uint8 [N, 1, 28, 28] read from the idx files in ROOT/<torchvision class>/raw/."""

    tv_class: ClassVar[type[datasets.MNIST]]
    #: A folder of the four ``.gz`` idx files installed by a distribution package, used when the root has none.
    debian_root: ClassVar[Path | None] = None

    @property
    def raw(self) -> Path:
        return self.root / self.tv_class.__name__ / "raw"

    def _required(self) -> tuple[str, ...]:
        return tuple(str((self.raw / name).relative_to(self.root)) for name in IDX_FILES)

    def _manual_fix(self) -> str:
        return f"place {', '.join(f'{name}.gz' for name in IDX_FILES)} (unpacked or not) under {self.raw}/"

    def _prepare(self) -> None:
        """torchvision reads only unpacked idx files: unpack ``.gz`` copies from raw/ itself or the Debian folder."""
        if all((self.raw / name).is_file() for name in IDX_FILES):
            return
        sources = [self.raw] if self.debian_root is None else [self.raw, self.debian_root]
        # All four from one folder, so train and test never come from two different copies.
        source = next((s for s in sources if all((s / f"{name}.gz").is_file() for name in IDX_FILES)), None)
        if source is None:
            return
        try:
            for name in IDX_FILES:
                with gzip.open(source / f"{name}.gz") as packed, _replacing(self.raw / name) as unpacked:
                    shutil.copyfileobj(packed, unpacked)
        except OSError as exc:
            raise DatasetUnavailable(
                f"{self.name}: cannot unpack the idx files of {source} into {self.raw}: {_one_line(exc)}",
                fix="set data_root (or HARNESS_DATA_ROOT) to a writable folder",
            ) from exc

    def _looked_elsewhere(self) -> str:
        return "" if self.debian_root is None else f", and no .gz idx files in {self.debian_root}"

    def _to_split(self, ds: datasets.MNIST) -> DataSplit:
        return DataSplit(ds.data.unsqueeze(1), ds.targets, "class", tuple(ds.classes))


class MNIST(_IdxDataset):
    name: ClassVar[str] = "mnist"
    tv_class = datasets.MNIST


class FashionMNIST(_IdxDataset):
    """Also found in Debian's ``dataset-fashion-mnist`` package, unpacked into the root on first use."""

    name: ClassVar[str] = "fashion-mnist"
    tv_class = datasets.FashionMNIST
    debian_root: ClassVar[Path | None] = Path("/usr/share/datasets/fashion-mnist")

    def _manual_fix(self) -> str:
        return f"{super()._manual_fix()}, or apt-get install dataset-fashion-mnist"


class CIFAR10(_TorchvisionDataset):
    """uint8 [N, 3, 32, 32] from torchvision's python pickles (``cifar-10-batches-py``)."""

    name: ClassVar[str] = "cifar10"
    tv_class = datasets.CIFAR10

    def _required(self) -> tuple[str, ...]:
        tv = datasets.CIFAR10
        names = [name for name, _ in tv.train_list + tv.test_list] + [tv.meta["filename"]]
        return tuple(f"{tv.base_folder}/{name}" for name in names)

    def _manual_fix(self) -> str:
        return f"extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into {self.root}/"

    def _to_split(self, ds: datasets.CIFAR10) -> DataSplit:
        # torchvision holds HWC numpy arrays; the harness wants CHW.
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return DataSplit(x, torch.tensor(ds.targets, dtype=torch.int64), "class", tuple(ds.classes))


class CelebA(_TorchvisionDataset):
    """uint8 [N, 3, 64, 64] aligned faces with their 40 binary attributes; train and test are the official splits.

    Decoding ~200k JPEGs takes minutes, so each split is decoded once and cached next to the images as a .pt file.
    """

    name: ClassVar[str] = "celeba"
    tv_class = datasets.CelebA
    files: ClassVar[tuple[str, ...]] = (
        "img_align_celeba",
        "list_attr_celeba.txt",
        "list_eval_partition.txt",
        "identity_CelebA.txt",
        "list_bbox_celeba.txt",
        "list_landmarks_align_celeba.txt",
    )
    #: The usual crop for 64×64 CelebA: the central 140×140 of the 178×218 aligned face, then resized.
    crop: ClassVar[int] = 140
    size: ClassVar[int] = 64

    def __init__(self, data_root: str | None = None, download: bool = False, max_images: int | None = None) -> None:
        super().__init__(data_root, download)
        if max_images is not None and max_images < 1:
            raise ValueError(f"max_images must be at least 1 or null (all images), got {max_images}")
        self.max_images = max_images

    def _required(self) -> tuple[str, ...]:
        return tuple(f"celeba/{name}" for name in self.files)

    def _manual_fix(self) -> str:
        return (
            f"place torchvision's layout under {self.root}/celeba/: img_align_celeba/ (the aligned 178x218 JPEGs), "
            f"{', '.join(self.files[1:])} (download: true needs gdown and often hits Google Drive's quota)"
        )

    def _torchvision(self, split: Split, download: bool) -> datasets.CelebA:
        transform = transforms.Compose(
            [transforms.CenterCrop(self.crop), transforms.Resize((self.size, self.size)), transforms.PILToTensor()]
        )
        return datasets.CelebA(str(self.root), split=split, target_type="attr", transform=transform, download=download)

    def load(self, split: Split) -> DataSplit:
        count = "all" if self.max_images is None else self.max_images
        cache = self.root / "celeba" / f"harness-{split}-{self.size}px-{count}.pt"
        saved = torch.load(cache, weights_only=True) if cache.is_file() else self._decode(split, cache)
        return DataSplit(saved["x"], saved["attributes"], "attributes", tuple(saved["attribute_names"]))

    def _decode(self, split: Split, cache: Path) -> dict[str, Any]:
        ds = self._open(split)
        n = len(ds) if self.max_images is None else min(self.max_images, len(ds))
        x = torch.empty((n, 3, self.size, self.size), dtype=torch.uint8)
        # One image at a time: ~1,400 img/s on one core, so a few minutes for the train split, once. A thread pool
        # measured no faster, and DataLoader workers cannot start inside a daemonic worker process.
        for i in tqdm(range(n), desc=f"celeba {split}: decoding JPEGs", unit="img"):
            x[i] = ds[i][0]
        saved = {
            "x": x,
            "attributes": ds.attr[:n].clone(),
            # The published list_attr_celeba.txt ends its header line with a space, which torchvision's csv parsing
            # keeps as an empty 41st name.
            "attribute_names": [name for name in ds.attr_names if name],
        }
        with _replacing(cache) as f:
            torch.save(saved, f)
        return saved


@hookimpl
def harness_register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    register(MNIST)
    register(FashionMNIST)
    register(CIFAR10)
    register(CelebA)
