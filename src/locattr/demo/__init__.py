"""The embedded demo: a tiny, real SPD run of a model trained on a synthetic story grammar.

`demo_run_path()` is the shipped SPD run directory (load it with `locattr.compute.load_run`);
`demo_prompts()` cuts default prompts from the grammar's held-out split. Regenerate the run with
`python -m locattr.demo.build`.
"""

from __future__ import annotations

from pathlib import Path

from locattr.demo.tokenizer import load_tokenizer
from locattr.demo.windows import corpus_windows

RUN_ROOT = Path(__file__).parent / "run"
MAX_N_CTX = 64  # the target model's block_size


def demo_run_path() -> Path:
    """The shipped SPD run directory (`final_config.yaml`, `model_<step>.pth`, `metrics.json`)."""
    path = RUN_ROOT / "spd"
    assert (path / "final_config.yaml").is_file(), (
        f"the demo run is missing from {path}; regenerate it with `python -m locattr.demo.build`"
    )
    return path


def demo_prompts(n: int, n_ctx: int = MAX_N_CTX, seed: int = 0) -> list[list[int]]:
    """`n` token-id windows of length `n_ctx` from the held-out split (stories joined by
    `[EOS]`, as SPD cuts LM prompts), tokenized with the shipped tokenizer."""
    assert 0 < n_ctx <= MAX_N_CTX, f"n_ctx must be in 1..{MAX_N_CTX} (the model's block_size)"
    tokenizer = load_tokenizer(RUN_ROOT / "tokenizer")
    return corpus_windows(tokenizer, "heldout", n, n_ctx, seed).tolist()


def demo_context_windows(n: int, n_ctx: int = MAX_N_CTX, seed: int = 0) -> list[list[int]]:
    """`n` windows of the training split: activation-context input disjoint from the prompts."""
    assert 0 < n_ctx <= MAX_N_CTX, f"n_ctx must be in 1..{MAX_N_CTX} (the model's block_size)"
    tokenizer = load_tokenizer(RUN_ROOT / "tokenizer")
    return corpus_windows(tokenizer, "train", n, n_ctx, seed).tolist()


__all__ = ["MAX_N_CTX", "RUN_ROOT", "demo_context_windows", "demo_prompts", "demo_run_path"]
