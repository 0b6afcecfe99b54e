"""`load_run`: an SPD run (directory, checkpoint file or `wandb:` path) -> a ready model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from locattr.compute.component_model import ComponentModel, load_component_state
from locattr.compute.config import SPDConfig, load_spd_config
from locattr.compute.errors import LocattrComputeError
from locattr.compute.structure import Structure, discover_structure
from locattr.compute.target_models import build_target_model, pretrain_dir
from locattr.compute.tokenizer_loading import load_tokenizer
from locattr.compute.wandb_cache import (
    fetch_spd_run,
    is_wandb_path,
    latest_checkpoint_name,
    parse_wandb_path,
)


@dataclass
class LoadedRun:
    """A run ready for attribution. `tokenizer` is None only when loaded `with_tokenizer=False`."""

    model: ComponentModel
    tokenizer: Any
    config: SPDConfig
    structure: Structure
    source: str
    run_dir: Path
    checkpoint: Path

    @property
    def device(self) -> torch.device:
        return self.model.device


def resolve_device(device: str | torch.device) -> torch.device:
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LocattrComputeError(
            f"device {str(device)!r} requested but CUDA is not available here; use device='cpu'"
        )
    count = torch.cuda.device_count()
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= count:
        raise LocattrComputeError(f"device {str(device)!r} requested but only {count} GPU(s) exist")
    return resolved


def locate_run_files(path_or_wandb: str | Path) -> tuple[str, Path, Path]:
    """(normalised source, config path, checkpoint path) for any accepted run reference."""
    text = str(path_or_wandb)
    if is_wandb_path(text):
        run = parse_wandb_path(text)
        directory = fetch_spd_run(run)
        source = str(run)
    else:
        path = Path(text).expanduser().resolve()
        if not path.exists():
            raise LocattrComputeError(
                f"{text} does not exist: pass an SPD run directory, a model_<step>.pth file, "
                "or wandb:<entity>/<project>/runs/<id>"
            )
        directory = path if path.is_dir() else path.parent
        source = str(path)
    config = directory / "final_config.yaml"
    if not config.is_file():
        raise LocattrComputeError(
            f"no final_config.yaml in {directory}: an SPD run directory holds final_config.yaml "
            "and model_<step>.pth (a checkpoint file must sit beside its final_config.yaml)"
        )
    if not is_wandb_path(text) and Path(source).is_file():
        return source, config, Path(source)
    names = [p.name for p in directory.iterdir() if p.is_file()]
    checkpoint = latest_checkpoint_name(names, (".pth", ".pt"))
    if checkpoint is None:
        raise LocattrComputeError(f"no model_<step>.pth checkpoint in {directory}")
    return source, config, directory / checkpoint


def load_run(
    path_or_wandb: str | Path,
    device: str | torch.device = "cpu",
    *,
    with_tokenizer: bool = True,
    dtype: torch.dtype = torch.float32,
) -> LoadedRun:
    """Load an SPD run without the spd package.

    Accepts a run directory (latest `model_<step>.pth` by numeric step), a checkpoint file
    beside its `final_config.yaml`, or `wandb:<entity>/<project>/runs/<id>` (cached after the
    first download). Raises `LocattrComputeError` with an actionable message for bad input.
    """
    target_device = resolve_device(device)
    source, config_path, checkpoint = locate_run_files(path_or_wandb)
    run_dir = config_path.parent
    config = load_spd_config(config_path)
    model = ComponentModel(build_target_model(config, run_dir), config)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise LocattrComputeError(f"{checkpoint} does not hold a state dict")
    load_component_state(model, state, str(checkpoint))
    model.to(device=target_device, dtype=dtype)
    model.eval()
    tokenizer = (
        load_tokenizer(config, run_dir, _pretrain_dir_or_none(config, run_dir))
        if with_tokenizer
        else None
    )
    return LoadedRun(
        model=model,
        tokenizer=tokenizer,
        config=config,
        structure=discover_structure(model),
        source=source,
        run_dir=run_dir,
        checkpoint=checkpoint,
    )


def _pretrain_dir_or_none(config: SPDConfig, run_dir: Path) -> Path | None:
    source = config.pretrained_model_source
    if source is None or not (
        is_wandb_path(source) or Path(source).exists() or (run_dir / source).exists()
    ):
        return None
    return pretrain_dir(config, run_dir)
