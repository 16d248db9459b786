"""GPU throughput: the harness loop against a bare loop on one GPU, and K cells sharing one GPU against one.

    python bench/gpu_throughput.py [--share 4] [--epochs 2]

Needs CUDA (exits with a message otherwise). Small models leave a GPU idle; ``--cells-per-gpu K`` lets K cells
share it, and the second figure says what that buys.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from harness.config import load_config
from harness.run.executors import PoolExecutor
from harness.registry import load_registry
from harness.run.plan import plan_benchmark, run_plan
from harness.run.store import Store
from train_throughput import _cell, _data, bare_loop, harness_loop


def shared_gpu_rate(cells: int, share: int, epochs: int) -> float:
    """Images/s over all cells when ``share`` cells run at once on cuda:0."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "share.yaml"
        bench = {
            "datasets": ["fashion-mnist"],
            "model": {"architecture": "conv", "latent_dim": 16, "gamma": 0.01},
            "priors": {"gaussian": {}}, "regularizers": ["kl"], "beta": [1.0], "seeds": list(range(cells)),
            "train": {"epochs": epochs, "batch_size": 128, "lr": 0.001}, "sample_grid": 0,
        }
        cfg.write_text(yaml.safe_dump({"benchmarks": {"share": bench}}), encoding="utf-8")
        registry = load_registry()
        plan = plan_benchmark("share", load_config(cfg).benchmarks["share"], registry, str(cfg))
        start = time.perf_counter()
        run_plan(plan, registry, Store(Path(tmp) / "out"), torch.device("cuda:0"), progress=False,
                 executor=PoolExecutor(["cuda:0"] * share))
        wall = time.perf_counter() - start
    return cells * epochs * 60_000 / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=int, default=4, help="cells sharing one GPU")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU (see bench/train_throughput.py for the CPU loop)")
        return 0
    device = torch.device("cuda:0")
    data, source = _data(60_000, device)
    cell = _cell(args.epochs, 128)
    images = len(data) * args.epochs
    bare_loop(cell, data, device)  # warm-up: cuDNN autotuning, allocator
    bare = images / bare_loop(cell, data, device)
    ours = images / harness_loop(cell, data, device)
    print(f"bare loop          {bare:10,.0f} img/s")
    print(f"harness loop       {ours:10,.0f} img/s   (bf16 autocast on the networks)")
    print(f"ratio              {ours / bare:10.3f}   (conv, 28x28 {source}, batch 128, {torch.cuda.get_device_name(0)})")
    alone = shared_gpu_rate(args.share, 1, args.epochs)
    shared = shared_gpu_rate(args.share, args.share, args.epochs)
    print(f"1 cell at a time   {alone:10,.0f} img/s over {args.share} cells")
    print(f"{args.share} cells at once    {shared:10,.0f} img/s")
    print(f"gain               {shared / alone:10.2f}x  (--cells-per-gpu {args.share})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
