"""Inverted-index rows of one graph: per firing component, its max CI, CI sum and positions.

The index holds CI values as integers in `CI_UNIT` (the original system's 6 decimals): a value
reads back as ``units * CI_UNIT`` computed in float64, the same in SQL (``max_ci * 1e-06``) as
in numpy, so every path through the index sees the very same numbers.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from locattr.graph import PSEUDO_LAYERS, Graph

CI_UNIT = 1e-6
"""The step of the CI values in the index (max CI and CI sum of a component in a prompt)."""


def to_ci_units(values: ArrayLike) -> NDArray[np.int64]:
    """CI values as the index stores them: the nearest multiple of `CI_UNIT`, as an integer."""
    return np.rint(np.asarray(values, dtype=np.float64) / CI_UNIT).astype(np.int64)


def from_ci_units(units: ArrayLike) -> NDArray[np.float64]:
    """The CI values the index's integers stand for (what SQL's ``units * CI_UNIT`` gives)."""
    return np.asarray(units, dtype=np.float64) * CI_UNIT


@dataclass(frozen=True)
class IndexRows:
    """One row per (layer, component) that fires somewhere in the prompt, sorted by both.

    Row ``i``'s positions are ``positions[offsets[i]:offsets[i + 1]]`` (ascending).
    """

    layer: NDArray[np.int16]  # index into the graph's `layers`
    component: NDArray[np.int32]
    max_ci: NDArray[np.int64]
    """Its largest CI in the prompt, in `CI_UNIT`."""
    ci_sum: NDArray[np.int64]
    """CI summed over the row's positions (its CI mass in the prompt; search ranking), in
    `CI_UNIT`."""
    offsets: NDArray[np.int64]  # n_rows + 1
    positions: NDArray[np.uint16]

    def __len__(self) -> int:
        return len(self.layer)

    def position_blobs(self) -> list[bytes]:
        """Each row's positions as little-endian uint16 bytes (the stored form)."""
        data = self.positions.astype("<u2").tobytes()
        bounds = (self.offsets * 2).tolist()
        return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def index_rows(
    graph: Graph, *, decomposed: Collection[str] = (), node_ci: NDArray[np.float32] | None = None
) -> IndexRows:
    """Group the graph's nodes of decomposed layers (not wte/output) by component, with their
    CIs from `node_ci` when given (the CIs its stored blob holds), else the graph's.

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
    ci = (graph.node_ci if node_ci is None else node_ci)[keep]
    assert pos.size == 0 or (pos.min() >= 0 and pos.max() < 2**16), "positions must fit uint16"
    order = np.lexsort((pos, component, layer))
    layer, component, pos, ci = layer[order], component[order], pos[order], ci[order]
    new_group = np.ones(len(layer), dtype=bool)
    new_group[1:] = (layer[1:] != layer[:-1]) | (component[1:] != component[:-1])
    starts = np.flatnonzero(new_group)
    max_ci = np.maximum.reduceat(ci, starts) if len(starts) else np.zeros(0, np.float32)
    ci_sum = np.add.reduceat(ci.astype(np.float64), starts) if len(starts) else np.zeros(0)
    return IndexRows(
        layer=layer[starts],
        component=component[starts],
        max_ci=to_ci_units(max_ci),
        ci_sum=to_ci_units(ci_sum),
        offsets=np.append(starts, len(layer)).astype(np.int64),
        positions=pos.astype(np.uint16),
    )


def decode_positions(blob: bytes) -> list[int]:
    return np.frombuffer(blob, dtype="<u2").tolist()


def pack_ci_units(values: NDArray[np.float64]) -> bytes:
    """CI values (of the index) as their units, little-endian int32 where all fit (they do for
    CIs up to 2,147), else int64: `unpack_ci_units` tells which from the length."""
    units = to_ci_units(values)
    fits = not len(units) or np.abs(units).max() <= np.iinfo(np.int32).max
    return units.astype("<i4" if fits else "<i8").tobytes()


def unpack_ci_units(blob: bytes, count: int) -> NDArray[np.float64]:
    """The `count` CI values `pack_ci_units` packed into `blob`."""
    dtype = "<i4" if len(blob) == 4 * count else "<i8"
    return from_ci_units(np.frombuffer(blob, dtype=dtype))
