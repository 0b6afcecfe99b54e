"""The residual stream: the SPD app's same-position gradients chained through it, block by block.

In the app's forward (delta terms reading their attached inputs, attention's diagonal backward)
each block of a residual model reads the stream and adds what it writes: r_k = r_{k-1} + w_k,
w_k being what the k-th writer module returns (its component leaf W_k plus its delta term). A
writer's leaf takes the stream's gradient where it is added, so for a target that reads the
stream after writer j, the gradient at W_{k-1} is g_k + g_k . dw_k / dr_{k-1}, k = j, j-1, ...

A backward pass from each target ran through every block below it, once per target layer;
chained, a target takes one backward to W_j and then one product per block, with the block's
Jacobian dw_k / dr_{k-1}, which the diagonal backward makes position-diagonal ([d, d] at each
position). A Jacobian costs a backward of d rows, so it is formed only for blocks that more
rows than that go through; rows go through the other blocks by their own backward.

Which modules write the stream (the sources of the logits, in order) and which targets read it
so are checked by a probe against direct backward passes, never assumed from names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import torch
from jaxtyping import Float
from torch import Tensor

from locattr.compute.architectures.attention import diagonal_gradients
from locattr.compute.attribution.modes import gradient_forward
from locattr.compute.component_model import (
    CACHE_INPUTS,
    ComponentModel,
    DeltaTerm,
    ForwardResult,
)
from locattr.compute.structure import Structure, probe_tokens
from locattr.compute.vjp import batched_grad
from locattr.graph import OUTPUT_LAYER

JACOBIAN_MIN_ROWS = 1.0
"""A block's Jacobian is formed where more rows than this many times the stream's width go
through it (it costs a backward of that width, and then ~1/6 of a row's backward per row)."""


@dataclass(frozen=True)
class StreamLayout:
    """The stream's writers in order (`wte` first when the embedding is its own leaf) and the
    targets whose gradients to them may be chained."""

    writers: tuple[str, ...]
    chained: frozenset[str]

    def chains(self, targets: Sequence[str], sources: Sequence[str]) -> bool:
        """Whether the gradients of `targets` (one input) to `sources` come from the chain."""
        return (
            bool(sources)
            and all(name in self.chained for name in targets)
            and all(name in self.writers for name in sources)
        )

    def blocks(self, sources: Sequence[str]) -> range:
        """The blocks a chain from the last of `sources` down to the first goes through."""
        index = [self.writers.index(name) for name in sources]
        return range(min(index) + 1, max(index) + 1)


class Stream:
    """Chained gradients over one forward (its writers' leaves, inputs and what they wrote),
    whose writers add `deltas` (unmasked) to their outputs.

    `reads`: each chained target's sources and rows (None: a Jacobian for every block). Blocks
    that more rows than the stream's width go through (`JACOBIAN_MIN_ROWS`) get a Jacobian,
    computed when first needed: forming it costs less than those rows' backward through it.
    """

    def __init__(
        self,
        layout: StreamLayout,
        result: ForwardResult,
        deltas: Mapping[str, DeltaTerm],
        reads: Iterable[tuple[Sequence[str], int]] | None = None,
    ) -> None:
        self.layout, self.result, self.deltas = layout, result, deltas
        blocks = range(1, len(layout.writers))
        if reads is None:
            self.formed = frozenset(blocks)
        else:
            through: Counter[int] = Counter()
            for sources, rows in reads:
                for block in layout.blocks(sources):
                    through[block] += rows
            written = [result.written[name] for name in layout.writers[1:]]
            self.formed = frozenset(
                b for b in blocks if through[b] > JACOBIAN_MIN_ROWS * written[b - 1].shape[-1]
            )
        self._jacobians: dict[int, Tensor] = {}

    def leaf(self, name: str) -> Tensor:
        leaf = self.result.outputs.get(name, self.result.embedding)
        assert leaf is not None, f"no gradient leaf for {name}"
        return leaf

    def grads(
        self,
        seeded: Tensor,
        sources: Sequence[str],
        seeds: Float[Tensor, "rows batch seq width"],
    ) -> tuple[Float[Tensor, "rows batch seq d"], ...]:
        """`batched_grad(seeded, leaves of sources, seeds)` by the chain: one backward to the
        last source's leaf, then block by block down to the first. The gradients are laid out
        per position ([batch, seq, rows, d] in memory), as the projection reads them."""
        writers = self.layout.writers
        index = [writers.index(name) for name in sources]
        (grad,) = batched_grad(seeded, [self.leaf(writers[max(index)])], seeds)
        grad = grad.permute(1, 2, 0, 3).contiguous()
        found = {max(index): grad}
        for block in reversed(self.layout.blocks(sources)):
            grad = self._below(block, grad)
            found[block - 1] = grad
        return tuple(found[i].permute(2, 0, 1, 3) for i in index)

    def _below(
        self, block: int, grad: Float[Tensor, "batch seq rows d"]
    ) -> Float[Tensor, "batch seq rows d"]:
        """The gradient at the stream below `block` from the one above it."""
        batch, seq, rows, d = grad.shape
        if block in self.formed:
            flat = grad.view(batch * seq, rows, d)
            jacobian = self._jacobian(block).view(batch * seq, d, d)
            return torch.baddbmm(flat, flat, jacobian).view(batch, seq, rows, d)
        written, below = self._block(block)
        (through,) = batched_grad(written, [below], grad.permute(2, 0, 1, 3))
        return grad + through.permute(1, 2, 0, 3)

    def _jacobian(self, block: int) -> Float[Tensor, "batch seq d d"]:
        """Row r at each position: the gradient below the block of the r-th entry it writes
        (the position's own, under the diagonal backward). The writer's delta term is its
        input x times the delta weight W (its leaf is a constant), so row r is the gradient of
        x seeded with W's row r: the backward starts past that product."""
        if block not in self._jacobians:
            name = self.layout.writers[block]
            delta = self.deltas[name]
            assert delta.mask is None, f"{name}'s delta term is masked: not a plain product"
            x, weight = self.result.inputs[name], delta.weight
            batch, seq, _ = x.shape
            seeds = weight[:, None, None, :].expand(weight.shape[0], batch, seq, weight.shape[1])
            (rows,) = batched_grad(x, [self._block(block)[1]], seeds)
            self._jacobians[block] = rows.permute(1, 2, 0, 3).contiguous()
        return self._jacobians[block]

    def _block(self, block: int) -> tuple[Tensor, Tensor]:
        """What the block's writer wrote, and the leaf of the writer below it."""
        writers = self.layout.writers
        return self.result.written[writers[block]], self.leaf(writers[block - 1])


_LAYOUTS: WeakKeyDictionary[ComponentModel, StreamLayout] = WeakKeyDictionary()


def app_stream(model: ComponentModel, structure: Structure) -> StreamLayout:
    """The stream of the app's forward: the writers are the same-position sources of the logits,
    in order, and a target is chained when, on random tokens and seeds, the chain with every
    block's Jacobian gives its gradients to its writer sources exactly as a direct backward
    does (so blocks that add to the stream, Jacobians that stay on their position). Probed
    once per model."""
    if model in _LAYOUTS:
        return _LAYOUTS[model]
    tokens = probe_tokens(model)
    with torch.no_grad():
        ci = model.lower_leaky_ci(model(tokens, CACHE_INPUTS).inputs)
    how = gradient_forward(model, "spd_app", ci)
    with torch.enable_grad(), diagonal_gradients():
        result = model(tokens, how.plan(tokens.shape[1], embedding_leaf=structure.has_wte))
    writers = _writers(result, structure)
    candidate = StreamLayout(writers, frozenset(structure.targets))
    assert how.deltas is not None
    stream = Stream(candidate, result, how.deltas)
    generator = torch.Generator().manual_seed(3)
    chained: set[str] = set()
    for target in structure.targets:
        sources = [
            p.source
            for p in structure.sources_of(target)
            if not p.crosses_positions and p.source in writers
        ]
        if not sources or (target != OUTPUT_LAYER and target not in result.inputs):
            continue
        seeded = result.output if target == OUTPUT_LAYER else result.inputs[target]
        seeds = torch.randn((2, *seeded.shape), generator=generator).to(seeded)
        direct = batched_grad(seeded, [stream.leaf(name) for name in sources], seeds)
        by_chain = stream.grads(seeded, sources, seeds)
        if all(_close(a, b) for a, b in zip(by_chain, direct, strict=True)):
            chained.add(target)
    _LAYOUTS[model] = StreamLayout(writers, frozenset(chained))
    return _LAYOUTS[model]


def _writers(result: ForwardResult, structure: Structure) -> tuple[str, ...]:
    """The same-position sources of the logits, in order, as wide as the first (the stream):
    a wider one, such as an MLP's input projection whose output projection is not decomposed,
    writes to something else."""
    names = [p.source for p in structure.sources_of(OUTPUT_LAYER) if not p.crosses_positions]
    if not names:
        return ()
    first = result.outputs.get(names[0], result.embedding)
    assert first is not None, f"no gradient leaf for {names[0]}"

    def writes_stream(name: str) -> bool:
        leaf, written = result.outputs.get(name), result.written.get(name)
        return (
            leaf is not None and written is not None and leaf.shape == written.shape == first.shape
        )

    return (names[0], *(name for name in names[1:] if writes_stream(name)))


def _close(chained: Tensor, direct: Tensor) -> bool:
    scale = float(direct.abs().max()) if direct.numel() else 0.0
    return torch.allclose(chained, direct, rtol=1e-3, atol=1e-4 * scale)
