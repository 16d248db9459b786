"""How much FID moves when only the classifier extractor is retrained: one fixed pair of image sets, N seeds.

    $ OMP_NUM_THREADS=1 python bench/extractor_noise.py digits
    digits: 5 seeds x 10 epochs, 1437 train images
    sample set                   mean ± std        range            frozen
    train split vs test          ...

The sample sets never change between seeds, so every difference is the extractor's: the spread a retrained
(``fid.classifier: retrain``) classifier adds to every FID, which the shipped frozen one removes. Sets compared with
the test split (the FID reference): the training split (real images), and the test split with Gaussian pixel noise.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch_fidelity
from torch.utils.data import Dataset as TorchDataset

from harness import DataSplit, EvalData
from harness_plugins.datasets.digits import Digits
from harness_plugins.datasets.torchvision_sets import FashionMNIST
from harness_plugins.evaluators.classifier import DEFAULT_EPOCHS, frozen_paths, resolve_classifier
from harness_plugins.evaluators.fidelity import CLASSIFIER_EXTRACTOR, _as_uint8_rgb

DATASETS = {"digits": Digits, "fashion-mnist": FashionMNIST}


class _Images(TorchDataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _fid(weights: Path, images: torch.Tensor, reference: torch.Tensor) -> float:
    out = torch_fidelity.calculate_metrics(
        input1=_Images(images), input2=_Images(reference), fid=True, feature_extractor=CLASSIFIER_EXTRACTOR,
        feature_extractor_weights_path=str(weights), cuda=False, cache=False, save_cpu_ram=True, verbose=False,
    )  # fmt: skip
    return out[torch_fidelity.KEY_METRIC_FID]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="as fid.classifier: retrain trains")
    parser.add_argument("--max-train", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--noise", type=float, default=0.2, help="std of the Gaussian pixel noise, images in [0, 1]")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ds = DATASETS[args.dataset]()
    train, test = ds.load("train"), ds.load("test")
    if args.max_train is not None:
        assert train.labels is not None
        keep = slice(0, args.max_train)
        train = DataSplit(train.x[keep], train.labels[keep], train.label_kind, train.label_names)
    gen = torch.Generator().manual_seed(0)
    noisy = (test.x.float() / 255 + args.noise * torch.randn(test.x.shape, generator=gen)).clamp(0, 1)
    reference = _as_uint8_rgb(test.x)
    sets = {"train split vs test": _as_uint8_rgb(train.x), f"test + noise {args.noise} vs test": _as_uint8_rgb(noisy)}

    fids: dict[str, list[float]] = {name: [] for name in sets}
    accuracies = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        data = EvalData(args.dataset, {}, train, test, Path(cache))
        for seed in range(args.seeds):
            found = resolve_classifier(data, seed, torch.device("cpu"), args.epochs, frozen=False)
            accuracies.append(found.model.test_accuracy)
            for name, images in sets.items():
                fids[name].append(_fid(found.path, images, reference))
    frozen, _ = frozen_paths(args.dataset)
    print(f"{args.dataset}: {args.seeds} seeds x {args.epochs} epochs, {len(train)} train images, 1 thread, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    print(f"test accuracy    {min(accuracies):.4f} .. {max(accuracies):.4f}")
    print(f"{'sample set':28} {'mean ± std':>18} {'range':>20} {'std/mean':>9} {'frozen':>9}")
    for name, images in sets.items():
        values = fids[name]
        mean, std = statistics.mean(values), statistics.stdev(values)
        frozen_fid = f"{_fid(frozen, images, reference):9.3f}" if frozen.is_file() else f"{'-':>9}"
        spread = f"{mean:9.3f} ± {std:6.3f} {min(values):9.3f} .. {max(values):7.3f}"
        print(f"{name:28} {spread} {std / mean:9.1%} {frozen_fid}")
        print(f"{'':28} per seed: {', '.join(f'{v:.3f}' for v in values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
