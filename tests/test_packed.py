"""Packed training (``harness.model.packed``): each member of a pack is its cell trained alone, step for step."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import harness.model.packed as packed
import harness.model.train as train_module
from harness.api import DataSplit
from harness.config import BenchmarkConfig
from harness.grid import Cell, expand
from harness.model.checkpoint import CHECKPOINT
from harness.model.packed import build_members, pack_reason, train_packed
from harness.model.train import Model, build_model, train

from conftest import TINY

#: 9 epochs of digits' 1,437 training rows at batch 128: 108 steps, the first 100 compared one by one.
EPOCHS, BATCH, STEPS = 9, 128, 100
PRIORS = {"gaussian": {}, "realnvp": {"depth": 2, "hidden": 16}, "gmm": {"components": 3}}


def _cells(
    registry, prior: str = "gaussian", regularizer: str = "kl", epochs: int = EPOCHS, **overrides: Any
) -> list[Cell]:
    """Three cells that differ in seed and β (0 included when the regularizer uses β)."""
    bench = {
        **TINY,
        "priors": {prior: PRIORS.get(prior, {})},
        "regularizers": [regularizer],
        "beta": [0.0, 0.5, 1.0],
        "seeds": [0, 1, 2],
        "train": {"epochs": epochs, "batch_size": BATCH, "lr": 0.003},
        **overrides,
    }
    cells = [c for c in expand("packed", BenchmarkConfig.model_validate(bench), registry, "test") if not c.skip_reason]
    if cells[0].beta is None:
        return cells  # `none`: one cell per seed
    return [c for c in cells if (c.seed, c.beta) in {(0, 0.0), (1, 0.5), (2, 1.0)}]


@pytest.fixture(scope="module")
def digits(registry) -> DataSplit:
    return registry.get("dataset", "digits")().load("train")


def _dirs(root: Path, name: str, count: int) -> list[Path]:
    dirs = [root / f"{name}{i}" for i in range(count)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


@contextmanager
def _recording(target: Any, name: str) -> Iterator[list[Tensor]]:
    """Record what ``target.name`` returns while the block runs."""
    seen: list[Tensor] = []
    original = getattr(target, name)

    def recorded(*args: Any, **kwargs: Any) -> Tensor:
        out = original(*args, **kwargs)
        seen.append(out.detach().clone())
        return out

    setattr(target, name, recorded)
    try:
        yield seen
    finally:
        setattr(target, name, original)


def _alone(cells: Sequence[Cell], registry, data: DataSplit, root: Path) -> tuple[list[Tensor], list[Model], list]:
    """Each cell trained by ``train`` as run_cell does; returns its per-step terms [steps, 3], model, history."""
    terms, models, histories = [], [], []
    for cell, work in zip(cells, _dirs(root, "alone", len(cells))):
        with _recording(train_module, "training_step") as seen:
            torch.manual_seed(cell.seed)
            model = build_model(cell, registry, tuple(data.x.shape[1:]), data.x.device)
            histories.append(train(cell, model, data, work, progress=False))
        terms.append(torch.stack(seen))
        models.append(model)
    return terms, models, histories


def _packed(cells, registry, data, root, start_rng=None) -> tuple[Tensor, list[Model], list]:
    """The cells as one pack; returns the per-step terms [steps, K, 3], the members' models and histories."""
    models, rngs = build_members(cells, registry, tuple(data.x.shape[1:]), data.x.device)
    assert pack_reason(cells, models, registry) is None
    with _recording(packed, "_packed_step") as steps, _recording(packed, "_steps_alone") as first:
        histories = train_packed(cells, models, data, _dirs(root, "packed", len(cells)), progress=False,
                                 start_rng=start_rng if start_rng is not None else rngs)  # fmt: skip
    # Epoch 0 starts with each member's step taken alone; every other step is packed.
    return torch.stack([first[0], *steps]), models, histories


def _state(model: Model) -> dict[str, Tensor]:
    return {f"{name}.{key}": value for name, module in model.modules().items()
            for key, value in module.state_dict().items()}  # fmt: skip


def _assert_same_history(got: list[dict[str, float]], want: list[dict[str, float]]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)


def _max_difference(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()), default=0.0)


