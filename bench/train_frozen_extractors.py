"""Train the classifiers shipped in plugins/evaluators/extractors/, once, deterministically.

    $ OMP_NUM_THREADS=1 python bench/train_frozen_extractors.py digits
    $ OMP_NUM_THREADS=1 python bench/train_frozen_extractors.py fashion-mnist

Each run writes ``<dataset>.pt`` (a weights_only-loadable state dict with its metadata) and ``<dataset>.json`` (its
sha256, test accuracy, torch version and this command). The whole training split of the dataset's default options
is used, not ``max_train``; seed, epochs, one thread and deterministic algorithms are fixed here, so rerunning this
on the same torch build gives the same bytes. FID, separability and feature diversity load these files whenever
one exists for the dataset: retrain only to replace them on purpose, and commit both files.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from harness_plugins.datasets.digits import Digits
from harness_plugins.datasets.torchvision_sets import FashionMNIST
from harness_plugins.evaluators.classifier import train_frozen_classifier

#: dataset -> (constructor, epochs). Fashion-MNIST's 60,000 images: few epochs keep it to minutes on one CPU core.
DATASETS = {
    "digits": (Digits, 30),
    "fashion-mnist": (FashionMNIST, 3),
}
SEED = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--epochs", type=int, default=None, help="override the fixed epoch count (then say so)")
    parser.add_argument("--out", type=Path, default=None, help="folder to write into (default: the shipped one)")
    args = parser.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: OMP_NUM_THREADS is not 1; training uses one thread anyway", file=sys.stderr)
    make, default_epochs = DATASETS[args.dataset]
    epochs = args.epochs or default_epochs
    ds = make()
    if hasattr(ds, "check_available"):
        ds.check_available()
    train, test = ds.load("train"), ds.load("test")
    command = "OMP_NUM_THREADS=1 python bench/train_frozen_extractors.py " + shlex.join(
        [args.dataset] + ([f"--epochs={args.epochs}"] if args.epochs else [])
    )
    start = time.perf_counter()
    manifest = train_frozen_classifier(
        args.dataset, train, test, torch.device("cpu"), seed=SEED, epochs=epochs, command=command, root=args.out
    )
    seconds = time.perf_counter() - start
    print(f"dataset         {args.dataset}  ({manifest['train_size']:,} train, {manifest['test_size']:,} test)")
    print(f"epochs          {epochs}  (seed {SEED}, 1 thread, deterministic)")
    print(f"test accuracy   {manifest['test_accuracy']:.4f}")
    print(f"sha256          {manifest['sha256']}")
    print(f"time            {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
