"""Runs in the layouts today's SPD writes (docs/spd-format.md §1.3, §2.3): per-module C, the
target named by `spd.pretrain.models.<module>.<Class>` with `pretrained_model_name` pointing at a
pretraining checkpoint `<out>/checkpoints/model_step_<N>.pt` (configs in `<out>`), relative
paths in `final_config.yaml`, bf16 checkpoint tensors. Each is written here from a run in the
older layout, and must give that run's CI wherever the current directory is."""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor

from locattr.compute import LoadedRun, LocattrComputeError, load_run
from locattr.compute.wandb_cache import latest_checkpoint_name, parse_wandb_path
from locattr.demo import demo_run_path

from .spd_runs import RunSpec

TOKENS = torch.tensor([[3, 7, 1, 12, 5, 9, 2, 4], [0, 1, 2, 3, 4, 5, 6, 7]])
PRETRAIN_STEP = 1500


def module_ci(run: LoadedRun, tokens: Tensor) -> dict[str, Tensor]:
    """Lower-leaky CI per decomposed module, from module inputs caught by forward hooks on a
    plain target forward (independent of the component model's forward options)."""
    inputs: dict[str, Tensor] = {}
    handles = [
        run.model.target_model.get_submodule(path).register_forward_hook(
            lambda _m, args, _out, path=path: inputs.__setitem__(path, args[0])
        )
        for path in run.model.module_paths
    ]
    try:
        with torch.no_grad():
            run.model.target_model(tokens)
            return run.model.lower_leaky_ci(inputs)
    finally:
        for handle in handles:
            handle.remove()


def bf16_rounded(run: LoadedRun) -> LoadedRun:
    """`run` with every stored tensor rounded through bfloat16, in place: what a bf16 checkpoint
    of the same run holds."""
    with torch.no_grad():
        for tensor in run.model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(torch.bfloat16))
    return run


def sliced(state: Mapping[str, Tensor], key: str, C: int, hidden: int) -> dict[str, Tensor]:
    """A shared_mlp module's first C components: V, U and the CI function's last layer."""
    last = f"_ci_fns.{key}.layers.{2 * hidden}"
    cut = {
        f"_components.{key}.V": state[f"_components.{key}.V"][:, :C],
        f"_components.{key}.U": state[f"_components.{key}.U"][:C],
        f"{last}.W": state[f"{last}.W"][:, :C],
        f"{last}.b": state[f"{last}.b"][:C],
    }
    return {k: v.clone() for k, v in cut.items()}


