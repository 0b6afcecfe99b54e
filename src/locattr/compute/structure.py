"""Which decomposed layers feed which directly, discovered by autograd probes.

A pair (source -> target) exists when the target's pre-activation (`pre` component acts, or the
logits for the `output` pseudo-layer) has a gradient path to the source's detached component
acts (or the token-embedding leaf for `wte`). Whether a pair mixes positions is read off the
probe Jacobian's position pattern on random inputs, so attention-style mixing is found without
knowing any layer names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor, nn

from locattr.compute.component_model import ComponentModel, ForwardPlan
from locattr.compute.vjp import batched_grad
from locattr.graph import OUTPUT_LAYER, WTE_LAYER

PROBE_SEQ_LEN = 6


@dataclass(frozen=True)
class LayerPair:
    """`crosses_positions`: the target at s depends on the source at some s' != s.
    `causal`: every such dependence has s' < s."""

    source: str
    target: str
    crosses_positions: bool
    causal: bool


@dataclass(frozen=True)
class Structure:
    """`layers` in model order, with the pseudo-layer `output` last and `wte` first when
    `has_wte` (a model whose embedding is decomposed has no `wte` pseudo-layer: its components
    are the input nodes); `pairs` sorted by target then source in that order."""

    layers: tuple[str, ...]
    pairs: tuple[LayerPair, ...]
    has_wte: bool

    def sources_of(self, target: str) -> tuple[LayerPair, ...]:
        return tuple(p for p in self.pairs if p.target == target)

    @property
    def targets(self) -> tuple[str, ...]:
        present = {p.target for p in self.pairs}
        return tuple(layer for layer in self.layers if layer in present)

    def pair(self, source: str, target: str) -> LayerPair | None:
        return next((p for p in self.pairs if p.source == source and p.target == target), None)


def probe_tokens(model: ComponentModel, seq_len: int = PROBE_SEQ_LEN) -> Int[Tensor, "1 seq"]:
    path = model.input_embedding_path
    embedding = model.target_model.get_submodule(path) if path else None
    vocab = embedding.num_embeddings if isinstance(embedding, nn.Embedding) else 1
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, int(vocab), (1, seq_len), generator=generator)
    return tokens.to(model.device)


def discover_structure(model: ComponentModel, tokens: Tensor | None = None) -> Structure:
    """Probe every (source, target) pair with one batched backward per target layer.

    Masks are all ones (no CI gating), so a pair is found whenever the architecture connects it.
    """
    tokens = probe_tokens(model) if tokens is None else tokens
    seq = tokens.shape[1]
    has_wte = model.input_embedding_path is not None
    masks = {
        p: torch.ones(1, seq, model.components(p).C, device=model.device, dtype=model.dtype)
        for p in model.module_paths
    }
    with torch.enable_grad():
        result = model(tokens, ForwardPlan(masks=masks, leaves="acts", embedding_leaf=has_wte))
    leaves = dict(result.post)
    if result.embedding is not None:
        leaves[WTE_LAYER] = result.embedding
    outputs = {**result.pre, OUTPUT_LAYER: result.output}
    layers = ((WTE_LAYER,) if has_wte else ()) + model.module_paths + (OUTPUT_LAYER,)
    generator = torch.Generator().manual_seed(1)
    pairs: list[LayerPair] = []
    for target in layers[1 if has_wte else 0 :]:
        out = outputs[target]
        sources = [s for s in layers if s in leaves and s != target]
        if not out.requires_grad or not sources:
            continue
        probe = torch.randn(out.shape, generator=generator).to(out)
        reached = torch.autograd.grad(
            (out * probe).sum(), [leaves[s] for s in sources], retain_graph=True, allow_unused=True
        )
        sources = [s for s, grad in zip(sources, reached, strict=True) if grad is not None]
        if not sources:
            continue
        seeds = torch.zeros((seq, *out.shape), device=out.device, dtype=out.dtype)
        positions = torch.arange(seq, device=out.device)
        seeds[positions, 0, positions] = probe[0]
        grads = batched_grad(out, [leaves[s] for s in sources], seeds)
        for source, grad in zip(sources, grads, strict=True):
            dependence = grad[:, 0].abs().flatten(2).amax(-1) > 0
            off_diagonal = dependence & ~torch.eye(seq, dtype=torch.bool, device=out.device)
            crosses = bool(off_diagonal.any())
            causal = not bool(off_diagonal.triu().any())
            pairs.append(LayerPair(source, target, crosses, causal))
    return Structure(layers=layers, pairs=tuple(pairs), has_wte=has_wte)