@pytest.mark.parametrize(
    ("prior", "regularizer"),
    [("gaussian", "kl"), ("gaussian", "none"), ("realnvp", "kl"), ("realnvp", "none"), ("gmm", "kl"), ("gmm", "none")],
)
def test_each_member_matches_its_cell_trained_alone_step_for_step(registry, digits, tmp_path, prior, regularizer):
    cells = _cells(registry, prior, regularizer)
    alone_terms, alone_models, alone_histories = _alone(cells, registry, digits, tmp_path)
    pack_terms, pack_models, pack_histories = _packed(cells, registry, digits, tmp_path)

    assert pack_terms.shape[0] >= STEPS
    for k in range(len(cells)):
        torch.testing.assert_close(pack_terms[:STEPS, k], alone_terms[k][:STEPS], rtol=1e-5, atol=1e-5)
        assert _max_difference(_state(pack_models[k]), _state(alone_models[k])) < 1e-5
        _assert_same_history(pack_histories[k], alone_histories[k])
    if cells[0].beta is not None:
        assert float(pack_terms[:, 0, 1].abs().max()) == 0.0  # β = 0 reports no regularizer, as unpacked
        assert float(pack_terms[:, 1, 1].abs().min()) > 0.0
    # The members really are different models: a mix-up between them could not pass.
    assert float((pack_terms[:, 0, 0] - pack_terms[:, 2, 0]).abs().max()) > 1.0


@pytest.mark.gpu
def test_on_cuda_each_member_matches_its_cell_trained_alone_step_for_step(registry, digits, tmp_path):
    """The CUDA path: ε from generators on the device, CUDA RNG states in the members' checkpoints."""
    data = dataclasses.replace(digits, x=digits.x.cuda(), labels=None)
    cells = _cells(registry, "realnvp", "kl", epochs=3, train={"epochs": 3, "batch_size": BATCH, "lr": 0.003,
                                                                 "autocast": False})  # fmt: skip
    alone_terms, alone_models, alone_histories = _alone(cells, registry, data, tmp_path)
    pack_terms, pack_models, pack_histories = _packed(cells, registry, data, tmp_path)
    for k in range(len(cells)):
        torch.testing.assert_close(pack_terms[:, k].cpu(), alone_terms[k].cpu(), rtol=1e-4, atol=1e-4)
        assert _max_difference(_state(pack_models[k]), _state(alone_models[k])) < 1e-4


def test_a_member_given_another_members_noise_no_longer_matches_its_cell(registry, digits, tmp_path):
    """The planted fault: ε streams swapped between members must fail the comparison the test above makes."""
    cells = _cells(registry, "gaussian", "kl", epochs=1)
    alone_terms, _, _ = _alone(cells, registry, digits, tmp_path)
    _, rngs = build_members(cells, registry, tuple(digits.x.shape[1:]), torch.device("cpu"))
    pack_terms, _, _ = _packed(cells, registry, digits, tmp_path / "swapped", start_rng=[rngs[1], rngs[0], rngs[2]])
    torch.testing.assert_close(pack_terms[:, 2], alone_terms[2], rtol=1e-5, atol=1e-5)  # its own stream: fine
    with pytest.raises(AssertionError):
        torch.testing.assert_close(pack_terms[:, 0], alone_terms[0], rtol=1e-5, atol=1e-5)


class _Interrupted(Exception):
    pass


def test_a_member_checkpointed_by_the_pack_resumes_unpacked_to_the_result_of_training_alone(registry, digits, tmp_path):
    cells = _cells(registry, "realnvp", "kl", epochs=3)
    _, alone_models, alone_histories = _alone(cells, registry, digits, tmp_path / "alone")

    def stop_after_first_epoch(member: int, epoch: int, means: dict[str, float]) -> None:
        raise _Interrupted

    models, rngs = build_members(cells, registry, tuple(digits.x.shape[1:]), torch.device("cpu"))
    workdirs = _dirs(tmp_path, "packed", len(cells))
    with pytest.raises(_Interrupted):
        train_packed(cells, models, digits, workdirs, progress=False, on_epoch=stop_after_first_epoch, start_rng=rngs)
    assert all(int(torch.load(w / CHECKPOINT, weights_only=True)["epoch"]) == 0 for w in workdirs)

    # Member 1 goes on alone, as a runner without packing would resume it.
    torch.manual_seed(cells[1].seed)
    model = build_model(cells[1], registry, tuple(digits.x.shape[1:]), torch.device("cpu"))
    history = train(cells[1], model, digits, workdirs[1], progress=False)
    _assert_same_history(history, alone_histories[1])
    assert _max_difference(_state(model), _state(alone_models[1])) < 1e-5

    # The others resume packed, from the same epoch.
    rest = [cells[0], cells[2]]
    models, rngs = build_members(rest, registry, tuple(digits.x.shape[1:]), torch.device("cpu"))
    histories = train_packed(rest, models, digits, [workdirs[0], workdirs[2]], progress=False, start_rng=rngs)
    for got, model, k in zip(histories, models, (0, 2)):
        _assert_same_history(got, alone_histories[k])
        assert _max_difference(_state(model), _state(alone_models[k])) < 1e-5


