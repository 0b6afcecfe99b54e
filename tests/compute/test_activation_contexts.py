"""Batched activation contexts against a plain per-token loop on a tiny run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from locattr.compute import load_run
from locattr.compute.activation_contexts import activation_contexts
from locattr.compute.component_model import CACHE_INPUTS

from .spd_runs import TEST_DEVICE, RunSpec

THRESHOLD = 0.1
SIDE = 2


@pytest.fixture(scope="module")
def corpus() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randint(0, 32, (3, 8), generator=generator) for _ in range(3)]


def test_contexts_match_a_per_token_loop(
    write_spd_run: Callable[[RunSpec], Path], corpus: list[torch.Tensor]
) -> None:
    run = load_run(
        write_spd_run(RunSpec(n_layer=1)), TEST_DEVICE, dtype=torch.float64, with_tokenizer=False
    )
    got = activation_contexts(
        run.model,
        corpus,
        vocab_size=32,
        importance_threshold=THRESHOLD,
        n_tokens_either_side=SIDE,
        top_k=3,
        max_tokens=100,
    )
    tokens = torch.cat(corpus)
    with torch.no_grad():
        cached = run.model(tokens.to(run.device), CACHE_INPUTS)
        ci, _ = run.model.causal_importances(cached.inputs)
    ci = {path: values.cpu() for path, values in ci.items()}
    predicted = cached.output.argmax(-1).cpu()
    occurrences = Counter(tokens.flatten().tolist())
    layer = "h.0.mlp.c_fc"
    records = {r.component: r for r in got[layer]}
    values = ci[layer]
    for c in range(values.shape[-1]):
        fires = [
            (b, s) for b in range(len(tokens)) for s in range(8) if values[b, s, c] > THRESHOLD
        ]
        if not fires:
            assert c not in records
            continue
        record = records[c]
        assert record.n_firings == len(fires)
        assert record.mean_ci == round(float(values[..., c].mean()), 3)
        on_token = Counter(int(tokens[b, s]) for b, s in fires)
        top_token = record.pr_token_ids[0]
        assert on_token[top_token] == max(on_token.values())
        assert record.pr_recalls[0] == round(on_token[top_token] / len(fires), 3)
        assert record.pr_precisions[0] == round(on_token[top_token] / occurrences[top_token], 3)
        preds = Counter(int(predicted[b, s]) for b, s in fires)
        assert dict(zip(record.predicted_token_ids, record.predicted_probs, strict=True)) == {
            t: round(n / len(fires), 3) for t, n in preds.items()
        }
        best = max(float(values[b, s, c]) for b, s in fires)
        assert record.example_active_ci[0] == round(best, 3)
        windows = set()
        for b, s in fires:
            if float(values[b, s, c]) == best:
                lo, hi = max(0, s - SIDE), min(8, s + SIDE + 1)
                windows.add((tuple(tokens[b, lo:hi].tolist()), s - lo))
        assert (tuple(record.example_token_ids[0]), record.example_active_pos[0]) in windows
        assert len(record.example_token_ids) == min(3, len(fires))
    mean_cis = [r.mean_ci for r in got[layer]]
    assert mean_cis == sorted(mean_cis, reverse=True)
