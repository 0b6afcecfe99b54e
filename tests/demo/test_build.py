"""The build is deterministic from its seed and writes a run the public loader reads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from locattr.compute import load_run
from locattr.demo.build import BuildConfig, build
from locattr.demo.train_spd import SPDTrainConfig
from locattr.demo.train_target import TargetTrainConfig

TINY = BuildConfig(
    n_train_windows=32,
    n_heldout_windows=4,
    target=TargetTrainConfig(steps=3, batch_size=4, warmup_steps=1),
    spd=SPDTrainConfig(steps=3, batch_size=2, C=8, ci_fn_hidden_dims=(4,)),
)


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    spd = torch.load(directory / "spd" / "model_3.pth", weights_only=True)
    pretrain = torch.load(directory / "pretrain" / "model_step_3.pt", weights_only=True)
    return {f"spd/{k}": v for k, v in spd.items()} | {
        f"pretrain/{k}": v for k, v in pretrain.items()
    }


def test_two_builds_from_one_seed_are_identical(tmp_path: Path) -> None:
    build(tmp_path / "a", TINY, log_every=0)
    build(tmp_path / "b", TINY, log_every=0)
    a, b = _tensors(tmp_path / "a"), _tensors(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    build(tmp_path / "c", replace(TINY, seed=1), log_every=0)
    c = _tensors(tmp_path / "c")
    assert not torch.equal(a["spd/_components.h-0-mlp-c_fc.V"], c["spd/_components.h-0-mlp-c_fc.V"])


def test_built_run_loads_with_the_public_loader(tmp_path: Path) -> None:
    build(tmp_path, TINY, log_every=0)
    run = load_run(tmp_path / "spd")
    assert {m.C for m in run.config.module_info} == {8}
    assert (tmp_path / "spd" / "metrics.json").is_file()
    assert len(run.model.module_paths) == 12
