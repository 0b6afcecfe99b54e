"""Local attribution graphs, fast: many target units per batched backward pass.

Semantics (the original system's): a CI-masked forward without weight deltas (or, with
`mode="target"`, all-ones masks plus weight deltas, i.e. exactly the target model), component
activations detached into leaves, edge = source act x d target_pre / d source act, between
alive nodes (lower-leaky CI >= `ci_threshold`), kept when |value| >= `attr_threshold`.

Batching. Rows of a batched backward each carry a one-hot seed. For a target layer whose
sources never mix positions, one row seeds one alive unit at *every* position at once (the
Jacobian is position-diagonal, so position s of the gradient belongs to the unit seeded at s):
rows = the most alive units at any one position. For sources that mix positions (k/v -> o),
one row seeds one alive (position, component) unit per prompt. Prompts of a batch share rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from locattr.compute.run_loading import LoadedRun
from locattr.compute.structure import LayerPair
from locattr.graph import OUTPUT_LAYER, WTE_LAYER, Graph

AttributionMode = Literal["ci_masked", "target"]
DEFAULT_CHUNK_ELEMENTS = 1 << 24


@dataclass
class _Layer:
    """One layer's alive units for the whole batch; `node_id` is -1 where not alive."""

    alive: Bool[Tensor, "batch seq C"]
    value: Float[Tensor, "batch seq C"]
    node_id: Int[Tensor, "batch seq C"]


@dataclass
class _Edges:
    prompt: list[Tensor]
    source: list[Tensor]
    target: list[Tensor]
    value: list[Tensor]


