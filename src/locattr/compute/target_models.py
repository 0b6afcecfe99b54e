"""Build the target model an SPD config names (weights come from the SPD checkpoint later).

Order: a built-in SimpleStories architecture (from the pretrain run's `model_config.yaml`),
else any importable class with `from_pretrained` (transformers classes included; a bare name is
looked up in `transformers`). Relative paths in the config are tried against the run directory,
then the current directory.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
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


def local_candidates(source: str, run_dir: Path) -> tuple[Path, ...]:
    """Where a path from the config may be: as given when absolute, else under the run
    directory, then under the current directory (a run stays loadable wherever it is moved)."""
    candidate = Path(source).expanduser()
    paths = (
        (candidate,) if candidate.is_absolute() else (run_dir / candidate, Path.cwd() / candidate)
    )
    return tuple(path.resolve() for path in paths)


def resolve_local(source: str, run_dir: Path) -> Path | None:
    """`source` as an existing path, relative ones tried against the run directory first."""
    return next((path for path in local_candidates(source, run_dir) if path.exists()), None)


def local_pretrain_dir(source: str, run_dir: Path) -> Path | None:
    """The pretrain output directory a local name points at: the directory itself, or `<out>`
    for SPD's form `<out>/checkpoints/model_step_<N>.pt` (the configs sit in `<out>`). The
    checkpoint file itself may be absent when `<out>` holds `model_config.yaml`: its weights are
    in the SPD checkpoint too, so a run copied without it still loads."""
    for path in local_candidates(source, run_dir):
        if path.is_dir():
            return path
        if len(path.parents) < 2:
            continue
        out = path.parents[1]
        if path.is_file() or (path.suffix == ".pt" and (out / "model_config.yaml").is_file()):
            return out
    return None


def pretrain_dir(config: SPDConfig, run_dir: Path) -> Path | None:
    """The pretrain run's directory (downloaded for `wandb:` names), or None when unnamed or
    not found."""
    source = config.pretrained_model_source
    if source is None:
        return None
    if is_wandb_path(source):
        return fetch_pretrain_run(parse_wandb_path(source))
    return local_pretrain_dir(source, run_dir)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise LocattrComputeError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise LocattrComputeError(f"{path} does not hold a mapping")
    return data


def _builtin_model(name: str, config: SPDConfig, run_dir: Path) -> nn.Module:
    directory = pretrain_dir(config, run_dir)
    if directory is None:
        source, key = config.pretrained_model_source, config.pretrained_model_source_key
        candidates = local_candidates(source, run_dir) if source is not None else ()
        tried = f" (tried {', '.join(map(str, candidates))})" if candidates else ""
        raise LocattrComputeError(
            f"{run_dir / 'final_config.yaml'}: {key} {source!r} names no pretrain run{tried}: "
            f"{config.pretrained_model_class} needs its pretrain run's model_config.yaml; set "
            f"{key} to a wandb: path, the pretrain output directory, or its "
            "checkpoints/model_step_<N>.pt (relative paths are tried against the run directory, "
            "then the current directory)"
        )
    model_config_path = directory / "model_config.yaml"
    pretrain_config_path = directory / "final_config.yaml"
    pretrain_config = _read_yaml(pretrain_config_path) if pretrain_config_path.is_file() else {}
    if model_config_path.is_file():
        fields = _read_yaml(model_config_path)
        _check_model_type(fields, name, model_config_path, config, run_dir)
        model = build_builtin(name, fields, str(model_config_path))
    elif pretrain_config.get("model_id") in PRESETS:
        preset_class, fields = PRESETS[pretrain_config["model_id"]]
        if preset_class != name:
            raise LocattrComputeError(
                f"{pretrain_config_path}: model_id {pretrain_config['model_id']!r} is a preset "
                f"{preset_class}, but pretrained_model_class says {name}"
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


def _check_model_type(
    fields: dict[str, Any], name: str, path: Path, config: SPDConfig, run_dir: Path
) -> None:
    """Newer pretrain runs name their class (`model_type`); it must be the one the SPD config
    names, or the checkpoint's weights would be read into another architecture."""
    model_type = fields.get("model_type")
    if model_type is not None and model_type != name:
        raise LocattrComputeError(
            f"{path}: model_type {model_type!r} does not match pretrained_model_class "
            f"{config.pretrained_model_class!r} in {run_dir / 'final_config.yaml'}; point "
            f"{config.pretrained_model_source_key} at the pretrain run of the {name} this SPD "
            "run decomposed"
        )


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
        builtins = ", ".join(f"spd.pretrain.models.<module>.{n}" for n in BUILTINS)
        raise LocattrComputeError(
            f"{run_dir / 'final_config.yaml'}: unknown pretrained_model_class {class_path!r}: "
            f"not a built-in architecture ({builtins}, also under simple_stories_train.models.) "
            "and not an importable class with `from_pretrained`; install the package that "
            "defines it so `import` finds it"
        )
    source = config.pretrained_model_source
    if source is None:
        raise LocattrComputeError(
            f"{run_dir / 'final_config.yaml'}: {class_path} needs pretrained_model_name or "
            "pretrained_model_path to load"
        )
    local = resolve_local(source, run_dir)
    kwargs: dict[str, Any] = {}
    if cls.__module__.startswith("transformers"):
        # Eager attention keeps batched backward passes on plain, vmappable ops.
        kwargs = {"attn_implementation": "eager", "local_files_only": hf_offline()}
    model = cls.from_pretrained(str(local) if local is not None else source, **kwargs)  # type: ignore[attr-defined]
    assert isinstance(model, nn.Module), f"{class_path}.from_pretrained did not return a module"
    return model


@dataclass(frozen=True)
class Blocks:
    """A target model's transformer blocks: the `nn.ModuleList` at `path` whose items hold the
    decomposed modules, `count` items long (`h` with `h.0`, `h.1`, … in the SPD models)."""

    path: str
    count: int

    def index_of(self, module_path: str) -> int | None:
        """The block `module_path` lies in, None when outside every block."""
        prefix = f"{self.path}."
        if not module_path.startswith(prefix):
            return None
        head = module_path.removeprefix(prefix).split(".", 1)[0]
        return int(head) if head.isdigit() else None


def find_blocks(target: nn.Module, module_paths: Iterable[str]) -> Blocks:
    """The one block list the decomposed modules lie in: for each module, the outermost
    `nn.ModuleList` among its ancestors, indexed by position. Found from the module tree, not
    from names, so any architecture that keeps its blocks in a ModuleList works."""
    lists = {name: len(m) for name, m in target.named_modules() if isinstance(m, nn.ModuleList)}
    found: set[str] = set()
    for path in module_paths:
        parts = path.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            if prefix in lists and parts[k].isdigit():
                found.add(prefix)
                break
    if len(found) != 1:
        where = "none lies" if not found else f"they lie in {len(found)}: {sorted(found)}"
        raise LocattrComputeError(
            f"n_blocks needs the decomposed modules to lie in one list of blocks (an "
            f"nn.ModuleList such as `h`) of {type(target).__name__}, but {where}; load without "
            "n_blocks"
        )
    (path,) = found
    return Blocks(path, lists[path])
