"""CUDA paths: bf16 autocast, torch.compile and the pool's GPU pinning. Skipped without CUDA."""

from __future__ import annotations

import json

import pytest

from conftest import write_config
from harness.cli import main

pytestmark = pytest.mark.gpu


def _mse(out) -> dict[int, float]:
    return {
        json.loads(p.read_text())["cell"]["seed"]: json.loads(p.read_text())["metrics"]["reconstruction.mse"]
        for p in out.glob("cells/*/result.json")
    }


def test_bf16_autocast_on_cuda_trains_to_the_same_quality_as_float32_on_cpu(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", regularizers=["kl"], train={"epochs": 20, "batch_size": 128, "lr": 0.003})
    assert main(["run", str(cfg), "--out", str(tmp_path / "gpu"), "--device", "cuda", "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(tmp_path / "cpu"), "--device", "cpu", "--quiet"]) == 0
    gpu, cpu = _mse(tmp_path / "gpu"), _mse(tmp_path / "cpu")
    assert gpu[0] == pytest.approx(cpu[0], rel=0.2)


def test_compiled_networks_train_on_cuda(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", regularizers=["kl"],
                       train={"epochs": 2, "batch_size": 128, "lr": 0.003, "compile": True})
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--device", "cuda", "--quiet"]) == 0


def test_pool_pins_one_cell_per_gpu(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", seeds=[0, 1, 2, 3], regularizers=["kl"])
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--device", "cuda", "--executor", "pool",
                 "--quiet"]) == 0
    devices = {json.loads(p.read_text())["device"] for p in (tmp_path / "out").glob("cells/*/result.json")}
    assert devices and all(d.startswith("cuda:") for d in devices)
