"""The attribution driver: one grad-enabled forward for a batch of prompts, then batched
backward passes per target layer, as the package docstring describes."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import nullcontext

import torch
from jaxtyping import Int
from torch import Tensor

from locattr.compute.architectures.attention import diagonal_gradients
from locattr.compute.attribution.blocks import position_blocks, same_prefix
from locattr.compute.attribution.edges import EdgeRun, attribute, merge
from locattr.compute.attribution.host import graphs
from locattr.compute.attribution.modes import (
    GradientForward,
    app_diagonal_pairs,
    component_alive,
    gradient_forward,
    output_nodes,
    split_pairs,
)
from locattr.compute.attribution.nodes import LayerUnits, index_nodes
from locattr.compute.attribution.rows import Target, layout_rows, make_target, shared_inputs
from locattr.compute.attribution.sources import SourceBank, SourcePair, source_parts
from locattr.compute.attribution.stream import Stream, app_stream
from locattr.compute.component_model import (
    CACHE_INPUTS,
    ComponentModel,
    DeltaTerm,
    ForwardResult,
    KnownOutputs,
)
from locattr.compute.run_loading import LoadedRun
from locattr.compute.structure import Structure
from locattr.graph import ATTRIBUTION_MODES, OUTPUT_LAYER, WTE_LAYER, AttributionMode, Graph

DEFAULT_CHUNK_BYTES = 1 << 30


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
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
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
        chunk_bytes=chunk_bytes,
    )[0]


class _Forwards:
    """The mode's grad-enabled forwards over the batch: the whole prompt or a prefix, with
    attention's ordinary backward or its diagonal one."""

    def __init__(
        self, model: ComponentModel, tokens: Tensor, how: GradientForward, include_wte: bool
    ) -> None:
        self.model, self.tokens, self.how, self.include_wte = model, tokens, how, include_wte

    def __call__(
        self,
        length: int,
        known: ForwardResult | None = None,
        leaves: Collection[str] | None = None,
        diagonal: bool = False,
    ) -> ForwardResult:
        """The forward of the first `length` positions (causal models compute them exactly as
        the whole prompt does), reusing `known`'s leaves, of which only `leaves` take
        gradients (the embedding too: in the app's forward, where it reaches every delta term,
        a leaf there would make attention's backward compute q's gradient for nothing)."""
        plan = self.how.plan(
            length,
            embedding_leaf=self.include_wte and (leaves is None or WTE_LAYER in leaves),
            known=None if known is None else KnownOutputs(known.outputs, leaves),
        )
        with torch.enable_grad(), diagonal_gradients() if diagonal else nullcontext():
            return self.model(self.tokens[:, :length], plan)


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
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> list[Graph]:
    """Graphs for several equal-length prompts from one forward and shared backward passes."""
    model, structure = run.model, run.structure
    tokens = torch.as_tensor(token_ids, dtype=torch.long, device=model.device)
    assert tokens.ndim == 2 and tokens.shape[1] > 0, (
        f"token ids must be [batch, seq], got {tuple(tokens.shape)}"
    )
    assert mode in ATTRIBUTION_MODES, f"mode {mode!r} is not one of {ATTRIBUTION_MODES}"
    assert not include_wte or WTE_LAYER in structure.layers, (
        "this model has no token embedding to attribute"
    )
    batch, seq = tokens.shape

    with torch.no_grad():
        ci = model.lower_leaky_ci(model(tokens, CACHE_INPUTS).inputs)
    how = gradient_forward(model, mode, ci)
    forward = _Forwards(model, tokens, how, include_wte)
    layer_names = tuple(
        name
        for name in structure.layers
        if (name != WTE_LAYER or include_wte or not structure.has_wte)
        and (name != OUTPUT_LAYER or include_output)
    )
    sources = {name for name in layer_names if name != OUTPUT_LAYER}
    diagonal = app_diagonal_pairs(model, structure) if mode == "spd_app" else frozenset()
    split = {
        name: split_pairs(
            mode, [p for p in structure.sources_of(name) if p.source in sources], diagonal
        )
        for name in structure.targets
        if name in layer_names
    }
    # The app's same-position pairs go through attention's diagonal backward (exact on the
    # diagonal, nothing off it); everything seeded per unit needs the ordinary one.
    diagonal_forward = mode == "spd_app" and any(t.per_position for t in split.values())
    result = forward(seq, diagonal=diagonal_forward)

    values: dict[str, Tensor] = {p: ci[p] for p in model.module_paths}
    alive: dict[str, Tensor] = {p: component_alive(mode, v, ci_threshold) for p, v in ci.items()}
    if include_wte:
        values[WTE_LAYER] = torch.ones(batch, seq, 1, device=model.device, dtype=model.dtype)
        alive[WTE_LAYER] = values[WTE_LAYER] > 0
    if include_output:
        values[OUTPUT_LAYER], alive[OUTPUT_LAYER] = output_nodes(
            model, mode, tokens, ci, result.output, output_prob_threshold
        )
    index = index_nodes(layer_names, values, alive, batch)
    layers = index.layers
    bank = SourceBank(source_parts(model, result, how.masks, layers, include_wte), result)

    runs: dict[str, list[EdgeRun]] = {name: [] for name in split}
    per_position = {name: list(t.per_position) for name, t in split.items()}
    targets = [
        make_target(model, result, names, [layers[name] for name in names])
        for names in shared_inputs(per_position, result.inputs)
    ]
    stream = None
    if diagonal_forward:
        assert how.deltas is not None, "the app's forward adds every delta term"
        stream = _app_stream(model, structure, result, how.deltas, targets, per_position)
    for target in targets:
        pairs = per_position[target.names[0]]
        chained = stream is not None and stream.layout.chains(target.names, _sources(pairs))
        found = attribute(
            target,
            pairs,
            bank,
            attr_threshold,
            chunk_bytes,
            per_unit=False,
            stream=stream if chained else None,
        )
        for name, target_runs in zip(target.names, found, strict=True):
            runs[name] += target_runs
    per_unit = {name: t.per_unit for name, t in split.items() if t.per_unit}
    if per_unit:
        full = forward(seq, result) if diagonal_forward else result
        for name, target_runs in _per_unit_edges(
            model,
            forward,
            full,
            bank.over(full),
            per_unit,
            index.layers,
            attr_threshold,
            chunk_bytes,
        ).items():
            runs[name] += target_runs
    edges = [merge(runs[name], index.n_nodes) for name in structure.targets if runs.get(name)]
    return graphs(layer_names, layers, edges, batch)