def compute_graph(
    run: LoadedRun,
    token_ids: Sequence[int] | Int[Tensor, " seq"],
    *,
    ci_threshold: float = 1e-6,
    attr_threshold: float = 1e-4,
    include_wte: bool = False,
    include_output: bool = False,
    output_prob_threshold: float = 0.01,
    mode: AttributionMode = "ci_masked",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Graph:
    """One prompt's graph. Nodes are every alive unit (with or without edges), in
    (layer, pos, component) order; `wte`/`output` pseudo-layers only when asked for."""
    tokens = torch.as_tensor(token_ids, dtype=torch.long).reshape(1, -1)
    return compute_graphs(
        run,
        tokens,
        ci_threshold=ci_threshold,
        attr_threshold=attr_threshold,
        include_wte=include_wte,
        include_output=include_output,
        output_prob_threshold=output_prob_threshold,
        mode=mode,
        chunk_elements=chunk_elements,
    )[0]


def compute_graphs(
    run: LoadedRun,
    token_ids: Int[Tensor, "batch seq"] | Sequence[Sequence[int]],
    *,
    ci_threshold: float = 1e-6,
    attr_threshold: float = 1e-4,
    include_wte: bool = False,
    include_output: bool = False,
    output_prob_threshold: float = 0.01,
    mode: AttributionMode = "ci_masked",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> list[Graph]:
    """Graphs for several equal-length prompts from one forward and shared backward passes."""
    model, structure = run.model, run.structure
    tokens = torch.as_tensor(token_ids, dtype=torch.long, device=model.device)
    assert tokens.ndim == 2 and tokens.shape[1] > 0, (
        f"token ids must be [batch, seq], got {tuple(tokens.shape)}"
    )
    assert not include_wte or WTE_LAYER in structure.layers, (
        "this model has no token embedding to attribute"
    )
    batch, seq = tokens.shape

    with torch.no_grad():
        cached = model(tokens, cache_inputs=True)
        ci, _ = model.causal_importances(cached.inputs)
    if mode == "ci_masked":
        masks, deltas = ci, None
    else:
        masks = {p: torch.ones_like(v) for p, v in ci.items()}
        ones = torch.ones(batch, seq, device=model.device, dtype=model.dtype)
        with torch.no_grad():
            deltas = {p: (w, ones) for p, w in model.weight_deltas().items()}
    with torch.enable_grad():
        result = model(
            tokens, masks=masks, deltas=deltas, cache_acts=True, embedding_leaf=include_wte
        )

    layer_names = tuple(
        name
        for name in structure.layers
        if (name != WTE_LAYER or include_wte or not structure.has_wte)
        and (name != OUTPUT_LAYER or include_output)
    )
    values: dict[str, Tensor] = {p: ci[p] for p in model.module_paths}
    alive: dict[str, Tensor] = {p: v >= ci_threshold for p, v in values.items()}
    pre: dict[str, Tensor] = dict(result.pre)
    leaves: dict[str, Tensor] = dict(result.post)
    if include_wte:
        assert result.embedding is not None
        values[WTE_LAYER] = torch.ones(batch, seq, 1, device=model.device, dtype=model.dtype)
        alive[WTE_LAYER] = values[WTE_LAYER] > 0
        leaves[WTE_LAYER] = result.embedding
    if include_output:
        probs = result.output.detach().softmax(-1)
        values[OUTPUT_LAYER] = probs
        alive[OUTPUT_LAYER] = probs >= output_prob_threshold
        pre[OUTPUT_LAYER] = result.output

    layers = _index_nodes(layer_names, values, alive, batch)
    edges = _Edges([], [], [], [])
    included = set(layer_names)
    for target in structure.targets:
        if target not in included:
            continue
        pairs = [p for p in structure.sources_of(target) if p.source in included]
        for group in (
            [p for p in pairs if not p.crosses_positions],
            [p for p in pairs if p.crosses_positions],
        ):
            if group:
                _attribute(
                    include_wte,
                    pre[target],
                    layers[target],
                    group,
                    layers,
                    leaves,
                    attr_threshold,
                    chunk_elements,
                    edges,
                )
    return _graphs(layer_names, layers, edges, batch)


def _index_nodes(
    names: tuple[str, ...], values: dict[str, Tensor], alive: dict[str, Tensor], batch: int
) -> dict[str, _Layer]:
    """Node ids per prompt: layers in order, then positions, then components."""
    offset = torch.zeros(batch, dtype=torch.long, device=next(iter(alive.values())).device)
    layers: dict[str, _Layer] = {}
    for name in names:
        flat = alive[name].flatten(1).long()
        local = flat.cumsum(1) - 1 + offset[:, None]
        node_id = torch.where(flat.bool(), local, -1).view(alive[name].shape)
        layers[name] = _Layer(alive[name], values[name], node_id)
        offset = offset + flat.sum(1)
    return layers


def _rows(alive: Bool[Tensor, "batch seq C"], per_position: bool) -> tuple[Tensor, ...]:
    """Alive units (b, s, c) and the backward row each is seeded in.

    per_position: units at different positions share rows (rank within (b, s));
    otherwise each unit of a prompt gets its own row (rank within b).
    """
    flat = alive if per_position else alive.flatten(1)
    rank = flat.long().cumsum(-1) - 1
    b, s, c = alive.nonzero(as_tuple=True)
    row = rank.view(alive.shape)[b, s, c]
    return b, s, c, row


def _attribute(
    pseudo_wte: bool,
    target_pre: Float[Tensor, "batch seq C_out"],
    target: _Layer,
    pairs: list[LayerPair],
    layers: dict[str, _Layer],
    leaves: dict[str, Tensor],
    attr_threshold: float,
    chunk_elements: int,
    edges: _Edges,
) -> None:
    crosses = pairs[0].crosses_positions
    b, s, c, row = _rows(target.alive, per_position=not crosses)
    if row.numel() == 0:
        return
    n_rows = int(row.max()) + 1
    batch, seq, width = target_pre.shape
    source_width = sum(leaves[p.source].shape[-1] for p in pairs)
    rows_per_chunk = max(1, chunk_elements // (batch * seq * (source_width + width)))
    order = torch.argsort(row, stable=True)
    b, s, c, row = b[order], s[order], c[order], row[order]
    bounds = torch.searchsorted(
        row, torch.arange(0, n_rows + rows_per_chunk, rows_per_chunk, device=row.device)
    )
    for start in range(0, n_rows, rows_per_chunk):
        lo, hi = int(bounds[start // rows_per_chunk]), int(bounds[start // rows_per_chunk + 1])
        ub, us, uc, ur = b[lo:hi], s[lo:hi], c[lo:hi], row[lo:hi] - start
        n_chunk = min(rows_per_chunk, n_rows - start)
        seeds = torch.zeros(
            (n_chunk, batch, seq, width), device=target_pre.device, dtype=target_pre.dtype
        )
        seeds[ur, ub, us, uc] = 1
        grads = torch.autograd.grad(
            target_pre,
            [leaves[p.source] for p in pairs],
            grad_outputs=seeds,
            is_grads_batched=True,
            retain_graph=True,
        )
        target_id = target.node_id[ub, us, uc]
        # Dense masks over the chunk's gradient instead of gathers: (row, prompt[, pos]) -> unit.
        units = torch.arange(len(ub), device=ub.device)
        unit_of = unit_at = in_range = causal_range = any_range = torch.empty(0)
        if crosses:
            unit_of = torch.full((n_chunk, batch), -1, dtype=torch.long, device=ub.device)
            unit_of[ur, ub] = units
            s_out = torch.full((n_chunk, batch), -1, dtype=torch.long, device=ub.device)
            s_out[ur, ub] = us
            positions = torch.arange(seq, device=ub.device)
            causal_range = positions[None, None, :] <= s_out[:, :, None]
            any_range = (unit_of >= 0)[:, :, None].expand(n_chunk, batch, seq)
        else:
            unit_at = torch.full((n_chunk, batch, seq), -1, dtype=torch.long, device=ub.device)
            unit_at[ur, ub, us] = units
            in_range = unit_at >= 0
        for pair, grad in zip(pairs, grads, strict=True):
            source = layers[pair.source]
            weighted = grad * leaves[pair.source].detach()
            if pair.source == WTE_LAYER and pseudo_wte:
                weighted = weighted.sum(-1, keepdim=True)
            if crosses:
                in_range = causal_range if pair.causal else any_range
            keep = (weighted.abs() >= attr_threshold) & source.alive & in_range[..., None]
            r, b_in, s_in, c_in = keep.nonzero(as_tuple=True)
            unit = unit_of[r, b_in] if crosses else unit_at[r, b_in, s_in]
            edges.prompt.append(b_in)
            edges.source.append(source.node_id[b_in, s_in, c_in])
            edges.target.append(target_id[unit])
            edges.value.append(weighted[r, b_in, s_in, c_in])


def _graphs(
    names: tuple[str, ...], layers: dict[str, _Layer], edges: _Edges, batch: int
) -> list[Graph]:
    node_prompt, node_layer, node_pos, node_comp, node_value = [], [], [], [], []
    for index, name in enumerate(names):
        layer = layers[name]
        b, s, c = layer.alive.nonzero(as_tuple=True)
        node_prompt.append(b)
        node_layer.append(torch.full_like(b, index))
        node_pos.append(s)
        node_comp.append(c)
        node_value.append(layer.value[b, s, c].float())
    nodes = [
        torch.cat(t).cpu().numpy()
        for t in (node_prompt, node_layer, node_pos, node_comp, node_value)
    ]
    if edges.prompt:
        edge_cols = [torch.cat(t).cpu() for t in (edges.prompt, edges.source, edges.target)]
        edge_arrays = [t.numpy() for t in edge_cols]
        edge_values = torch.cat(edges.value).float().cpu().numpy()
    else:
        edge_arrays = [np.zeros(0, dtype=np.int64)] * 3
        edge_values = np.zeros(0, dtype=np.float32)
    graphs = []
    for b in range(batch):
        node_mask = nodes[0] == b
        edge_mask = edge_arrays[0] == b
        graph = Graph(
            layers=names,
            node_layer=nodes[1][node_mask],
            node_pos=nodes[2][node_mask],
            node_component=nodes[3][node_mask],
            node_ci=nodes[4][node_mask],
            edge_source=edge_arrays[1][edge_mask],
            edge_target=edge_arrays[2][edge_mask],
            edge_value=edge_values[edge_mask],
        )
        graphs.append(graph.canonical())
    return graphs
