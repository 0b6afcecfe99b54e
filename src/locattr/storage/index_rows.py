"""Inverted-index rows of one graph: per firing component, its max CI and positions."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from locattr.graph import PSEUDO_LAYERS, Graph


@dataclass(frozen=True)
class IndexRows:
    """One row per (layer, component) that fires somewhere in the prompt, sorted by both.

    Row ``i``'s positions are ``positions[offsets[i]:offsets[i + 1]]`` (ascending).
    """

    layer: NDArray[np.int16]  # index into the graph's `layers`
    component: NDArray[np.int32]
    max_ci: NDArray[np.float32]
    ci_sum: NDArray[np.float32]
    """CI summed over the row's positions (its CI mass in the prompt; search ranking)."""
    offsets: NDArray[np.int64]  # n_rows + 1
    positions: NDArray[np.uint16]

    def __len__(self) -> int:
        return len(self.layer)

    def position_blobs(self) -> list[bytes]:
        """Each row's positions as little-endian uint16 bytes (the stored form)."""
        data = self.positions.astype("<u2").tobytes()
        bounds = (self.offsets * 2).tolist()
        return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def index_rows(graph: Graph, *, decomposed: Collection[str] = ()) -> IndexRows:
    """Group the graph's nodes of decomposed layers (not wte/output) by component.

    A layer in `decomposed` is indexed even when its name is a pseudo-layer's: a run whose
    token embedding is decomposed under the module path `wte` has components there, and no
    `wte` pseudo-layer.
    """
    pseudo = np.array(
        [name in PSEUDO_LAYERS and name not in decomposed for name in graph.layers], dtype=bool
    )
    keep = ~pseudo[graph.node_layer] if len(graph.layers) else np.zeros(0, dtype=bool)
    layer = graph.node_layer[keep]
    component = graph.node_component[keep]
    pos = graph.node_pos[keep]
    ci = graph.node_ci[keep]
    assert pos.size == 0 or (pos.min() >= 0 and pos.max() < 2**16), "positions must fit uint16"
    order = np.lexsort((pos, component, layer))
    layer, component, pos, ci = layer[order], component[order], pos[order], ci[order]
    new_group = np.ones(len(layer), dtype=bool)
    new_group[1:] = (layer[1:] != layer[:-1]) | (component[1:] != component[:-1])
    starts = np.flatnonzero(new_group)
    max_ci = np.maximum.reduceat(ci, starts) if len(starts) else np.zeros(0, np.float32)
    # Summed in float64 and stored as float32, like max_ci: the packed postings hold float32,
    # so the index and its packed copy rank with the very same values.
    ci_sum = np.add.reduceat(ci.astype(np.float64), starts) if len(starts) else np.zeros(0)
    return IndexRows(
        layer=layer[starts],
        component=component[starts],
        max_ci=max_ci.astype(np.float32),
        ci_sum=ci_sum.astype(np.float32),
        offsets=np.append(starts, len(layer)).astype(np.int64),
        positions=pos.astype(np.uint16),
    )


def decode_positions(blob: bytes) -> list[int]:
    return np.frombuffer(blob, dtype="<u2").tolist()
