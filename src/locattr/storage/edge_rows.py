"""What one graph adds to the corpus tables: its component-to-component attributions summed per
pair (corpus attributions) and its strongest edge per pair (the edge index).

Both come from the values the graph's blob stores (`codec.stored_edge_values`), so rebuilding
them from the blobs (`locattr db aggregate`) gives the very same rows as writing them with the
prompt. Edges from `wte` or into `output` nodes have no component at one end and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from locattr.graph import Graph

ATTRIBUTION_UNIT = 2.0**-24
"""Corpus attribution sums are integers in this unit (about 6e-8, far below the smallest stored
edge): integer sums come out the same in any order, so a build that was resumed, sharded and
merged, or rebuilt by `locattr db aggregate`, holds exactly the same totals."""

EDGE_INDEX_MIN_ABS = 0.3
"""The default floor of the edge index: a component pair enters a prompt's edge index when its
strongest edge there has |value| at least this (recorded as meta `edge_index_min_abs`)."""


@dataclass(frozen=True)
class PairSums:
    """Per (source component, target component) pair: the sum of its edge values and of their
    absolute values in `ATTRIBUTION_UNIT`s, and in how many prompts it has edges."""

    source: NDArray[np.int64]
    target: NDArray[np.int64]
    total: NDArray[np.int64]
    total_abs: NDArray[np.int64]
    prompt_count: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.source)

    def take(self, which: NDArray[np.intp] | NDArray[np.bool_]) -> PairSums:
        return PairSums(
            self.source[which],
            self.target[which],
            self.total[which],
            self.total_abs[which],
            self.prompt_count[which],
        )

    def slice(self, start: int, stop: int) -> PairSums:
        return PairSums(
            self.source[start:stop],
            self.target[start:stop],
            self.total[start:stop],
            self.total_abs[start:stop],
            self.prompt_count[start:stop],
        )

    @staticmethod
    def empty() -> PairSums:
        zeros = np.zeros(0, np.int64)
        return PairSums(zeros, zeros, zeros, zeros, zeros)

    @staticmethod
    def combine(parts: list[PairSums]) -> PairSums:
        """The sums of several prompts (or batches) added up per pair."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return PairSums.empty()
        if len(parts) == 1:
            return parts[0]
        source = np.concatenate([p.source for p in parts])
        target = np.concatenate([p.target for p in parts])
        starts, order = _groups(source, target)
        return PairSums(
            source=source[order][starts],
            target=target[order][starts],
            total=np.add.reduceat(np.concatenate([p.total for p in parts])[order], starts),
            total_abs=np.add.reduceat(np.concatenate([p.total_abs for p in parts])[order], starts),
            prompt_count=np.add.reduceat(
                np.concatenate([p.prompt_count for p in parts])[order], starts
            ),
        )


@dataclass(frozen=True)
class StrongEdges:
    """Per component pair whose strongest edge reaches the floor: that edge's signed value and
    positions (the edge index rows of one prompt)."""

    source: NDArray[np.int64]
    target: NDArray[np.int64]
    value: NDArray[np.float32]
    source_position: NDArray[np.int64]
    target_position: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.source)


@dataclass(frozen=True)
class EdgeRows:
    pairs: PairSums
    strong: StrongEdges