def _sources(pairs: Sequence[SourcePair]) -> list[str]:
    return [p.source for p in pairs]


def _app_stream(
    model: ComponentModel,
    structure: Structure,
    result: ForwardResult,
    deltas: Mapping[str, DeltaTerm],
    targets: Sequence[Target],
    per_position: Mapping[str, Sequence[SourcePair]],
) -> Stream:
    """The app's residual stream over `result`, with Jacobians for the blocks that the rows of
    the targets it chains go through most."""
    layout = app_stream(model, structure)
    reads = []
    for target in targets:
        sources = _sources(per_position[target.names[0]])
        if layout.chains(target.names, sources):
            reads.append((sources, layout_rows(target, per_position=True).n_rows))
    return Stream(layout, result, deltas, reads)


def _per_unit_edges(
    model: ComponentModel,
    forward: _Forwards,
    full: ForwardResult,
    bank: SourceBank,
    per_unit: dict[str, tuple[SourcePair, ...]],
    layers: Mapping[str, LayerUnits],
    attr_threshold: float,
    chunk_bytes: int,
) -> dict[str, list[EdgeRun]]:
    """Edges of the pairs seeded one unit per row, a block of target positions at a time,
    each over the shortest prefix forward that holds it (`blocks`)."""
    seq = full.output.shape[1]
    causal = all(p.positions != "any" for pairs in per_unit.values() for p in pairs)
    needed = {p.source for pairs in per_unit.values() for p in pairs}
    blocks = position_blocks(seq, causal)
    first = blocks[0].stop
    prefixes = {first: forward(first, full, needed)} if first < seq else {}
    if any(not same_prefix(r, full, [*per_unit, *needed]) for r in prefixes.values()):
        blocks = position_blocks(seq, causal=False)  # a prefix computes otherwise
    runs: dict[str, list[EdgeRun]] = {name: [] for name in per_unit}
    for block in blocks:
        prefix = prefixes.pop(block.stop, None) or (
            full if block.stop == seq else forward(block.stop, full, needed)
        )
        prefix_bank = bank.over(prefix)
        for name, pairs in per_unit.items():
            layer = layers[name].prefix(block.start, block.stop)
            target = make_target(model, prefix, (name,), [layer])
            runs[name] += attribute(
                target, pairs, prefix_bank, attr_threshold, chunk_bytes, per_unit=True
            )[0]
    return runs
