"""Activation contexts: for every component, how often and where it fires over a token corpus.

Pure over token batches (no I/O, no strings: token ids only, the caller decodes). A firing is
lower-leaky CI > `importance_threshold` (strict, as in the original). Everything is accumulated
with tensor ops per batch; nothing loops over tokens or components in Python until the final,
per-component conversion to plain records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from locattr.compute.component_model import CACHE_INPUTS, ComponentModel


@dataclass(frozen=True)
class ComponentContexts:
    """One component's contexts. Examples are ranked by `example_active_ci`, descending;
    `example_token_ids[i][example_active_pos[i]]` is the firing token. Token lists are sorted by
    recall (input tokens) or frequency (predicted tokens), descending."""

    layer: str
    component: int
    mean_ci: float
    n_firings: int
    example_token_ids: list[list[int]]
    example_ci: list[list[float]]
    example_active_pos: list[int]
    example_active_ci: list[float]
    pr_token_ids: list[int]
    pr_recalls: list[float]
    pr_precisions: list[float]
    predicted_token_ids: list[int]
    predicted_probs: list[float]


@dataclass
class _LayerAccumulator:
    C: int
    k: int
    window: int
    ci_sum: Tensor
    firings: list[Tensor] = field(default_factory=list)
    predicted: list[Tensor] = field(default_factory=list)
    top_ci: Tensor | None = None
    top_tokens: Tensor | None = None
    top_window_ci: Tensor | None = None


def activation_contexts(
    model: ComponentModel,
    token_batches: Iterable[Int[Tensor, "batch seq"]],
    *,
    vocab_size: int,
    importance_threshold: float = 0.1,
    n_tokens_either_side: int = 5,
    top_k: int = 10,
    max_tokens: int = 20,
) -> dict[str, list[ComponentContexts]]:
    """Per layer, the components that fired at least once, sorted by mean CI descending.

    `mean_ci` averages lower-leaky CI over every token seen; precision = firings on a token /
    occurrences of that token; recall = firings on a token / all firings of the component;
    predicted tokens are the argmax of the plain target model's logits at firing positions.
    """
    width = 2 * n_tokens_either_side + 1
    accumulators: dict[str, _LayerAccumulator] = {}
    token_counts = torch.zeros(vocab_size, dtype=torch.long)
    n_tokens = 0
    for batch in token_batches:
        tokens = batch.to(model.device)
        with torch.no_grad():
            cached = model(tokens, CACHE_INPUTS)
            ci = model.lower_leaky_ci(cached.inputs)
        predicted = cached.output.argmax(-1).cpu()
        flat_tokens = tokens.cpu()
        token_counts += torch.bincount(flat_tokens.flatten(), minlength=vocab_size)
        n_tokens += flat_tokens.numel()
        padded_tokens = torch.nn.functional.pad(flat_tokens, (n_tokens_either_side,) * 2, value=-1)
        offsets = torch.arange(width)
        for path, values in ci.items():
            values = values.float().cpu()
            acc = accumulators.get(path)
            if acc is None:
                C = values.shape[-1]
                acc = _LayerAccumulator(C, top_k, width, torch.zeros(C, dtype=torch.float64))
                accumulators[path] = acc
            acc.ci_sum += values.sum((0, 1)).double()
            b, s, c = (values > importance_threshold).nonzero(as_tuple=True)
            acc.firings.append(c * vocab_size + flat_tokens[b, s])
            acc.predicted.append(c * vocab_size + predicted[b, s])
            _merge_top_examples(acc, values, padded_tokens, offsets, importance_threshold)
    return {
        path: _records(path, acc, token_counts, n_tokens, vocab_size, max_tokens)
        for path, acc in accumulators.items()
    }


def _merge_top_examples(
    acc: _LayerAccumulator,
    values: Tensor,
    padded_tokens: Tensor,
    offsets: Tensor,
    threshold: float,
) -> None:
    batch, seq, C = values.shape
    half = acc.window // 2
    scores = values.reshape(batch * seq, C).masked_fill(values.reshape(-1, C) <= threshold, -1.0)
    k = min(acc.k, batch * seq)
    best, where = scores.topk(k, dim=0)
    b, s = where // seq, where % seq
    window_pos = s[..., None] + offsets
    tokens = padded_tokens[b[..., None], window_pos]
    padded_ci = torch.nn.functional.pad(values, (0, 0, half, half))
    components = torch.arange(C)[None, :, None].expand_as(window_pos)
    window_ci = padded_ci[b[..., None], window_pos, components]
    best, tokens, window_ci = best.T, tokens.transpose(0, 1), window_ci.transpose(0, 1)
    if acc.top_ci is not None:
        assert acc.top_tokens is not None and acc.top_window_ci is not None
        best = torch.cat((acc.top_ci, best), 1)
        tokens = torch.cat((acc.top_tokens, tokens), 1)
        window_ci = torch.cat((acc.top_window_ci, window_ci), 1)
    keep_ci, keep = best.topk(min(acc.k, best.shape[1]), dim=1)
    acc.top_ci = keep_ci
    acc.top_tokens = tokens.gather(1, keep[..., None].expand(-1, -1, acc.window))
    acc.top_window_ci = window_ci.gather(1, keep[..., None].expand(-1, -1, acc.window))


def _records(
    path: str,
    acc: _LayerAccumulator,
    token_counts: Tensor,
    n_tokens: int,
    vocab_size: int,
    max_tokens: int,
) -> list[ComponentContexts]:
    firings = torch.bincount(torch.cat(acc.firings), minlength=acc.C * vocab_size)
    firings = firings.view(acc.C, vocab_size)
    predicted = torch.bincount(torch.cat(acc.predicted), minlength=acc.C * vocab_size)
    predicted = predicted.view(acc.C, vocab_size)
    n_firings = firings.sum(1)
    mean_ci = acc.ci_sum / max(n_tokens, 1)
    assert acc.top_ci is not None and acc.top_tokens is not None and acc.top_window_ci is not None
    # Everything per component is ranked here for all components at once; the loop below
    # only slices plain lists.
    k = min(max_tokens, vocab_size)
    recall_count, recall_token = firings.topk(k, dim=1)
    predicted_count, predicted_token = predicted.topk(k, dim=1)
    totals = n_firings.clamp(min=1)[:, None].double()
    recalls = _rounded(recall_count / totals)
    precisions = _rounded(recall_count / token_counts[recall_token].clamp(min=1))
    predicted_probs = _rounded(predicted_count / totals)
    n_recall = (recall_count > 0).sum(1).tolist()
    n_predicted = (predicted_count > 0).sum(1).tolist()
    recall_token_lists, predicted_token_lists = recall_token.tolist(), predicted_token.tolist()
    half = acc.window // 2
    top_ci = acc.top_ci.tolist()
    top_ci_rounded = _rounded(acc.top_ci)
    top_tokens = acc.top_tokens.tolist()
    window_ci = _rounded(acc.top_window_ci)
    totals_list, mean_list = n_firings.tolist(), mean_ci.tolist()
    records = []
    for c in torch.argsort(mean_ci, descending=True).tolist():
        if totals_list[c] == 0:
            continue
        token_rows, ci_rows, active, active_ci = [], [], [], []
        for j, score in enumerate(top_ci[c]):
            if score <= 0:
                continue
            inside = [i for i, t in enumerate(top_tokens[c][j]) if t >= 0]
            token_rows.append([top_tokens[c][j][i] for i in inside])
            ci_rows.append([window_ci[c][j][i] for i in inside])
            active.append(half - sum(1 for i in range(half) if top_tokens[c][j][i] < 0))
            active_ci.append(top_ci_rounded[c][j])
        r, p = n_recall[c], n_predicted[c]
        records.append(
            ComponentContexts(
                layer=path,
                component=c,
                mean_ci=round(mean_list[c], 3),
                n_firings=totals_list[c],
                example_token_ids=token_rows,
                example_ci=ci_rows,
                example_active_pos=active,
                example_active_ci=active_ci,
                pr_token_ids=recall_token_lists[c][:r],
                pr_recalls=recalls[c][:r],
                pr_precisions=precisions[c][:r],
                predicted_token_ids=predicted_token_lists[c][:p],
                predicted_probs=predicted_probs[c][:p],
            )
        )
    return records


def _rounded(values: Tensor) -> list[Any]:
    """3-decimal rounding as the original stored it, for a whole tensor at once."""
    return (values.double() * 1000).round().div(1000).tolist()