def edge_rows(
    graph: Graph, layer_first: NDArray[np.int64], values: NDArray[np.float32], min_abs: float
) -> EdgeRows:
    """`graph`'s pair sums and strong edges. ``layer_first[i]`` is the first component id of
    ``graph.layers[i]`` (-1 for `wte`, `output` and other layers without components); `values`
    are the edge values as stored."""
    node_first = layer_first[graph.node_layer]
    node_id = np.where(node_first >= 0, node_first + graph.node_component, -1)
    source, target = node_id[graph.edge_source], node_id[graph.edge_target]
    keep = (source >= 0) & (target >= 0)
    source, target, value = source[keep], target[keep], values[keep]
    edge_nodes = (graph.edge_source[keep], graph.edge_target[keep])
    if not len(source):
        return EdgeRows(PairSums.empty(), _no_strong_edges())
    key = (source << 32) | target  # component ids are below 2**31
    order = np.argsort(key, kind="stable")  # one key sorts faster than a lexsort of two
    key, value, source, target = key[order], value[order], source[order], target[order]
    starts = np.flatnonzero(np.diff(key, prepend=-1) != 0)
    units = np.rint(value.astype(np.float64) / ATTRIBUTION_UNIT).astype(np.int64)
    pairs = PairSums(
        source=source[starts],
        target=target[starts],
        total=np.add.reduceat(units, starts),
        total_abs=np.add.reduceat(np.abs(units), starts),
        prompt_count=np.ones(len(starts), np.int64),
    )
    magnitude = np.abs(value)
    strongest = _argmax_per_group(magnitude, starts)
    strong = strongest[magnitude[strongest] >= min_abs]
    source_node, target_node = edge_nodes[0][order][strong], edge_nodes[1][order][strong]
    return EdgeRows(
        pairs,
        StrongEdges(
            source=source[strong],
            target=target[strong],
            value=value[strong],
            source_position=graph.node_pos[source_node].astype(np.int64),
            target_position=graph.node_pos[target_node].astype(np.int64),
        ),
    )


def _groups(
    source: NDArray[np.int64], target: NDArray[np.int64]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The order that sorts edges by (source, target), and where each pair's run starts."""
    order = np.lexsort((target, source))
    s, t = source[order], target[order]
    new = np.ones(len(s), dtype=bool)
    new[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    return np.flatnonzero(new), order


def _argmax_per_group(values: NDArray[np.float32], starts: NDArray[np.intp]) -> NDArray[np.intp]:
    """Index of each group's largest value (the first one on ties)."""
    group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(values))))
    largest = np.flatnonzero(values == np.maximum.reduceat(values, starts)[group])
    first = np.ones(len(largest), dtype=bool)
    first[1:] = group[largest][1:] != group[largest][:-1]
    return largest[first]


def _no_strong_edges() -> StrongEdges:
    ints = np.zeros(0, np.int64)
    return StrongEdges(ints, ints, np.zeros(0, np.float32), ints, ints)


@dataclass(frozen=True)
class StrongEntries:
    """Edge index entries of several prompts (any order)."""

    source: NDArray[np.int64]
    target: NDArray[np.int64]
    prompt_id: NDArray[np.int64]
    value: NDArray[np.float32]
    source_position: NDArray[np.int64]
    target_position: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.source)

    def take(self, which: NDArray[np.intp] | NDArray[np.bool_]) -> StrongEntries:
        return StrongEntries(
            self.source[which],
            self.target[which],
            self.prompt_id[which],
            self.value[which],
            self.source_position[which],
            self.target_position[which],
        )

    @staticmethod
    def of_prompts(prompts: Sequence[tuple[int, EdgeRows]]) -> StrongEntries:
        parts = [(prompt_id, rows.strong) for prompt_id, rows in prompts]
        return StrongEntries(
            _cat([s.source for _, s in parts], np.int64),
            _cat([s.target for _, s in parts], np.int64),
            _cat([np.full(len(s), p, np.int64) for p, s in parts], np.int64),
            _cat([s.value for _, s in parts], np.float32),
            _cat([s.source_position for _, s in parts], np.int64),
            _cat([s.target_position for _, s in parts], np.int64),
        )

    @staticmethod
    def concat(parts: Sequence[StrongEntries]) -> StrongEntries:
        return StrongEntries(
            *(
                _cat([getattr(p, name) for p in parts], dtype)
                for name, dtype in (
                    ("source", np.int64),
                    ("target", np.int64),
                    ("prompt_id", np.int64),
                    ("value", np.float32),
                    ("source_position", np.int64),
                    ("target_position", np.int64),
                )
            )
        )


def _cat(parts: list[NDArray[Any]], dtype: type[np.generic]) -> NDArray[Any]:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
