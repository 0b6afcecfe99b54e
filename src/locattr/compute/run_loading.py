"""`load_run`: an SPD run (directory, checkpoint file or `wandb:` path) -> a ready model."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from locattr.compute.component_model import (
    ComponentModel,
    load_component_state,
    rename_legacy_key,
)
from locattr.compute.config import ModuleInfo, SPDConfig, load_spd_config
from locattr.compute.errors import LocattrComputeError
from locattr.compute.structure import Structure, discover_structure
from locattr.compute.target_models import build_target_model, find_blocks, pretrain_dir
from locattr.compute.tokenizer_loading import load_tokenizer
from locattr.compute.wandb_cache import (
    fetch_spd_run,
    is_wandb_path,
    latest_checkpoint_name,
    parse_wandb_path,
)


@dataclass
class LoadedRun:
    """A run ready for attribution. `tokenizer` is None only when loaded `with_tokenizer=False`.

    `n_blocks`: only the first `n_blocks` transformer blocks' modules are decomposed (`config`
    is restricted to them; later blocks run as the target model); None when every decomposed
    module of the run is (no limit, or a limit of at least the model's block count).
    """

    model: ComponentModel
    tokenizer: Any
    config: SPDConfig
    structure: Structure
    source: str
    run_dir: Path
    checkpoint: Path
    n_blocks: int | None = None

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
    n_blocks: int | None = None,
) -> LoadedRun:
    """Load an SPD run without the spd package.

    Accepts a run directory (latest `model_<step>.pth` by numeric step), a checkpoint file
    beside its `final_config.yaml`, or `wandb:<entity>/<project>/runs/<id>` (cached after the
    first download). Checkpoint tensors of any float dtype (bf16-trained runs) are converted to
    `dtype`. `n_blocks` decomposes only the modules in the first N transformer blocks, so
    graphs hold only their layers while later blocks run as the plain target model (the
    original's `--n_blocks`). Raises `LocattrComputeError` with an actionable message for bad
    input.
    """
    target_device = resolve_device(device)
    source, config_path, checkpoint = locate_run_files(path_or_wandb)
    run_dir = config_path.parent
    config = load_spd_config(config_path)
    target = build_target_model(config, run_dir)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise LocattrComputeError(f"{checkpoint} does not hold a state dict")
    limit = None
    if n_blocks is not None:
        config, dropped, limit = first_blocks_config(config, target, n_blocks)
        state = _without_modules(state, dropped)
    model = ComponentModel(target, config)
    load_component_state(model, state, str(checkpoint))
    model.to(device=target_device, dtype=dtype)
    model.eval()
    tokenizer = (
        load_tokenizer(config, run_dir, pretrain_dir(config, run_dir)) if with_tokenizer else None
    )
    return LoadedRun(
        model=model,
        tokenizer=tokenizer,
        config=config,
        structure=discover_structure(model),
        source=source,
        run_dir=run_dir,
        checkpoint=checkpoint,
        n_blocks=limit,
    )


def first_blocks_config(
    config: SPDConfig, target: nn.Module, n_blocks: int
) -> tuple[SPDConfig, frozenset[str], int | None]:
    """(config decomposing only the modules in blocks < `n_blocks`, the state-dict module keys
    of those it leaves out, the limit in effect: None when it leaves nothing out).

    The modules are matched as `ComponentModel` matches them (fnmatch over `named_modules`,
    identity patterns on the modules they precede), with the same errors for a pattern that
    matches nothing and a module with two C values; a module outside every block is left out.
    """
    if n_blocks < 1:
        raise LocattrComputeError(f"n_blocks must be at least 1, got {n_blocks}")
    decomposed = _matched_c(target, config.module_info)
    identities = _matched_c(target, config.identity_module_info)
    blocks = find_blocks(target, [*decomposed, *identities])
    if n_blocks > blocks.count:
        raise LocattrComputeError(
            f"n_blocks {n_blocks} is more than the {blocks.count} blocks of this model "
            f"({blocks.path}.0 … {blocks.path}.{blocks.count - 1}); pass at most {blocks.count}"
        )

    def kept(paths: Mapping[str, int]) -> dict[str, int]:
        return {
            p: c for p, c in paths.items() if (i := blocks.index_of(p)) is not None and i < n_blocks
        }

    kept_decomposed, kept_identities = kept(decomposed), kept(identities)
    if not kept_decomposed and not kept_identities:
        raise LocattrComputeError(
            f"no decomposed module lies in the first {n_blocks} block(s) of {blocks.path}; pass "
            "a larger n_blocks"
        )
    left_out = [p for p in decomposed if p not in kept_decomposed] + [
        f"{p}.pre_identity" for p in identities if p not in kept_identities
    ]
    if not left_out:
        return config, frozenset(), None
    restricted = config.restricted_to(kept_decomposed, kept_identities)
    return restricted, frozenset(p.replace(".", "-") for p in left_out), n_blocks


def _matched_c(target: nn.Module, infos: tuple[ModuleInfo, ...]) -> dict[str, int]:
    """Module path -> C for every module the patterns match, in `named_modules` order."""
    names = [name for name, _ in target.named_modules()]
    matched: dict[str, set[int]] = {}
    for info in infos:
        hits = [n for n in names if fnmatch.fnmatchcase(n, info.module_pattern)]
        if not hits:
            raise LocattrComputeError(
                f"module pattern {info.module_pattern!r} matches no module of the target model"
            )
        for name in hits:
            matched.setdefault(name, set()).add(info.C)
    for name, cs in matched.items():
        if len(cs) > 1:
            raise LocattrComputeError(f"module {name!r} matches patterns with different C: {cs}")
    return {name: next(iter(cs)) for name in names if (cs := matched.get(name))}


def _without_modules(state: Mapping[str, Tensor], keys: frozenset[str]) -> dict[str, Tensor]:
    """The checkpoint without the components and CI functions of the modules `keys` (dashed
    paths) names, after SPD's legacy renames so old key names are recognised too."""
    renamed = {rename_legacy_key(k): v for k, v in state.items()}
    return {
        k: v
        for k, v in renamed.items()
        if not (k.startswith(("_components.", "_ci_fns.")) and k.split(".")[1] in keys)
    }