def _reason(registry, data: DataSplit, cells: Sequence[Cell], workdirs: Sequence[Path] | None = None) -> str | None:
    models = [build_model(c, registry, tuple(data.x.shape[1:]), torch.device("cpu")) for c in cells]
    return pack_reason(cells, models, registry, workdirs)


def test_pack_reason_accepts_cells_that_differ_only_in_seed_and_beta(registry, digits):
    assert _reason(registry, digits, _cells(registry, "realnvp", "kl")) is None


def test_pack_reason_names_the_architecture_option_that_differs(registry, digits):
    wide = {**TINY["model"], "architecture_options": {"hidden": 64, "layers": 1}}
    cells = [_cells(registry)[0], _cells(registry, model=wide)[1]]
    reason = _reason(registry, digits, cells)
    assert reason is not None and "model.architecture_options.hidden (32 vs 64)" in reason


@pytest.mark.parametrize(
    ("prior", "regularizer", "named"),
    [("gaussian", "adversarial", "regularizer 'adversarial'"), ("gan", "adversarial", "prior 'gan'")],
)
def test_pack_reason_refuses_a_plugin_that_does_not_declare_packable(registry, digits, prior, regularizer, named):
    reason = _reason(registry, digits, _cells(registry, prior, regularizer, epochs=1))
    assert reason is not None and named in reason and "packable" in reason


def test_pack_reason_refuses_a_learned_gamma(registry, digits):
    learned = {**TINY["model"], "gamma": "learned"}
    reason = _reason(registry, digits, _cells(registry, model=learned))
    assert reason is not None and "model.gamma is 'learned'" in reason


def test_pack_reason_refuses_members_whose_checkpoints_are_at_different_epochs(registry, digits, tmp_path):
    cells = _cells(registry, epochs=2)
    workdirs = _dirs(tmp_path, "cell", len(cells))
    torch.manual_seed(cells[0].seed)
    model = build_model(cells[0], registry, tuple(digits.x.shape[1:]), torch.device("cpu"))
    train(cells[0], model, digits, workdirs[0], progress=False)  # member 0 is done, the others are not started
    reason = _reason(registry, digits, cells, workdirs)
    assert reason is not None and "different epochs" in reason and f"{cells[0].label}: epoch 2" in reason
    assert _reason(registry, digits, cells, _dirs(tmp_path, "fresh", len(cells))) is None


def test_the_contract_check_of_packable_plugins_catches_what_vmap_cannot_pack():
    """harness.testing.packing (run by the prior and regularizer contracts for packable plugins) fails a step that
    branches on a tensor or draws random numbers, and matches a well-behaved one to float rounding."""
    from harness.testing.packing import packed_and_alone

    torch.manual_seed(0)
    copies = [torch.nn.Linear(4, 2) for _ in range(3)]
    inputs = [(torch.randn(16, 4),) for _ in range(3)]
    params = lambda m: list(m.parameters())  # noqa: E731
    alone, packed_losses, moved = packed_and_alone(copies, lambda m, x: m(x).pow(2).mean(), inputs, params)
    assert torch.allclose(packed_losses, alone, rtol=1e-6, atol=1e-7) and moved < 1e-6
    assert not torch.allclose(alone[0], alone[-1])  # it trained: the losses moved
    with pytest.raises(RuntimeError):
        packed_and_alone(copies, lambda m, x: m(x).sum() if bool(x.mean() > 0) else -m(x).sum(), inputs, params)
    with pytest.raises(RuntimeError):
        packed_and_alone(copies, lambda m, x: (m(x) * torch.rand(())).sum(), inputs, params)