def write_current_layout(
    spd_dir: Path,
    pretrain_dir: Path,
    root: Path,
    widths: Mapping[str, int] | None = None,
    with_pretrain_checkpoint: bool = True,
) -> Path:
    """The run at `spd_dir` (older layout, its pretrain run at `pretrain_dir`) rewritten as
    today's SPD writes it under `root`: `root/spd/runs/s-1a2b3c4d` with every path in its
    config relative, the pretrain run at `root/target_models/pt-1/` with its weights under
    `checkpoints/`, `widths` (pattern -> C, a shared_mlp run) cutting those modules' components.
    Returns the SPD run directory."""
    config = yaml.safe_load((spd_dir / "final_config.yaml").read_text())
    run_dir = root / "spd" / "runs" / "s-1a2b3c4d"
    out = root / "target_models" / "pt-1"
    (out / "checkpoints").mkdir(parents=True)
    run_dir.mkdir(parents=True)

    model_config = yaml.safe_load((pretrain_dir / "model_config.yaml").read_text())
    arch = config["pretrained_model_class"].rsplit(".", 1)[1]
    module = config["pretrained_model_class"].rsplit(".", 2)[1]
    model_config["model_type"] = arch
    (out / "model_config.yaml").write_text(yaml.safe_dump(model_config))
    for name in ("final_config.yaml", "tokenizer.json"):
        if (pretrain_dir / name).is_file():
            shutil.copy(pretrain_dir / name, out / name)

    names = [p.name for p in spd_dir.iterdir()]
    checkpoint = latest_checkpoint_name(names, (".pth",))
    assert checkpoint is not None
    state: dict[str, Tensor] = torch.load(spd_dir / checkpoint, weights_only=True)
    if with_pretrain_checkpoint:
        target = {k.removeprefix("target_model."): v for k, v in state.items()}
        torch.save(target, out / "checkpoints" / f"model_step_{PRETRAIN_STEP}.pt")

    widths = dict(widths or {})
    patterns = config.pop("target_module_patterns")
    paths = {k.split(".")[1].replace("-", ".") for k in state if k.startswith("_components.")}
    for pattern, C in widths.items():
        assert config["ci_fn_type"] == "shared_mlp"
        for path in (p for p in paths if fnmatch.fnmatchcase(p, pattern)):
            state |= sliced(state, path.replace(".", "-"), C, len(config["ci_fn_hidden_dims"]))
    config["module_info"] = [
        {"module_pattern": p, "C": widths.get(p, config["C"])} for p in patterns
    ]
    del config["C"], config["identity_module_patterns"]
    config["identity_module_info"] = None
    config["autocast_bf16"] = True
    config["pretrained_model_class"] = f"spd.pretrain.models.{module}.{arch}"
    checkpoint_file = out / "checkpoints" / f"model_step_{PRETRAIN_STEP}.pt"
    config["pretrained_model_name"] = os.path.relpath(checkpoint_file, run_dir)
    tokenizer = config.get("tokenizer_name")
    if tokenizer is not None:
        shutil.copytree((spd_dir / tokenizer).resolve(), root / "tokenizers" / "t")
        config["tokenizer_name"] = os.path.relpath(root / "tokenizers" / "t", run_dir)
    for name in names:
        if name not in ("final_config.yaml", checkpoint) and (spd_dir / name).is_file():
            shutil.copy(spd_dir / name, run_dir / name)
    (run_dir / "final_config.yaml").write_text(yaml.safe_dump(config))
    bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(bf16, run_dir / checkpoint)
    return run_dir


def demo_in_current_layout(root: Path, **kwargs: Any) -> Path:
    demo = demo_run_path()
    return write_current_layout(demo, demo.parent / "pretrain", root, **kwargs)


DEMO_WIDTHS = {"h.*.mlp.c_fc": 100, "h.*.mlp.down_proj": 90}


