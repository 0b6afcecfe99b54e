"""Build the target model an SPD config names (weights come from the SPD checkpoint later).

Order: a built-in SimpleStories architecture (from the pretrain run's `model_config.yaml`),
else any importable class with `from_pretrained` (transformers classes included; a bare name is
looked up in `transformers`).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from locattr.compute.architectures import BUILTINS, PRESETS, build_builtin, builtin_name
from locattr.compute.architectures.common import LayerNorm
from locattr.compute.config import SPDConfig
from locattr.compute.errors import LocattrComputeError
from locattr.compute.wandb_cache import fetch_pretrain_run, is_wandb_path, parse_wandb_path


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def resolve_local(source: str, run_dir: Path) -> Path | None:
    """`source` as an existing path, relative ones tried against the run directory first."""
    candidate = Path(source).expanduser()
    for path in (run_dir / candidate, candidate) if not candidate.is_absolute() else (candidate,):
        if path.exists():
            return path
    return None


def pretrain_dir(config: SPDConfig, run_dir: Path) -> Path | None:
    """The pretrain run's directory (downloaded for `wandb:` names), or None when unnamed."""
    source = config.pretrained_model_source
    if source is None:
        return None
    if is_wandb_path(source):
        return fetch_pretrain_run(parse_wandb_path(source))
    local = resolve_local(source, run_dir)
    if local is None:
        return None
    # A local pretrain path may name `<out>/checkpoints/model_step_N.pt`; configs live in `<out>`.
    return local.parents[1] if local.is_file() else local


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise LocattrComputeError(f"{path} does not hold a mapping")
    return data


def _builtin_model(name: str, config: SPDConfig, run_dir: Path) -> nn.Module:
    directory = pretrain_dir(config, run_dir)
    if directory is None:
        raise LocattrComputeError(
            f"{config.pretrained_model_class} needs its pretrain run's model_config.yaml, but "
            f"pretrained_model_name/path ({config.pretrained_model_source!r}) is neither a "
            "wandb: path nor an existing directory (relative paths are tried against the run "
            "directory)"
        )
    model_config_path = directory / "model_config.yaml"
    pretrain_config_path = directory / "final_config.yaml"
    pretrain_config = _read_yaml(pretrain_config_path) if pretrain_config_path.is_file() else {}
    if model_config_path.is_file():
        model = build_builtin(name, _read_yaml(model_config_path), str(model_config_path))
    elif pretrain_config.get("model_id") in PRESETS:
        preset_class, fields = PRESETS[pretrain_config["model_id"]]
        if preset_class != name:
            raise LocattrComputeError(
                f"preset {pretrain_config['model_id']!r} is a {preset_class}, config says {name}"
            )
        model = build_builtin(name, fields, f"preset {pretrain_config['model_id']}")
    else:
        raise LocattrComputeError(
            f"no model_config.yaml in {directory} (and no known preset `model_id` in its "
            "final_config.yaml): the architecture hyper-parameters cannot be recovered"
        )
    if pretrain_config.get("enable_ln_ablation"):
        _apply_ln_stds(model, directory / "ln-stds.json")
    return model


def _apply_ln_stds(model: nn.Module, path: Path) -> None:
    """LN-ablated pretrain runs fix each LayerNorm's std; SPD trained against those values."""
    if not path.is_file():
        raise LocattrComputeError(
            f"the pretrain run enables LN ablation but {path} is missing; its stds are needed"
        )
    stds = json.loads(path.read_text())
    for module_name, std in stds.items():
        module = model.get_submodule(module_name)
        if not isinstance(module, LayerNorm):
            raise LocattrComputeError(f"ln-stds.json names {module_name!r}, not a LayerNorm")
        module.std = float(std)


def _import_class(class_path: str) -> type | None:
    module_name, _, class_name = class_path.rpartition(".")
    module_name = module_name or "transformers"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls = getattr(module, class_name, None)
    return cls if isinstance(cls, type) else None


def build_target_model(config: SPDConfig, run_dir: Path) -> nn.Module:
    class_path = config.pretrained_model_class
    name = builtin_name(class_path)
    if name is not None:
        return _builtin_model(name, config, run_dir)
    cls = _import_class(class_path)
    if cls is None or not hasattr(cls, "from_pretrained"):
        builtins = ", ".join(
            f"{prefix}<module>.{n}"
            for n in BUILTINS
            for prefix in ("simple_stories_train.models.",)
        )
        raise LocattrComputeError(
            f"unknown pretrained_model_class {class_path!r}: not a built-in architecture "
            f"({builtins}, also under spd.pretrain.models.) and not an importable class with "
            "`from_pretrained`; install the package that defines it so `import` finds it"
        )
    source = config.pretrained_model_source
    if source is None:
        raise LocattrComputeError(f"{class_path} needs pretrained_model_name or _path to load")
    local = resolve_local(source, run_dir)
    kwargs: dict[str, Any] = {}
    if cls.__module__.startswith("transformers"):
        # Eager attention keeps batched backward passes on plain, vmappable ops.
        kwargs = {"attn_implementation": "eager", "local_files_only": hf_offline()}
    model = cls.from_pretrained(str(local) if local is not None else source, **kwargs)  # type: ignore[attr-defined]
    assert isinstance(model, nn.Module), f"{class_path}.from_pretrained did not return a module"
    return model
