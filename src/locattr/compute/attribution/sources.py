"""Sources: the alive units a backward's gradients are projected onto, padded per position."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from locattr.compute.attribution.nodes import LayerUnits
from locattr.compute.component_model import ComponentModel, ForwardResult
from locattr.compute.structure import LayerPair
from locattr.graph import WTE_LAYER


@dataclass(frozen=True)
class SourceParts:
    """A source layer's alive units before padding: unit c at (b, s) contributes
    `weight[b, s, c] * (grad_of_leaf[b, s] . direction of c)`, its direction being
    `directions[c]` (a component's output direction) or `directions[b, s, c]` (per position)."""

    layer: LayerUnits
    weight: Float[Tensor, "batch seq C"]
    directions: Float[Tensor, "C d"] | Float[Tensor, "batch seq C d"]

    @cached_property
    def width(self) -> int:
        """The most alive units at any one position."""
        return int(self.layer.alive.sum(-1).max()) if self.layer.alive.numel() else 0


@dataclass(frozen=True)
class PaddedSource:
    """Alive units of one source layer, or of several side by side in node order, padded to the
    most alive at any one position (K).

    Edge value for padded slot k at (b, s) = `weight * (grad_of_leaf[b, s] . direction)`.
    """

    leaf: Float[Tensor, "batch seq d"]
    valid: Bool[Tensor, "batch seq K"]
    node_id: Int[Tensor, "batch seq K"]
    weight: Float[Tensor, "batch seq K"]
    direction: Float[Tensor, "batch seq K d"]

    def cut(self, leaf: Float[Tensor, "batch stop d"]) -> PaddedSource:
        """The source over a prefix forward's positions, with that forward's leaf."""
        stop = leaf.shape[1]
        return PaddedSource(
            leaf=leaf,
            valid=self.valid[:, :stop],
            node_id=self.node_id[:, :stop],
            weight=self.weight[:, :stop],
            direction=self.direction[:, :stop],
        )


def source_parts(
    model: ComponentModel,
    result: ForwardResult,
    masks: Mapping[str, Tensor],
    layers: Mapping[str, LayerUnits],
    include_wte: bool,
) -> dict[str, SourceParts]:
    """Every included layer that can be a source: a component's weight is its masked act (the
    leaf is its output, reached through `U`); `wte`'s is 1 with the token embedding as its
    direction, so its edge is gradient x embedding summed over the model dimension."""
    parts: dict[str, SourceParts] = {}
    for path in model.module_paths:
        if path in layers:
            masked = (result.post[path] * masks[path]).detach()
            parts[path] = SourceParts(layers[path], masked, model.components(path).U)
    if include_wte:
        assert result.embedding is not None
        wte = layers[WTE_LAYER]
        parts[WTE_LAYER] = SourceParts(wte, wte.value, result.embedding.detach()[..., None, :])
    return parts


@dataclass
class SourceBank:
    """Sources padded on demand and kept: one layer alone, or several side by side (projected
    together when their gradients are one tensor), each with its leaf in `result`. A bank over
    another forward (`over`) shares its parent's padding, cut to that forward's length."""

    parts: dict[str, SourceParts]
    result: ForwardResult
    parent: SourceBank | None = None
    _padded: dict[tuple[str, ...], PaddedSource] = field(default_factory=dict)

    def leaf(self, name: str) -> Tensor:
        """The leaf a source's gradient is taken against (a decomposed embedding module may be
        named like the `wte` pseudo-layer, which exists only when it is not decomposed)."""
        leaf = self.result.outputs.get(name, self.result.embedding)
        assert leaf is not None, f"no gradient leaf for {name}"
        return leaf

    def over(self, result: ForwardResult) -> SourceBank:
        """The bank over another forward (a prefix, or the same prompt computed otherwise):
        the same units on its positions, its leaves."""
        return self if result is self.result else SourceBank(self.parts, result, parent=self)

    def joinable(self, name: str) -> bool:
        return self.parts[name].directions.ndim == 2

    def padded(self, names: tuple[str, ...]) -> PaddedSource:
        if names not in self._padded:
            leaf = self.leaf(names[0])
            if self.parent is not None:
                self._padded[names] = self.parent.padded(names).cut(leaf)
            else:
                self._padded[names] = _padded(leaf, [self.parts[name] for name in names])
        return self._padded[names]


def _padded(leaf: Float[Tensor, "batch seq d"], parts: list[SourceParts]) -> PaddedSource:
    """Gather alive units to the front of each position (layer then component order kept)."""
    if len(parts) == 1:
        alive, node_id = parts[0].layer.alive, parts[0].layer.node_id
        weight, directions = parts[0].weight, parts[0].directions
    else:
        alive = torch.cat([part.layer.alive for part in parts], -1)
        node_id = torch.cat([part.layer.node_id for part in parts], -1)
        weight = torch.cat([part.weight for part in parts], -1)
        directions = torch.cat([part.directions for part in parts])
    counts = alive.sum(-1)
    width = int(counts.max()) if alive.numel() else 0
    b, s, c = alive.nonzero(as_tuple=True)
    rank = alive.cumsum(-1)[b, s, c] - 1
    order = torch.zeros((*alive.shape[:-1], width), dtype=torch.long, device=alive.device)
    order[b, s, rank] = c  # slots past a position's count keep component 0, with weight 0
    valid = torch.arange(width, device=alive.device) < counts[..., None]
    if directions.ndim == 2:
        direction = directions.index_select(0, order.flatten()).view(
            *order.shape, directions.shape[-1]
        )
    else:
        index = order[..., None].expand(*order.shape, directions.shape[-1])
        direction = directions.gather(-2, index)
    return PaddedSource(
        leaf=leaf,
        valid=valid,
        node_id=node_id.gather(-1, order),
        weight=torch.where(valid, weight.gather(-1, order), 0),
        direction=direction,
    )


PositionRule = Literal["same", "causal", "any"]
"""Which source positions an edge into target position s_out may come from: s_out itself,
s_in <= s_out, or every position."""


@dataclass(frozen=True)
class SourcePair:
    """A (source -> target) pair and the source positions its edges keep."""

    pair: LayerPair
    positions: PositionRule

    @property
    def source(self) -> str:
        return self.pair.source

    @property
    def zero_elsewhere(self) -> bool:
        """Whether a one-position seed's gradient is exactly zero at the positions the rule
        leaves out (so a positive threshold drops them without a mask)."""
        return self.positions == "any" or (self.positions == "causal" and self.pair.causal)