@pytest.mark.parametrize("with_pretrain_checkpoint", [True, False])
def test_demo_in_the_current_layout_loads_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_pretrain_checkpoint: bool
) -> None:
    """The pretraining checkpoint's configs are found from its path even when the .pt file was
    not copied along (its weights are in the SPD checkpoint too)."""
    run_dir = demo_in_current_layout(
        tmp_path / "lab", widths=DEMO_WIDTHS, with_pretrain_checkpoint=with_pretrain_checkpoint
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = load_run(run_dir)
    expected = module_ci(bf16_rounded(load_run(demo_run_path())), TOKENS)
    got = module_ci(run, TOKENS)

    assert run.config.pretrained_model_class.startswith("spd.pretrain.models.")
    assert run.tokenizer is not None
    assert run.model.components("h.1.mlp.c_fc").C == 100
    assert run.model.components("h.0.mlp.down_proj").C == 90
    assert run.model.components("h.0.attn.q_proj").C == 128
    assert got.keys() == expected.keys()
    for path, ci in got.items():
        want = expected[path][..., : ci.shape[-1]]
        assert torch.allclose(ci, want, rtol=0, atol=1e-6), path
    assert any(bool((ci > 0).any()) for ci in got.values())


@pytest.mark.parametrize("arch", ["GPT2Simple", "LlamaSimple", "LlamaSimpleMLP"])
def test_each_builtin_architecture_under_its_current_class_path(
    write_spd_run: Callable[[RunSpec], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arch: str,
) -> None:
    original = write_spd_run(RunSpec(arch=arch))  # type: ignore[arg-type]
    pretrain = original.with_name(f"{original.name}-pretrain")
    run_dir = write_current_layout(original, pretrain, tmp_path / "lab")
    config = yaml.safe_load((run_dir / "final_config.yaml").read_text())
    assert config["pretrained_model_class"].startswith("spd.pretrain.models.")
    assert config["pretrained_model_name"].startswith("../")
    monkeypatch.chdir(tmp_path)
    got = module_ci(load_run(run_dir), TOKENS)
    expected = module_ci(bf16_rounded(load_run(original)), TOKENS)
    assert got.keys() == expected.keys()
    for path, ci in got.items():
        assert torch.allclose(ci, expected[path], rtol=0, atol=1e-6), path


def test_relative_paths_resolve_against_the_run_directory_before_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = demo_in_current_layout(tmp_path / "lab")
    config = yaml.safe_load((run_dir / "final_config.yaml").read_text())
    relative = Path(config["pretrained_model_name"])
    # A decoy at the same relative path from the current directory, unusable if chosen.
    decoy_cwd = tmp_path / "a" / "b" / "c"
    decoy = (decoy_cwd / relative).parents[1]
    decoy.mkdir(parents=True)
    (decoy / "model_config.yaml").write_text(yaml.safe_dump({"model_type": "GPT2Simple"}))
    monkeypatch.chdir(decoy_cwd)
    assert load_run(run_dir).model.components("h.0.mlp.c_fc").C == 128

    # Not there from the run directory: taken from the current directory.
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    monkeypatch.chdir(run_dir)
    run = load_run(moved)
    assert run.model.components("h.0.mlp.c_fc").C == 128 and run.tokenizer is not None


def _broken(run_dir: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name / "lab"
    shutil.copytree(run_dir.parents[2], copy)
    return copy / run_dir.relative_to(run_dir.parents[2])


def _edit_yaml(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


def _error(run_dir: Path) -> str:
    with pytest.raises(LocattrComputeError) as info:
        load_run(run_dir, with_tokenizer=False)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_broken_run_names_the_file_and_key_that_did_not_fit(tmp_path: Path) -> None:
    run_dir = demo_in_current_layout(tmp_path / "good", widths=DEMO_WIDTHS)
    pretrain = tmp_path / "good" / "target_models" / "pt-1"

    nowhere = _broken(run_dir, tmp_path, "nowhere")
    _edit_yaml(
        nowhere / "final_config.yaml",
        lambda c: c.update(pretrained_model_name="../pt-9/checkpoints/model_step_1.pt"),
    )
    message = _error(nowhere)
    assert str(nowhere / "final_config.yaml") in message
    assert "pretrained_model_name '../pt-9/checkpoints/model_step_1.pt'" in message
    assert "relative paths are tried against the run directory" in message

    wrong_type = _broken(run_dir, tmp_path, "wrong_type")
    wrong_pretrain = wrong_type.parents[2] / pretrain.relative_to(tmp_path / "good")
    _edit_yaml(wrong_pretrain / "model_config.yaml", lambda c: c.update(model_type="GPT2Simple"))
    message = _error(wrong_type)
    assert f"{wrong_pretrain / 'model_config.yaml'}: model_type 'GPT2Simple'" in message
    assert "LlamaSimpleMLP" in message

    bad_field = _broken(run_dir, tmp_path, "bad_field")
    bad_pretrain = bad_field.parents[2] / pretrain.relative_to(tmp_path / "good")
    _edit_yaml(bad_pretrain / "model_config.yaml", lambda c: c.update(n_embd="wide"))
    message = _error(bad_field)
    assert str(bad_pretrain / "model_config.yaml") in message and "n_embd" in message

    wrong_c = _broken(run_dir, tmp_path, "wrong_c")
    _edit_yaml(wrong_c / "final_config.yaml", lambda c: c["module_info"][1].update(C=99))
    message = _error(wrong_c)
    assert str(wrong_c / "model_800.pth") in message
    assert "_components.h-0-mlp-c_fc.V (64, 100) != (64, 99)" in message

    no_module_info = _broken(run_dir, tmp_path, "no_module_info")
    _edit_yaml(no_module_info / "final_config.yaml", lambda c: c.pop("module_info"))
    message = _error(no_module_info)
    assert str(no_module_info / "final_config.yaml") in message and "module_info" in message


def test_current_wandb_run_ids_with_a_prefix() -> None:
    run = parse_wandb_path("wandb:goodfire/spd/t-bd02d372")
    assert (run.entity, run.project, run.run_id) == ("goodfire", "spd", "t-bd02d372")
    assert str(run) == "wandb:goodfire/spd/runs/t-bd02d372"
    assert parse_wandb_path("https://wandb.ai/goodfire/spd/runs/s-1a2b3c4d/logs").run_id == (
        "s-1a2b3c4d"
    )
