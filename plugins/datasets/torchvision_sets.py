"""``mnist``, ``fashion-mnist``, ``cifar10`` and ``celeba`` through torchvision's dataset classes, from a local root.

Nothing downloads unless ``download: true``. Missing or damaged files raise ``DatasetUnavailable`` naming the file,
what is wrong with it and how to get a good copy, so a benchmark fails before any cell trains. A ``data_root`` that
is given is the only place looked in (it must exist unless downloading); only without one are ``$HARNESS_DATA_ROOT``
or the per-user cache used, and Fashion-MNIST may then be unpacked there from Debian's package.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field
from torchvision import datasets, transforms
from torchvision.datasets.vision import VisionDataset
from tqdm import tqdm

from harness import Dataset, DatasetUnavailable, DataSplit, hookimpl
from harness.api import checked_options

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


#: The idx type byte of unsigned bytes, the only type MNIST-format sets use.
IDX_UINT8 = 0x08
#: The first bytes of a gzip stream: an idx file that starts with them was never unpacked.
GZIP_MAGIC = b"\x1f\x8b"


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

    @checked_options
    def __init__(
        self, data_root: str | None = None, download: bool = False, max_train: Annotated[int, Field(ge=1)] | None = None
    ) -> None:
        self.root = resolve_root(data_root)
        #: A root the user named: the only place looked in, never replaced by another copy of the set.
        self.explicit_root = data_root is not None
        self.download = download
        #: Keep only the first ``max_train`` training images (CPU-sized runs); the test split stays whole.
        self.max_train = max_train

    def check_available(self) -> None:
        self._check_root()
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
        self._check_files()
        for split in ("train", "test"):
            self._open(split)

    def _check_root(self) -> None:
        """A ``data_root`` that was given must be a folder: a typo must not quietly mean "use other data"."""
        if not self.explicit_root or self.root.is_dir() or self.download:
            return  # the default root is created on demand, and so is one that a download will fill
        what = "is not a folder" if self.root.exists() else "does not exist"
        raise DatasetUnavailable(
            f"{self.name}: data_root {self.root} {what}",
            fix=f"correct data_root, or create it and {self._manual_fix()}",
        )

    def _check_files(self) -> None:
        """Raise DatasetUnavailable naming a file torchvision would choke on; nothing to check for most sets."""

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
        except Exception as exc:  # noqa: BLE001 - "not found or corrupted", or a parser choking on a damaged file
            missing = [path for path in self._required() if not (self.root / path).exists()]
            error = _one_line(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {_one_line(exc)}"
            what = (
                f"missing {', '.join(missing)}"
                if missing
                else f"torchvision rejected the files ({error}); a checksum mismatch means a partial copy"
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


class IdxError(Exception):
    """An idx file torchvision would fail on, or whose contents make no dataset: ``where`` and what is wrong."""

    def __init__(self, where: Path, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where


@dataclass(frozen=True)
class IdxFile:
    """One idx file whose header agrees with its size: where it is, its dims, and (for labels) its values."""

    where: Path
    dims: tuple[int, ...]
    values: bytes | None = None


def parse_idx(where: Path, head: bytes, size: int, ndim: int) -> tuple[int, ...]:
    """The dims of a uint8 idx file with ``ndim`` dims, from its first bytes and its size; IdxError if they disagree.

    The format: two zero bytes, the type byte (0x08, uint8), the number of dims, each dim as a big-endian uint32,
    then the values. torchvision asserts on some of this and reshapes blindly on the rest.
    """
    if size == 0:
        raise IdxError(where, "the file is empty")
    magic = IDX_UINT8 << 8 | ndim
    if len(head) < 4 or head[:4] != struct.pack(">I", magic):
        found = f"0x{head[:4].hex()}" if len(head) >= 4 else f"only {size} byte(s)"
        hint = " (it is still gzipped: unpack it or name it .gz)" if head[:2] == GZIP_MAGIC else ""
        raise IdxError(where, f"bad magic number {found}, expected 0x{magic:08x} (uint8, {ndim} dims){hint}")
    header = 4 + 4 * ndim
    if size < header:
        raise IdxError(where, f"the file ends inside its {header}-byte header ({size} bytes)")
    dims = struct.unpack(f">{ndim}I", head[4:header])
    expected = header + math.prod(dims)
    if size != expected:
        shape = "×".join(map(str, dims))
        how = "truncated" if size < expected else "has trailing bytes"
        says = f"its header says {shape} values ({expected} bytes with the header)"
        raise IdxError(where, f"{says} but the file has {size}: {how}")
    if dims[0] == 0:
        raise IdxError(where, "the file holds no examples")
    return dims


def read_idx_file(path: Path, ndim: int, with_values: bool) -> IdxFile:
    """An unpacked idx file, checked; only the header is read unless ``with_values`` (labels are small)."""
    with open(path, "rb") as f:
        data = f.read() if with_values else f.read(4 + 4 * ndim)
    dims = parse_idx(path, data, path.stat().st_size, ndim)
    return IdxFile(path, dims, data[4 + 4 * ndim :] if with_values else None)


def read_idx_bytes(where: Path, data: bytes, ndim: int) -> IdxFile:
    """An idx file held in memory (unpacked from ``where``), checked."""
    dims = parse_idx(where, data, len(data), ndim)
    return IdxFile(where, dims, data[4 + 4 * ndim :] if ndim == 1 else None)


def unpack_gz(path: Path) -> bytes:
    """The whole of a .gz file; IdxError when it is not gzip or ends early (a partial download)."""
    try:
        with gzip.open(path) as f:
            return f.read()
    except EOFError:
        raise IdxError(path, "the gzip stream ends early: the file is truncated") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise IdxError(path, f"not a valid gzip file ({_one_line(exc)})") from None


def check_idx_set(files: Mapping[str, IdxFile], classes: int) -> None:
    """Raise IdxError unless the four files make a dataset: one label per image, one image size, labels < classes."""
    shapes = {}
    for prefix in ("train", "t10k"):
        images, labels = files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]
        if images.dims[0] != labels.dims[0]:
            raise IdxError(
                images.where, f"{images.dims[0]} images but {labels.where.name} has {labels.dims[0]} labels"
            )
        if 0 in images.dims[1:]:
            raise IdxError(images.where, f"images of size {images.dims[1]}×{images.dims[2]}")
        assert labels.values is not None  # labels are always read whole
        top = max(labels.values)
        if top >= classes:
            at = labels.values.index(top)
            raise IdxError(
                labels.where, f"label {top} at index {at} is out of range: the set has classes 0-{classes - 1}"
            )
        shapes[prefix] = images
    train, test = shapes["train"], shapes["t10k"]
    if train.dims[1:] != test.dims[1:]:
        raise IdxError(
            test.where,
            f"images are {test.dims[1]}×{test.dims[2]} but the training images ({train.where.name}) are "
            f"{train.dims[1]}×{train.dims[2]}",
        )


class _IdxDataset(_TorchvisionDataset):
    """An MNIST-format set: uint8 [N, 1, 28, 28] read from the idx files in ROOT/<torchvision class>/raw/."""

    tv_class: ClassVar[type[datasets.MNIST]]
    #: A folder of the four ``.gz`` idx files installed by a distribution package, used when no root was given.
    debian_root: ClassVar[Path | None] = None

    @property
    def raw(self) -> Path:
        return self.root / self.tv_class.__name__ / "raw"

    @property
    def _fallback(self) -> Path | None:
        """The distribution package's folder, searched only when the user named no root of their own."""
        return None if self.explicit_root else self.debian_root

    def _required(self) -> tuple[str, ...]:
        return tuple(str((self.raw / name).relative_to(self.root)) for name in IDX_FILES)

    def _manual_fix(self) -> str:
        return f"place {', '.join(f'{name}.gz' for name in IDX_FILES)} (unpacked or not) under {self.raw}/"

    def _prepare(self) -> None:
        """torchvision reads only unpacked idx files: unpack ``.gz`` copies from raw/ itself or the Debian folder.

        All four are unpacked into memory and checked before any is written, so a damaged .gz never leaves a
        damaged copy behind that later runs would trust.
        """
        if all((self.raw / name).is_file() for name in IDX_FILES):
            return
        sources = [self.raw] if self._fallback is None else [self.raw, self._fallback]
        # All four from one folder, so train and test never come from two different copies.
        source = next((s for s in sources if all((s / f"{name}.gz").is_file() for name in IDX_FILES)), None)
        if source is None:
            return
        try:
            unpacked = {name: unpack_gz(source / f"{name}.gz") for name in IDX_FILES}
            check_idx_set(
                {name: read_idx_bytes(source / f"{name}.gz", data, _ndim(name)) for name, data in unpacked.items()},
                len(self.tv_class.classes),
            )
        except IdxError as exc:
            raise self._damaged(exc) from None
        try:
            for name, data in unpacked.items():
                with _replacing(self.raw / name) as f:
                    f.write(data)
        except OSError as exc:
            raise DatasetUnavailable(
                f"{self.name}: cannot unpack the idx files of {source} into {self.raw}: {_one_line(exc)}",
                fix="set data_root (or HARNESS_DATA_ROOT) to a writable folder",
            ) from exc

    def _check_files(self) -> None:
        """The unpacked files torchvision will read: headers against sizes, counts, image size, label range."""
        if not all((self.raw / name).is_file() for name in IDX_FILES):
            return  # _open names the missing ones
        try:
            files = {name: read_idx_file(self.raw / name, _ndim(name), _ndim(name) == 1) for name in IDX_FILES}
            check_idx_set(files, len(self.tv_class.classes))
        except IdxError as exc:
            raise self._damaged(exc) from None
        except OSError as exc:  # unreadable: permissions, a folder where a file should be
            raise DatasetUnavailable(f"{self.name}: cannot read {self.raw}: {_one_line(exc)}") from None

    def _damaged(self, exc: IdxError) -> DatasetUnavailable:
        unpacked_copy = exc.where.parent == self.raw and exc.where.suffix != ".gz"
        if self.debian_root is not None and exc.where.parent == self.debian_root:
            reinstall = "reinstall the package that put it there (apt-get install --reinstall dataset-fashion-mnist)"
            fix = f"{reinstall}, or {self._manual_fix()}"
        elif unpacked_copy and self._fallback is not None and (self._fallback / f"{exc.where.name}.gz").is_file():
            fix = f"delete {exc.where}: the next run unpacks it again from {self._fallback}"
        else:
            again = " (or delete it and set download: true when online)" if unpacked_copy else ""
            fix = f"replace {exc.where.name} with an intact copy{again}: {self._manual_fix()}"
        return DatasetUnavailable(f"{self.name}: {exc}", fix=fix)

    def _looked_elsewhere(self) -> str:
        if any((self.root / f"{name}{ext}").is_file() for name in IDX_FILES for ext in ("", ".gz")):
            # A common slip: data_root naming the folder of the files rather than the root above <Class>/raw/.
            above = f"{self.tv_class.__name__}/raw/"
            return f" (the idx files in {self.root} itself are not read: data_root is the folder above {above})"
        return "" if self._fallback is None else f", and no .gz idx files in {self._fallback}"

    def _to_split(self, ds: datasets.MNIST) -> DataSplit:
        return DataSplit(ds.data.unsqueeze(1), ds.targets, "class", tuple(ds.classes))


