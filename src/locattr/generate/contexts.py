"""Activation contexts for a database: computed once, stored per component key."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from locattr.compute import LoadedRun
from locattr.compute.activation_contexts import ComponentContexts, activation_contexts
from locattr.generate.prompts import equal_length_batches, vocab_size
from locattr.generate.text import TokenText


def compute_contexts(
    run: LoadedRun,
    windows: Sequence[list[int]],
    *,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """`{component key: context record}` over `windows`, with token strings for display.

    Records carry the original's fields (`subcomponent_idx`, `mean_ci`, `example_tokens`,
    `example_ci`, `example_active_pos`, `example_active_ci`, `pr_tokens`, `pr_recalls`,
    `pr_precisions`, `predicted_tokens`, `predicted_probs`) plus `n_firings` and token ids.
    `progress(windows done)` is called after each batch.
    """
    if not windows:
        return {}

    def batches() -> Iterator[torch.Tensor]:
        done = 0
        for batch in equal_length_batches(windows, batch_size, len):
            yield torch.tensor(batch, dtype=torch.long)
            done += len(batch)  # the consumer asks for the next batch once this one is counted
            if progress is not None:
                progress(done)

    by_layer = activation_contexts(run.model, batches(), vocab_size=vocab_size(run))
    text = TokenText(run.tokenizer)
    return {
        f"{layer}:{record.component}": _record(text, record)
        for layer, records in by_layer.items()
        for record in records
    }


def _record(text: TokenText, contexts: ComponentContexts) -> dict[str, Any]:
    strings = text.strings
    return {
        "subcomponent_idx": contexts.component,
        "mean_ci": contexts.mean_ci,
        "n_firings": contexts.n_firings,
        "example_tokens": [strings(ids) for ids in contexts.example_token_ids],
        "example_token_ids": contexts.example_token_ids,
        "example_ci": contexts.example_ci,
        "example_active_pos": contexts.example_active_pos,
        "example_active_ci": contexts.example_active_ci,
        "pr_tokens": [s.strip() for s in strings(contexts.pr_token_ids)],
        "pr_recalls": contexts.pr_recalls,
        "pr_precisions": contexts.pr_precisions,
        "predicted_tokens": [s.strip() for s in strings(contexts.predicted_token_ids)],
        "predicted_probs": contexts.predicted_probs,
    }
