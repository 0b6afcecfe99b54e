"""Token windows cut from a stream of stories joined by `[EOS]`, as SPD's LM data pipeline does.

Windows cross story boundaries (with `[EOS]` inside), like the windows SPD trains and evaluates on.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from tokenizers import Tokenizer
from torch import Tensor

from locattr.demo.corpus import Split, stories
from locattr.demo.tokenizer import EOS_ID

# Stories average ~59 tokens with [EOS]; dividing by less over-draws safely.
_MIN_MEAN_STORY_TOKENS = 45


def encode_windows(
    tokenizer: Tokenizer, texts: list[str], n_ctx: int
) -> Int[Tensor, "n_windows n_ctx"]:
    """Each text followed by `[EOS]`, concatenated, cut into full `n_ctx` windows."""
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
        ids.extend(encoding.ids)
        ids.append(EOS_ID)
    n = len(ids) // n_ctx
    return torch.tensor(ids[: n * n_ctx], dtype=torch.long).view(n, n_ctx)


def corpus_windows(
    tokenizer: Tokenizer, split: Split, n_windows: int, n_ctx: int, seed: int = 0
) -> Int[Tensor, "n_windows n_ctx"]:
    """Exactly `n_windows` windows of the split (deterministic in `seed`)."""
    n_stories = n_windows * n_ctx // _MIN_MEAN_STORY_TOKENS + 8
    windows = encode_windows(tokenizer, stories(split, n_stories, seed), n_ctx)
    assert windows.shape[0] >= n_windows, f"drew {windows.shape[0]} < {n_windows} windows"
    return windows[:n_windows]
