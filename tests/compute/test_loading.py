"""Loading real SPD-format runs: layouts, legacy names, checkpoints, W&B cache, bad input."""

from __future__ import annotations

import shutil
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from locattr.compute import LocattrComputeError, load_run
from locattr.compute.component_model import CACHE_INPUTS
from locattr.compute.config import SPDConfig
from locattr.compute.wandb_cache import cache_dir, parse_wandb_path

from .spd_runs import RunSpec

TOKENS = torch.tensor([[3, 7, 1, 12, 5]])


def _checkpoint(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / f"model_{step}.pth", weights_only=True)


def _hand_ci(state: dict[str, torch.Tensor], key: str, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Pre-sigmoid CI straight from checkpoint tensors, per the format table (`x @ W + b`)."""
    gelu = torch.nn.functional.gelu
    layers = sorted({int(k.split(".")[3]) for k in state if k.startswith(f"_ci_fns.{key}.layers.")})
    weights = [
        (state[f"_ci_fns.{key}.layers.{i}.W"], state[f"_ci_fns.{key}.layers.{i}.b"]) for i in layers
    ]
    if kind == "shared_mlp":
        h = x
        for i, (w, b) in enumerate(weights):
            h = (gelu(h) if i else h) @ w + b
        return h
    if kind == "mlp":
        h = (x @ state[f"_components.{key}.V"]).unsqueeze(-1)
    else:
        h = x.unsqueeze(-2).expand(*x.shape[:-1], weights[0][0].shape[0], x.shape[-1])
    for i, (w, b) in enumerate(weights):
        h = torch.einsum("...ci,cio->...co", gelu(h) if i else h, w) + b
    return h.squeeze(-1)


@pytest.mark.parametrize("kind", ["mlp", "vector_mlp", "shared_mlp"])
def test_ci_follows_the_checkpoint_layout(
    write_spd_run: Callable[[RunSpec], Path], kind: str
) -> None:
    spec = RunSpec(n_layer=1, ci_fn_type=kind, sigmoid_type="hard", ci_fn_hidden_dims=(4, 3))  # type: ignore[arg-type]
    run_dir = write_spd_run(spec)
    run = load_run(run_dir, dtype=torch.float64, with_tokenizer=False)
    state = {k: v.double() for k, v in _checkpoint(run_dir, 5).items()}
    with torch.no_grad():
        inputs = run.model(TOKENS, CACHE_INPUTS).inputs
        ci, _ = run.model.causal_importances(inputs)
    for path in run.model.module_paths:
        expected = _hand_ci(state, path.replace(".", "-"), inputs[path], kind).clamp(0, 1)
        assert torch.allclose(ci[path], expected, atol=1e-12), path


def test_latest_checkpoint_by_numeric_step_and_legacy_names(
    write_spd_run: Callable[[RunSpec], Path],
) -> None:
    run_dir = write_spd_run(RunSpec(legacy_keys=True, steps=(2, 10, 9)))
    run = load_run(run_dir, with_tokenizer=False)
    assert run.checkpoint.name == "model_10.pth"
    legacy = _checkpoint(run_dir, 10)
    v = run.model.components("h.0.mlp.c_fc").V
    assert torch.equal(v, legacy["patched_model.h.0.mlp.c_fc.components.V"])
    c_fc = run.model.target_model.get_submodule("h.0.mlp.c_fc")
    assert isinstance(c_fc, torch.nn.Linear)
    assert torch.equal(
        c_fc.weight,
        legacy["patched_model.h.0.mlp.c_fc.original.weight"],
    )
    assert run.config.ci_fn_type == "shared_mlp"


def test_checkpoint_file_and_relative_pretrain_path(
    write_spd_run: Callable[[RunSpec], Path], tmp_path: Path
) -> None:
    run_dir = write_spd_run(RunSpec(relative_pretrain=True, steps=(3, 4)))
    moved = tmp_path / "moved"
    shutil.copytree(run_dir.parent, moved)
    run = load_run(moved / run_dir.name / "model_3.pth", with_tokenizer=False)
    assert run.checkpoint.name == "model_3.pth"
    assert float(run.model.components("h.0.mlp.c_fc").V.abs().sum()) == 0.0


def test_tied_embeddings_stay_tied(write_spd_run: Callable[[RunSpec], Path]) -> None:
    run = load_run(write_spd_run(RunSpec()), with_tokenizer=False)
    target = run.model.target_model
    assert target.get_submodule("lm_head").weight is target.get_submodule("wte").weight


def test_per_module_c_and_spd_pretrain_prefix(write_spd_run: Callable[[RunSpec], Path]) -> None:
    spec = RunSpec(
        arch="LlamaSimpleMLP",
        class_prefix="spd.pretrain.models.",
        per_module_C=(("h.*.attn.*_proj", 5), ("h.*.mlp.c_fc", 7), ("h.*.mlp.down_proj", 9)),
    )
    run = load_run(write_spd_run(spec), with_tokenizer=False)
    widths = {p: run.model.components(p).C for p in run.model.module_paths}
    assert widths["h.1.attn.k_proj"] == 5 and widths["h.0.mlp.c_fc"] == 7
    assert widths["h.1.mlp.down_proj"] == 9


def test_tokenizer_from_run_directory(write_spd_run: Callable[[RunSpec], Path]) -> None:
    run = load_run(write_spd_run(RunSpec()))
    assert run.tokenizer is not None
    assert run.tokenizer.convert_tokens_to_ids(["w0", "w1"]) == [2, 3]


def test_missing_tokenizer_is_an_error_unless_opted_out(
    write_spd_run: Callable[[RunSpec], Path],
) -> None:
    run_dir = write_spd_run(RunSpec(with_tokenizer=False))
    with pytest.raises(LocattrComputeError, match="with_tokenizer=False"):
        load_run(run_dir)
    assert load_run(run_dir, with_tokenizer=False).tokenizer is None


def test_config_is_lenient_and_migrates() -> None:
    old = SPDConfig.model_validate(
        {
            "C": 4,
            "target_module_patterns": ["a", "b"],
            "gate_type": "mlp",
            "gate_hidden_dims": [3],
            "pretrained_model_class": "x.Y",
            "pretrained_model_name_hf": "org/model",
            "unknown_future_field": 1,
        }
    )
    assert [(m.module_pattern, m.C) for m in old.module_info] == [("a", 4), ("b", 4)]
    assert old.ci_fn_type == "mlp" and old.ci_fn_hidden_dims == (3,)
    assert old.pretrained_model_name == "org/model"
    new = SPDConfig.model_validate(
        {
            "module_info": [{"module_pattern": "a", "C": 3}],
            "identity_module_info": [{"module_pattern": "b", "C": 2}],
            "pretrained_model_class": "x.Y",
        }
    )
    assert [m.module_pattern for m in new.all_module_info] == ["a", "b.pre_identity"]


# --- W&B paths: a fake `wandb` module is the only stand-in, at the API boundary ---


class _FakeFile:
    def __init__(self, source: Path) -> None:
        self.name, self.size, self._source = source.name, source.stat().st_size, source

    def download(self, root: str, replace: bool = False, exist_ok: bool = False) -> None:
        shutil.copy(self._source, Path(root) / self.name)


class _FakeRun:
    def __init__(self, directory: Path) -> None:
        self._files = {p.name: _FakeFile(p) for p in directory.iterdir() if p.is_file()}

    def files(self) -> list[_FakeFile]:
        return list(self._files.values())

    def file(self, name: str) -> _FakeFile:
        return self._files[name]


def _fake_wandb(runs: dict[str, Path], calls: list[str]) -> types.ModuleType:
    class Api:
        def run(self, path: str) -> _FakeRun:
            calls.append(path)
            if path not in runs:
                raise ValueError(f"Could not find run {path}")
            return _FakeRun(runs[path])

    module = types.ModuleType("wandb")
    module.Api = Api  # type: ignore[attr-defined]
    return module


def test_wandb_download_once_then_offline(
    write_spd_run: Callable[[RunSpec], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = write_spd_run(RunSpec(steps=(1, 20, 3)))
    pretrain = run_dir.parent / f"{run_dir.name}-pretrain"
    remote_run = run_dir.parent / "remote-spd"
    if not remote_run.exists():
        shutil.copytree(run_dir, remote_run)
        config = yaml.safe_load((remote_run / "final_config.yaml").read_text())
        config["pretrained_model_name"] = "wandb:goodfire/spd/runs/pre12345"
        config["tokenizer_name"] = str(run_dir)
        (remote_run / "final_config.yaml").write_text(yaml.safe_dump(config))
    calls: list[str] = []
    monkeypatch.setitem(
        sys.modules,
        "wandb",
        _fake_wandb(
            {"goodfire/spd/abcd1234": remote_run, "goodfire/spd/pre12345": pretrain}, calls
        ),
    )
    run = load_run("wandb:goodfire/spd/runs/abcd1234")
    assert run.source == "wandb:goodfire/spd/runs/abcd1234"
    assert calls == ["goodfire/spd/abcd1234", "goodfire/spd/pre12345"]
    cached = cache_dir(parse_wandb_path("wandb:goodfire/spd/runs/abcd1234"))
    assert sorted(p.name for p in cached.iterdir()) == ["final_config.yaml", "model_20.pth"]

    monkeypatch.setitem(sys.modules, "wandb", None)  # any import now fails: must stay offline
    again = load_run(
        "https://wandb.ai/goodfire/spd/runs/abcd1234/overview?x=1", with_tokenizer=False
    )
    assert again.checkpoint == cached / "model_20.pth"
    assert calls == ["goodfire/spd/abcd1234", "goodfire/spd/pre12345"]


def test_wandb_missing_package_or_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(LocattrComputeError, match="wandb.*not installed.*local run directory"):
        load_run("wandb:goodfire/spd/runs/zzzz9999")
    monkeypatch.setitem(sys.modules, "wandb", _fake_wandb({}, []))
    with pytest.raises(LocattrComputeError, match="could not download.*local run directory"):
        load_run("wandb:goodfire/spd/runs/zzzz9999")


@pytest.mark.parametrize("path", ["wandb:goodfire", "wandb:a/b/runs/", "wandb:a/b/c/d/e"])
def test_malformed_wandb_path(path: str) -> None:
    with pytest.raises(LocattrComputeError, match="malformed W&B run path"):
        load_run(path)


def test_bad_input_messages(write_spd_run: Callable[[RunSpec], Path], tmp_path: Path) -> None:
    with pytest.raises(LocattrComputeError, match="does not exist"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LocattrComputeError, match="no final_config.yaml"):
        load_run(tmp_path / "empty")
    if not torch.cuda.is_available():
        with pytest.raises(LocattrComputeError, match="CUDA is not available"):
            load_run(tmp_path / "empty", device="cuda")

    run_dir = write_spd_run(RunSpec())
    unknown = tmp_path / "unknown"
    shutil.copytree(run_dir, unknown)
    config = yaml.safe_load((unknown / "final_config.yaml").read_text())
    config["pretrained_model_class"] = "my_lab.models.Mystery"
    (unknown / "final_config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(
        LocattrComputeError, match="unknown pretrained_model_class.*GPT2Simple.*importable"
    ):
        load_run(unknown)

    mismatch = tmp_path / "mismatch"
    shutil.copytree(run_dir, mismatch)
    state = _checkpoint(mismatch, 5)
    state["_components.h-0-mlp-c_fc.extra"] = torch.zeros(1)
    del state["_components.h-1-mlp-c_fc.U"]
    state["_components.h-0-mlp-c_fc.V"] = torch.zeros(3, 3)
    torch.save(state, mismatch / "model_5.pth")
    with pytest.raises(LocattrComputeError) as info:
        load_run(mismatch)
    message = str(info.value)
    assert "1 missing: _components.h-1-mlp-c_fc.U" in message
    assert "1 unexpected: _components.h-0-mlp-c_fc.extra" in message
    assert "_components.h-0-mlp-c_fc.V (3, 3) != (16, 6)" in message
    assert "\n" not in message
