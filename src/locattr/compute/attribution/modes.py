"""Graph modes: which forward the edges are gradients of, which units are alive, and which
source positions an edge may come from.

- `ci_masked` (the original system's): the CI-masked forward without weight deltas; alive at
  CI >= `ci_threshold`; outputs by that forward's probability (>= threshold).
- `target`: the target model exactly (all-ones masks plus the weight-delta terms, whose inputs
  are detached, so edges stay direct); outputs by the target's probability (>= threshold).
- `spd_app` (the SPD app's, goodfire-ai/spd `spd/app/backend/compute.py`, 2026): the target
  model with the delta terms' inputs attached, so an edge A -> B also runs through the delta
  terms of the layers between (component activations are still leaves); alive at CI > 0 (and
  >= `ci_threshold`); outputs where the CI-masked model's probability is above the threshold
  (strictly), attributed from the target forward's logits; only same-position edges, except
  pairs that cross positions (k/v -> o), which keep source positions <= the target's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from locattr.compute.architectures.attention import diagonal_gradients
from locattr.compute.attribution.sources import SourcePair
from locattr.compute.component_model import ComponentModel, DeltaTerm, ForwardPlan, KnownOutputs
from locattr.compute.structure import LayerPair, Structure, probe_tokens
from locattr.compute.vjp import batched_grad
from locattr.graph import OUTPUT_LAYER, WTE_LAYER, AttributionMode


@dataclass(frozen=True)
class GradientForward:
    """The grad-enabled forward a mode takes its edges from, over the whole prompt."""

    masks: Mapping[str, Float[Tensor, "batch seq C"]]
    deltas: Mapping[str, DeltaTerm] | None
    delta_paths: bool

    def plan(
        self, length: int, *, embedding_leaf: bool, known: KnownOutputs | None = None
    ) -> ForwardPlan:
        """The plan over the first `length` positions, component outputs as leaves."""
        cut = slice(0, length)
        deltas = self.deltas
        if deltas is not None:
            deltas = {
                p: d if d.mask is None else DeltaTerm(d.weight, d.mask[:, cut])
                for p, d in deltas.items()
            }
        return ForwardPlan(
            masks={p: m[:, cut] for p, m in self.masks.items()},
            deltas=deltas,
            leaves="outputs",
            delta_paths=self.delta_paths,
            embedding_leaf=embedding_leaf,
            known=known,
        )


def gradient_forward(
    model: ComponentModel, mode: AttributionMode, ci: Mapping[str, Tensor]
) -> GradientForward:
    if mode == "ci_masked":
        return GradientForward(ci, None, delta_paths=False)
    masks = {p: torch.ones_like(v) for p, v in ci.items()}
    with torch.no_grad():
        deltas = {p: DeltaTerm(w) for p, w in model.weight_deltas().items()}
    return GradientForward(masks, deltas, delta_paths=mode == "spd_app")


def component_alive(
    mode: AttributionMode, ci: Float[Tensor, "batch seq C"], ci_threshold: float
) -> Bool[Tensor, "batch seq C"]:
    """CI >= threshold; the SPD app also requires CI > 0 (so threshold 0 is its own rule)."""
    alive = ci >= ci_threshold
    return alive & (ci > 0) if mode == "spd_app" else alive


def output_nodes(
    model: ComponentModel,
    mode: AttributionMode,
    tokens: Int[Tensor, "batch seq"],
    ci: Mapping[str, Tensor],
    logits: Float[Tensor, "batch seq vocab"],
    threshold: float,
) -> tuple[Float[Tensor, "batch seq vocab"], Bool[Tensor, "batch seq vocab"]]:
    """Output nodes' probabilities (their node values) and which are alive: from `logits`
    (the gradient forward's) in the original's modes, from the CI-masked forward in the app's,
    whose edges into them still come from the gradient forward's logits."""
    if mode != "spd_app":
        probs = logits.detach().softmax(-1)
        return probs, probs >= threshold
    with torch.no_grad():
        probs = model(tokens, ForwardPlan(masks=ci)).output.softmax(-1)
    return probs, probs > threshold


@dataclass(frozen=True)
class TargetPairs:
    """A target layer's source pairs by how their rows are seeded: every position at once
    (only where no gradient leaves its position), or one unit per prompt."""

    per_position: tuple[SourcePair, ...]
    per_unit: tuple[SourcePair, ...]


def split_pairs(
    mode: AttributionMode, pairs: Sequence[LayerPair], diagonal: frozenset[tuple[str, str]]
) -> TargetPairs:
    """`diagonal`: the same-position pairs whose gradients stay on their position in the
    app's diagonal-attention forward (`app_diagonal_pairs`); the other modes' edges are direct,
    so every same-position pair's are."""
    within = [p for p in pairs if not p.crosses_positions]
    crossing = [p for p in pairs if p.crosses_positions]
    if mode != "spd_app":
        return TargetPairs(
            tuple(SourcePair(p, "same") for p in within),
            tuple(SourcePair(p, "causal" if p.causal else "any") for p in crossing),
        )
    per_position = [p for p in within if (p.source, p.target) in diagonal]
    per_unit = [
        SourcePair(p, "causal" if p.crosses_positions else "same")
        for p in pairs
        if p.crosses_positions or (p.source, p.target) not in diagonal
    ]
    return TargetPairs(tuple(SourcePair(p, "same") for p in per_position), tuple(per_unit))


_DIAGONAL_PAIRS: WeakKeyDictionary[ComponentModel, frozenset[tuple[str, str]]] = WeakKeyDictionary()


def app_diagonal_pairs(model: ComponentModel, structure: Structure) -> frozenset[tuple[str, str]]:
    """The structure's same-position pairs whose gradients never leave a position in the app's
    forward (delta terms attached) under `diagonal_gradients`, by a probe on random tokens:
    their rows may seed every position at once, and give the exact same-position entries. For
    the built-in architectures that is every such pair; a model whose attention has no
    diagonal backward (or that mixes positions elsewhere) has its pairs computed per unit.
    Probed once per model.
    """
    if model in _DIAGONAL_PAIRS:
        return _DIAGONAL_PAIRS[model]
    tokens = probe_tokens(model)
    seq = tokens.shape[1]
    with torch.no_grad():
        ci = model.lower_leaky_ci(model(tokens, ForwardPlan(cache_inputs=True)).inputs)
    app = gradient_forward(model, "spd_app", ci)
    plan = ForwardPlan(
        masks=app.masks,
        deltas=app.deltas,
        leaves="acts",
        delta_paths=True,
        embedding_leaf=structure.has_wte,
    )
    with torch.enable_grad(), diagonal_gradients():
        result = model(tokens, plan)
    leaves = dict(result.post)
    if result.embedding is not None:
        leaves[WTE_LAYER] = result.embedding
    outputs = {**result.pre, OUTPUT_LAYER: result.output}
    generator = torch.Generator().manual_seed(2)
    positions = torch.arange(seq, device=model.device)
    off_diagonal = ~torch.eye(seq, dtype=torch.bool, device=model.device)
    found: set[tuple[str, str]] = set()
    for target in structure.targets:
        within = [p for p in structure.sources_of(target) if not p.crosses_positions]
        if not within:
            continue
        out = outputs[target]
        probe = torch.randn(out.shape, generator=generator).to(out)
        seeds = torch.zeros((seq, *out.shape), device=out.device, dtype=out.dtype)
        seeds[positions, 0, positions] = probe[0]
        grads = batched_grad(out, [leaves[p.source] for p in within], seeds)
        for pair, grad in zip(within, grads, strict=True):
            reached = grad[:, 0].abs().flatten(2).amax(-1) > 0  # [seeded position, position]
            if not bool((reached & off_diagonal).any()):
                found.add((pair.source, pair.target))
    _DIAGONAL_PAIRS[model] = frozenset(found)
    return _DIAGONAL_PAIRS[model]
