"""``paired-images``: image-to-image translation data in pix2pix's side-by-side layout, for conditional models.

pix2pix's datasets (edges2shoes, facades, maps, cityscapes, night2day) come as one folder per split,
``ROOT/train/*.jpg`` and ``ROOT/val/*.jpg`` (some also ``test/``); each file is one image twice as wide as high whose
left half is A and right half is B. ``load`` cuts every file into its halves, resizes each to ``size``×``size`` and
returns the half to generate as ``DataSplit.x`` and the other as ``DataSplit.cond`` (both uint8 [N, C, size, size],
row i of one paired with row i of the other); ``direction`` says which is which. There are no labels.
Files are read in sorted name order, so every run sees the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from torch import Tensor

from harness import Dataset, DatasetUnavailable, DataSplit, hookimpl
from harness.api import checked_options
from harness.progress import bar

Split = Literal["train", "test"]

#: What the folders may hold; compared lower-cased, so ``.JPG`` counts too.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Where pix2pix's archives are published, for the fix line of a missing folder.
ARCHIVES_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/"
#: From this many files (a few seconds at ~1 ms per 256×512 JPEG) a log without a bar says what it is waiting for.
ANNOUNCE_FILES = 5000


class PairedImages(Dataset):
    """Side-by-side A|B image pairs (pix2pix's layout): one half is the image to generate, the other its condition."""

    name: ClassVar[str] = "paired-images"
    provides_condition: ClassVar[bool] = True

    @checked_options
    def __init__(
        self,
        root: Annotated[str, Field(description="the folder holding the split folders, e.g. ~/data/edges2shoes")],
        direction: Annotated[
            Literal["AtoB", "BtoA"],
            Field(description="AtoB generates the right half B from the left half A; BtoA the reverse"),
        ] = "AtoB",
        size: Annotated[int, Field(ge=8, description="pixels per side each half is resized to")] = 64,
        channels: Annotated[Literal[1, 3], Field(description="1 converts to grayscale")] = 3,
        train_split: Annotated[str, Field(description="the training split's subfolder of root")] = "train",
        test_split: Annotated[str, Field(description="the test split's subfolder of root")] = "val",
        max_train: Annotated[int, Field(ge=1, description="keep the first N training files, in name order")]
        | None = None,
        max_test: Annotated[int, Field(ge=1, description="keep the first N test files, in name order")] | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.direction = direction
        self.size = size
        self.channels = channels
        self.split_folders: dict[Split, str] = {"train": train_split, "test": test_split}
        self.max_files: dict[Split, int | None] = {"train": max_train, "test": max_test}

    def check_available(self) -> None:
        """Root and both split folders exist and hold image files; the images themselves are checked by ``load``."""
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DatasetUnavailable(
                f"{self.name}: root {self.root} {what}", fix=f"correct root, or {self._how_to_get_the_data()}"
            )
        for split in ("train", "test"):
            self._image_files(split)

    def load(self, split: Split) -> DataSplit:
        files = self._image_files(split)[: self.max_files[split]]
        shown = bar(files, desc=f"{self.name} {split}: decoding", unit="image", announce=len(files) >= ANNOUNCE_FILES)
        pairs = [self._read_pair(path) for path in shown]
        a = torch.stack([a for a, _ in pairs])
        b = torch.stack([b for _, b in pairs])
        generated, condition = (b, a) if self.direction == "AtoB" else (a, b)
        return DataSplit(x=generated, labels=None, cond=condition)

    def _image_files(self, split: Split) -> list[Path]:
        """The split's image files in sorted name order; DatasetUnavailable naming the folder when there are none."""
        option = f"{split}_split"
        folder = self.root / self.split_folders[split]
        if not folder.is_dir():
            found = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
            holds = f"; {self.root} holds {', '.join(found)}" if found else ""
            what = "is not a folder" if folder.exists() else "does not exist"
            raise DatasetUnavailable(
                f"{self.name}: {option} folder {folder} {what}{holds}",
                fix=f"set {option} to the split's subfolder of root, or {self._how_to_get_the_data()}",
            )
        files = sorted(p for p in folder.iterdir() if _is_image_file(p))
        if not files:
            raise DatasetUnavailable(
                f"{self.name}: {option} folder {folder} holds no {', '.join(IMAGE_SUFFIXES)} files",
                fix=f"put the split's A|B images there, or {self._how_to_get_the_data()}",
            )
        return files

    def _how_to_get_the_data(self) -> str:
        """How to get the data, ending a fix line: where the archives are and the layout this plugin reads."""
        train, test = (self.root / self.split_folders[s] for s in ("train", "test"))
        return (
            f"download an archive from {ARCHIVES_URL} (e.g. facades.tar.gz) and extract it so that {train}/*.jpg and "
            f"{test}/*.jpg exist, each image A|B side by side (twice as wide as high)"
        )

    def _read_pair(self, path: Path) -> tuple[Tensor, Tensor]:
        """The halves A (left) and B (right) of one file, each uint8 [C, size, size]."""
        try:
            with Image.open(path) as opened:
                # convert() decodes the whole file, so a truncated one fails here, inside the try.
                image = opened.convert("L" if self.channels == 1 else "RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # PIL: not an image, truncated, too big
            raise DatasetUnavailable(
                f"{self.name}: cannot decode {path}: {' '.join(str(exc).split()) or type(exc).__name__}",
                fix="replace it with the file from the published archive, or delete it",
            ) from None
        width, height = image.size
        if width != 2 * height:
            raise DatasetUnavailable(
                f"{self.name}: {path} is {width}×{height} pixels; a paired image is A|B side by side, twice as wide "
                f"as high",
                fix=f"delete it, or point root at a folder in pix2pix's layout ({ARCHIVES_URL})",
            )
        # Each half is resized on its own, so neither bleeds into the other along the seam.
        halves = (image.crop((0, 0, height, height)), image.crop((height, 0, width, height)))
        a, b = (self._to_tensor(half) for half in halves)
        return a, b

    def _to_tensor(self, half: Image.Image) -> Tensor:
        """One half resized to size×size (bilinear, which PIL antialiases when shrinking) as uint8 [C, H, W]."""
        resized = half.resize((self.size, self.size), Image.Resampling.BILINEAR)
        array = np.asarray(resized, dtype=np.uint8).reshape(self.size, self.size, self.channels)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _is_image_file(path: Path) -> bool:
    # Dotfiles are never images: macOS archives carry ``._name.jpg`` resource forks beside the real files.
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


@hookimpl
def harness_register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    register(PairedImages)
