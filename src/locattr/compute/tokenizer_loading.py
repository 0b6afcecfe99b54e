"""Tokenizer for a run, through `transformers.AutoTokenizer`, offline unless allowed online.

Looked for in this order: `tokenizer_name` as a local directory; `tokenizer_name` in the Hugging
Face cache; tokenizer files in the run directory, then the pretrain directory; finally a
download of `tokenizer_name` unless `HF_HUB_OFFLINE=1`. Not finding one is an error: a run
without a tokenizer can only be used with token ids, which the caller must ask for explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from locattr.compute.config import SPDConfig
from locattr.compute.errors import LocattrComputeError
from locattr.compute.target_models import hf_offline, resolve_local

_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def _from_dir(directory: Path) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (directory / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    return PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))


def load_tokenizer(config: SPDConfig, run_dir: Path, pretrain_dir: Path | None) -> Any:
    from transformers import AutoTokenizer

    name = config.tokenizer_name
    tried: list[str] = []
    if name is not None:
        local = resolve_local(name, run_dir)
        if local is not None and local.is_dir():
            return _from_dir(local)
        try:
            return AutoTokenizer.from_pretrained(name, local_files_only=True)
        except (OSError, ValueError) as exc:
            tried.append(f"{name!r} is not in the Hugging Face cache ({type(exc).__name__})")
    for directory in (run_dir, pretrain_dir):
        if directory is not None and any((directory / f).is_file() for f in _TOKENIZER_FILES):
            return _from_dir(directory)
    tried.append(
        f"no tokenizer files in {run_dir}" + (f" or {pretrain_dir}" if pretrain_dir else "")
    )
    if name is not None and not hf_offline():
        try:
            return AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as exc:
            tried.append(f"downloading {name!r} failed ({type(exc).__name__})")
    raise LocattrComputeError(
        "no tokenizer for this run: " + "; ".join(tried) + ". Put the tokenizer files "
        "(tokenizer.json) in the run directory, fetch the named tokenizer once with network "
        "access, or call load_run(..., with_tokenizer=False) to work with token ids only"
    )
