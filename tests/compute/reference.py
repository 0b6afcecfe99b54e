"""The slow, obviously correct reference: one backward pass per alive target unit.

With `structure=None` it trusts nothing discovered: each unit's gradient is taken w.r.t. every
other layer's leaf, at every position. With a structure it is the original system's algorithm
(its `sources_by_target`, s_in <= s_out for position-crossing pairs, s_in = s_out otherwise),
including its Python loop that turns each candidate entry into an edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from locattr.compute import LoadedRun, Structure
from locattr.compute.component_model import CACHE_INPUTS, DeltaTerm, ForwardPlan
from locattr.graph import OUTPUT_LAYER, WTE_LAYER, Edge, Graph, Node


def reference_graph(
    run: LoadedRun,
    token_ids: Sequence[int],
    *,
    ci_threshold: float = 1e-6,
    attr_threshold: float = 1e-4,
    include_wte: bool = False,
    include_output: bool = False,
    output_prob_threshold: float = 0.01,
    mode: str = "ci_masked",
    structure: Structure | None = None,
    target_stride: int = 1,
) -> Graph:
    """All alive nodes; edges into target units with (pos * width + component) % stride == 0
    (stride 1: every unit), so a benchmark can time and check a fixed sample."""
    model = run.model
    tokens = torch.tensor([list(token_ids)], dtype=torch.long, device=model.device)
    with torch.no_grad():
        ci, _ = model.causal_importances(model(tokens, CACHE_INPUTS).inputs)
    if mode == "ci_masked":
        masks, deltas = ci, None
    else:
        masks = {p: torch.ones_like(v) for p, v in ci.items()}
        ones = torch.ones(tokens.shape, device=model.device, dtype=model.dtype)
        with torch.no_grad():
            deltas = {p: DeltaTerm(w, ones) for p, w in model.weight_deltas().items()}
    with torch.enable_grad():
        plan = ForwardPlan(masks=masks, deltas=deltas, leaves="acts", embedding_leaf=include_wte)
        result = model(tokens, plan)

    values = {p: ci[p][0] for p in model.module_paths}
    leaves = dict(result.post)
    targets = dict(result.pre)
    order = list(model.module_paths)
    if include_wte:
        assert result.embedding is not None
        values[WTE_LAYER] = torch.ones(tokens.shape[1], 1, dtype=model.dtype)
        leaves[WTE_LAYER] = result.embedding
        order.insert(0, WTE_LAYER)
    if include_output:
        values[OUTPUT_LAYER] = result.output.detach()[0].softmax(-1)
        targets[OUTPUT_LAYER] = result.output
        order.append(OUTPUT_LAYER)

    def alive(layer: str) -> list[tuple[int, int]]:
        threshold = output_prob_threshold if layer == OUTPUT_LAYER else ci_threshold
        return [tuple(x) for x in (values[layer] >= threshold).nonzero().tolist()]

    alive_units = {layer: alive(layer) for layer in order}
    nodes = [
        Node(layer, s, c, float(values[layer][s, c]))
        for layer in order
        for s, c in alive_units[layer]
    ]
    edges: list[Edge] = []
    for target in order:
        if target not in targets or not targets[target].requires_grad:
            continue
        if structure is None:
            sources = [s for s in order if s in leaves and s != target]
        else:
            sources = [p.source for p in structure.sources_of(target) if p.source in leaves]
        if not sources:
            continue
        width = values[target].shape[-1]
        for s_out, c_out in alive_units[target]:
            if (s_out * width + c_out) % target_stride:
                continue
            grads = torch.autograd.grad(
                targets[target][0, s_out, c_out],
                [leaves[s] for s in sources],
                retain_graph=True,
                allow_unused=True,
            )
            for source, grad in zip(sources, grads, strict=True):
                if grad is None:
                    continue
                weighted = (grad * leaves[source])[0]
                if source == WTE_LAYER and include_wte:
                    weighted = weighted.sum(-1, keepdim=True)
                pair = structure.pair(source, target) if structure is not None else None
                for s_in, c_in in alive_units[source]:
                    if pair is not None and (
                        s_in > s_out if pair.crosses_positions else s_in != s_out
                    ):
                        continue
                    value = weighted[s_in, c_in].item()
                    if abs(value) >= attr_threshold:
                        edges.append(Edge(source, s_in, c_in, target, s_out, c_out, value))
    return Graph.from_records(nodes, edges)


def reference_spd_app_graph(
    run: LoadedRun,
    token_ids: Sequence[int],
    *,
    ci_threshold: float = 1e-6,
    attr_threshold: float = 1e-4,
    include_wte: bool = False,
    include_output: bool = False,
    output_prob_threshold: float = 0.01,
    target_stride: int = 1,
) -> Graph:
    """The SPD app's definition (goodfire-ai/spd `spd/app/backend/compute.py`, 2026), one
    backward per alive target unit, written from that definition:

    - gradients of the target model exactly: every component unmasked plus every weight-delta
      term, the delta terms reading the module input *attached* (paths through other layers'
      delta terms count), component activations detached into leaves;
    - alive: CI > 0 (and >= `ci_threshold`); `wte` at every position; an output token where
      the CI-masked model's probability is above `output_prob_threshold` (strictly), its edges
      the gradient of the target forward's logit;
    - edge = source act x gradient; `wte`'s summed over the model dimension (the token
      embedding's output only, no position embedding);
    - pairs as the structure finds them (direct paths), same position only, except pairs that
      cross positions (k/v -> o), which keep source positions <= the target's.
    """
    model, structure = run.model, run.structure
    tokens = torch.tensor([list(token_ids)], dtype=torch.long, device=model.device)
    seq = tokens.shape[1]
    with torch.no_grad():
        ci, _ = model.causal_importances(model(tokens, CACHE_INPUTS).inputs)
        masked_probs = model(tokens, ForwardPlan(masks=ci)).output[0].softmax(-1)
        ones = torch.ones(tokens.shape, device=model.device, dtype=model.dtype)
        deltas = {p: DeltaTerm(w, ones) for p, w in model.weight_deltas().items()}
    unmasked = {p: torch.ones_like(v) for p, v in ci.items()}
    plan = ForwardPlan(
        masks=unmasked,
        deltas=deltas,
        leaves="acts",
        delta_paths=True,
        embedding_leaf=include_wte,
    )
    with torch.enable_grad():
        result = model(tokens, plan)

    alive: dict[str, torch.Tensor] = {
        p: (ci[p][0] > 0) & (ci[p][0] >= ci_threshold) for p in model.module_paths
    }
    values = {p: ci[p][0] for p in model.module_paths}
    leaves = dict(result.post)
    targets = dict(result.pre)
    order = list(model.module_paths)
    if include_wte:
        assert result.embedding is not None
        values[WTE_LAYER] = torch.ones(seq, 1, dtype=model.dtype)
        alive[WTE_LAYER] = torch.ones(seq, 1, dtype=torch.bool)
        leaves[WTE_LAYER] = result.embedding
        order.insert(0, WTE_LAYER)
    if include_output:
        values[OUTPUT_LAYER] = masked_probs
        alive[OUTPUT_LAYER] = masked_probs > output_prob_threshold
        targets[OUTPUT_LAYER] = result.output
        order.append(OUTPUT_LAYER)

    units = {layer: [tuple(x) for x in alive[layer].nonzero().tolist()] for layer in order}
    nodes = [
        Node(layer, s, c, float(values[layer][s, c])) for layer in order for s, c in units[layer]
    ]
    edges: list[Edge] = []
    for target in order:
        pairs = [p for p in structure.sources_of(target) if p.source in leaves]
        if target not in targets or not pairs:
            continue
        width = values[target].shape[-1]
        for s_out, c_out in units[target]:
            if (s_out * width + c_out) % target_stride:
                continue
            grads = torch.autograd.grad(
                targets[target][0, s_out, c_out],
                [leaves[p.source] for p in pairs],
                retain_graph=True,
            )
            for pair, grad in zip(pairs, grads, strict=True):
                weighted = (grad * leaves[pair.source])[0]
                if pair.source == WTE_LAYER and pair.source not in model.module_paths:
                    weighted = weighted.sum(-1, keepdim=True)  # not a decomposed `wte`
                for s_in, c_in in units[pair.source]:
                    if s_in > s_out if pair.crosses_positions else s_in != s_out:
                        continue
                    value = weighted[s_in, c_in].item()
                    if abs(value) >= attr_threshold:
                        edges.append(Edge(pair.source, s_in, c_in, target, s_out, c_out, value))
    return Graph.from_records(nodes, edges)
