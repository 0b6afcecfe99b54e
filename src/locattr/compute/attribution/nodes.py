"""Nodes: each layer's alive units and their per-prompt node ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass(frozen=True)
class LayerUnits:
    """One layer's alive units for the whole batch; `node_id` is -1 where not alive."""

    alive: Bool[Tensor, "batch seq C"]
    value: Float[Tensor, "batch seq C"]
    node_id: Int[Tensor, "batch seq C"]

    def prefix(self, start: int, stop: int) -> LayerUnits:
        """The layer over positions [0, stop), with units alive only in [start, stop)."""
        alive = self.alive[:, :stop]
        if start:
            alive = alive.clone()
            alive[:, :start] = False
        return LayerUnits(alive, self.value[:, :stop], self.node_id[:, :stop])

    @staticmethod
    def side_by_side(layers: Sequence[LayerUnits]) -> LayerUnits:
        """Several layers' units as one layer, components concatenated in order."""
        if len(layers) == 1:
            return layers[0]
        return LayerUnits(
            torch.cat([layer.alive for layer in layers], -1),
            torch.cat([layer.value for layer in layers], -1),
            torch.cat([layer.node_id for layer in layers], -1),
        )


@dataclass(frozen=True)
class NodeIndex:
    """Every included layer's units; `n_nodes` is the most nodes of any prompt."""

    layers: dict[str, LayerUnits]
    n_nodes: int


def index_nodes(
    names: Sequence[str],
    values: Mapping[str, Tensor],
    alive: Mapping[str, Tensor],
    batch: int,
) -> NodeIndex:
    """Node ids per prompt: layers in `names` order, then positions, then components."""
    offset = torch.zeros(batch, dtype=torch.long, device=next(iter(alive.values())).device)
    layers: dict[str, LayerUnits] = {}
    for name in names:
        flat = alive[name].flatten(1).long()
        local = flat.cumsum(1) - 1 + offset[:, None]
        node_id = torch.where(flat.bool(), local, -1).to(torch.int32).view(alive[name].shape)
        layers[name] = LayerUnits(alive[name], values[name], node_id)
        offset = offset + flat.sum(1)
    return NodeIndex(layers, int(offset.max()))
