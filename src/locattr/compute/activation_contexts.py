"""Activation contexts: for every component, how often and where it fires over a token corpus.

Pure over token batches (no I/O, no strings: token ids only, the caller decodes). A firing is
lower-leaky CI > `importance_threshold` (strict, as in the original). Everything is accumulated
with tensor ops per batch; nothing loops over tokens or components in Python until the final,
per-component conversion to plain records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from jaxtyping import Int
from torch import Tensor

from locattr.compute.component_model import ComponentModel


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
            cached = model(tokens, cache_inputs=True)
            ci, _ = model.causal_importances(cached.inputs)
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
    half = acc.window // 2
    records = []
    for c in torch.argsort(mean_ci, descending=True).tolist():
        total = int(n_firings[c])
        if total == 0:
            continue
        by_recall = torch.argsort(firings[c], descending=True)[: min(max_tokens, total)]
        by_recall = by_recall[firings[c][by_recall] > 0]
        by_freq = torch.argsort(predicted[c], descending=True)[: min(max_tokens, total)]
        by_freq = by_freq[predicted[c][by_freq] > 0]
        examples = acc.top_ci[c] > 0
        token_rows, ci_rows, active = [], [], []
        for tokens, cis in zip(
            acc.top_tokens[c][examples], acc.top_window_ci[c][examples], strict=True
        ):
            inside = tokens >= 0
            token_rows.append(tokens[inside].tolist())
            ci_rows.append([round(v, 3) for v in cis[inside].tolist()])
            active.append(int(half - (~inside[:half]).sum()))
        records.append(
            ComponentContexts(
                layer=path,
                component=c,
                mean_ci=round(float(mean_ci[c]), 3),
                n_firings=total,
                example_token_ids=token_rows,
                example_ci=ci_rows,
                example_active_pos=active,
                example_active_ci=[round(v, 3) for v in acc.top_ci[c][examples].tolist()],
                pr_token_ids=by_recall.tolist(),
                pr_recalls=[round(v, 3) for v in (firings[c][by_recall] / total).tolist()],
                pr_precisions=[
                    round(v, 3)
                    for v in (firings[c][by_recall] / token_counts[by_recall].clamp(min=1)).tolist()
                ],
                predicted_token_ids=by_freq.tolist(),
                predicted_probs=[round(v, 3) for v in (predicted[c][by_freq] / total).tolist()],
            )
        )
    return records
