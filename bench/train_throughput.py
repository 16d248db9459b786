"""Images/s of the harness training loop against a bare PyTorch loop of the same model, in one run.

The bare loop is what a researcher would write by hand: the same conv VAE, batch size, Adam, data held as one
uint8 tensor and batched by index. The harness loop adds gradient routing, the prior's fit, finite checks,
progress bars and a checkpoint per epoch; it must keep at least 95% of the bare loop's throughput.

    python bench/train_throughput.py [--images 12800] [--epochs 2] [--rounds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness.api import DataSplit, as_float
from harness.config import BenchmarkConfig
from harness.grid import expand
from harness.registry import load_registry
from harness.model.train import batches, build_model, train


def _data(n: int, device: torch.device) -> tuple[DataSplit, str]:
    """Fashion-MNIST when it is installed (Debian's dataset-fashion-mnist), else random 28×28 images."""
    registry = load_registry()
    try:
        dataset = registry.get("dataset", "fashion-mnist")()
        dataset.check_available()
        split, name = dataset.load("train"), "fashion-mnist"
    except Exception:  # noqa: BLE001 - any reason it cannot load: fall back to synthetic images of that shape
        generator = torch.Generator().manual_seed(0)
        split = DataSplit(torch.randint(0, 256, (n, 1, 28, 28), generator=generator, dtype=torch.uint8))
        name = "random 28x28"
    return DataSplit(split.x[:n].to(device)), name


def _cell(epochs: int, batch_size: int):
    bench = BenchmarkConfig.model_validate({
        "datasets": ["fashion-mnist"],
        "model": {"architecture": "conv", "latent_dim": 16, "likelihood": "gaussian", "gamma": 0.01},
        "priors": {"gaussian": {}},
        "regularizers": ["kl"],
        "beta": [1.0],
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": 1e-3},
    })
    (cell,) = expand("throughput", bench, load_registry(), "bench")
    return cell


def harness_loop(cell, data: DataSplit, device: torch.device) -> float:
    registry = load_registry()
    torch.manual_seed(0)
    model = build_model(cell, registry, tuple(data.x.shape[1:]), device)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(cell, model, data, Path(tmp), progress=True)
        _sync(device)
        return time.perf_counter() - start


def bare_loop(cell, data: DataSplit, device: torch.device) -> float:
    registry = load_registry()
    torch.manual_seed(0)
    model = build_model(cell, registry, tuple(data.x.shape[1:]), device)
    encoder, decoder, gamma = model.encoder, model.decoder, float(cell.model["gamma"])
    params = [*encoder.parameters(), *decoder.parameters()]
    opt = torch.optim.Adam(params, lr=float(cell.train["lr"]))
    start = time.perf_counter()
    for epoch in range(int(cell.train["epochs"])):
        for idx in batches(len(data), int(cell.train["batch_size"]), 0, epoch, device):
            x = as_float(data.x[idx])
            mean, logvar = encoder(x).chunk(2, dim=-1)
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            rec = 0.5 * (decoder(z) - x).pow(2).flatten(1).sum(1) / gamma
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            loss = (rec + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12_800)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds; the median is reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    data, source = _data(args.images, device)
    cell = _cell(args.epochs, args.batch_size)
    images = len(data) * args.epochs

    bare_loop(cell, DataSplit(data.x[: args.batch_size * 4]), device)  # warm-up (allocator, kernels)
    bare, ours = [], []
    for _ in range(args.rounds):  # alternate so drift in machine load hits both loops alike
        bare.append(images / bare_loop(cell, data, device))
        ours.append(images / harness_loop(cell, data, device))
    bare_ips, ours_ips = statistics.median(bare), statistics.median(ours)
    print(f"bare loop      {bare_ips:9,.0f} img/s")
    print(f"harness loop   {ours_ips:9,.0f} img/s")
    print(
        f"ratio          {ours_ips / bare_ips:9.3f}   (conv, 28x28 {source}, batch {args.batch_size}, "
        f"{device.type}, {torch.get_num_threads()} threads, {len(data)} images x {args.epochs} epochs, "
        f"median of {args.rounds})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