def _ndim(idx_name: str) -> int:
    """3 for images (count, rows, columns), 1 for labels: the digit in ``...-idx3-ubyte``."""
    return int(idx_name.split("-idx")[1][0])


class MNIST(_IdxDataset):
    name: ClassVar[str] = "mnist"
    tv_class = datasets.MNIST


class FashionMNIST(_IdxDataset):
    """Also found in Debian's ``dataset-fashion-mnist`` package, unpacked into the root on first use."""

    name: ClassVar[str] = "fashion-mnist"
    tv_class = datasets.FashionMNIST
    debian_root: ClassVar[Path | None] = Path("/usr/share/datasets/fashion-mnist")

    def _manual_fix(self) -> str:
        if self.explicit_root and self.debian_root is not None and self.debian_root.is_dir():
            return f"{super()._manual_fix()}, or leave data_root out to use the copy in {self.debian_root}"
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

    @checked_options
    def __init__(
        self,
        data_root: str | None = None,
        download: bool = False,
        max_images: Annotated[int, Field(ge=1)] | None = None,
    ) -> None:
        super().__init__(data_root, download)
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

    def _check_files(self) -> None:
        """Every image the partition file lists is in img_align_celeba/: a partial copy fails here, not mid-decode.

        Names only (one directory listing): decoding 200k JPEGs to check them would take minutes.
        """
        folder = self.root / "celeba"
        partition, images = folder / "list_eval_partition.txt", folder / "img_align_celeba"
        if not (partition.is_file() and images.is_dir()):
            return  # _open names what is missing
        listed = [line.split()[0] for line in partition.read_text(errors="replace").splitlines() if line.strip()]
        present = set(os.listdir(images))
        missing = [name for name in listed if name not in present]
        if missing:
            raise DatasetUnavailable(
                f"{self.name}: {len(missing)} of the {len(listed)} images listed in {partition} are not in {images} "
                f"(the first: {missing[0]})",
                fix=f"extract all of img_align_celeba.zip into {folder}/",
            )

    def load(self, split: Split) -> DataSplit:
        count = "all" if self.max_images is None else self.max_images
        cache = self.root / "celeba" / f"harness-{split}-{self.size}px-{count}.pt"
        saved = self._cached(cache) if cache.is_file() else None
        if saved is None:
            saved = self._decode(split, cache)
        return DataSplit(saved["x"], saved["attributes"], "attributes", tuple(saved["attribute_names"]))

    @staticmethod
    def _cached(cache: Path) -> dict[str, Any] | None:
        """The decoded split, or None when the cache file is unreadable (then it is decoded again and replaced)."""
        try:
            saved = torch.load(cache, weights_only=True)
        except Exception:  # noqa: BLE001 - a truncated or foreign file: torch raises several kinds
            return None
        keys = {"x", "attributes", "attribute_names"}
        return saved if isinstance(saved, dict) and keys <= saved.keys() else None

    def _decode(self, split: Split, cache: Path) -> dict[str, Any]:
        ds = self._open(split)
        n = len(ds) if self.max_images is None else min(self.max_images, len(ds))
        x = torch.empty((n, 3, self.size, self.size), dtype=torch.uint8)
        # One image at a time: ~1,400 img/s on one core, so a few minutes for the train split, once. A thread pool
        # measured no faster, and DataLoader workers cannot start inside a daemonic worker process.
        for i in tqdm(range(n), desc=f"celeba {split}: decoding JPEGs", unit="img"):
            try:
                x[i] = ds[i][0]
            except (OSError, ValueError) as exc:  # PIL: not an image, or a truncated JPEG
                image = self.root / "celeba" / "img_align_celeba" / ds.filename[i]
                raise DatasetUnavailable(
                    f"{self.name}: cannot decode {image}: {_one_line(exc)}",
                    fix="replace it with the published image from img_align_celeba.zip",
                ) from None
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
