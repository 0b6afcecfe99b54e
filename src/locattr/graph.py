"""The local attribution graph of one prompt, as columnar numpy arrays.

Shared by `locattr.compute` (which produces graphs) and `locattr.storage` (which encodes and
stores them); it imports neither torch nor SQLAlchemy.

Layout: node ``i`` is ``(layers[node_layer[i]], node_pos[i], node_component[i])`` with causal
importance ``node_ci[i]``. Edge ``j`` goes from node ``edge_source[j]`` (an earlier layer) to
node ``edge_target[j]`` and has value ``edge_value[j]`` = source activation x d target / d source.
The pseudo-layers ``wte`` (token-embedding input, component 0) and ``output`` (component = vocab
id, ``ci`` = output probability) may appear among the layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple, get_args

import numpy as np
from jaxtyping import Float, Int
from numpy.typing import NDArray

WTE_LAYER = "wte"
OUTPUT_LAYER = "output"
PSEUDO_LAYERS = frozenset({WTE_LAYER, OUTPUT_LAYER})

AttributionMode = Literal["ci_masked", "target", "spd_app"]
"""How a graph's edges were computed; `locattr.compute.attribution.modes` says what each means."""
ATTRIBUTION_MODES: tuple[AttributionMode, ...] = get_args(AttributionMode)


class Node(NamedTuple):
    layer: str
    pos: int
    component: int
    ci: float


class Edge(NamedTuple):
    source_layer: str
    source_pos: int
    source_component: int
    target_layer: str
    target_pos: int
    target_component: int
    value: float


@dataclass(frozen=True, eq=False)
class Graph:
    """One prompt's graph. Arrays are coerced to the dtypes below and checked for consistency."""

    layers: tuple[str, ...]
    node_layer: Int[np.ndarray, " n_nodes"]  # int16 index into `layers`
    node_pos: Int[np.ndarray, " n_nodes"]  # int32
    node_component: Int[np.ndarray, " n_nodes"]  # int32
    node_ci: Float[np.ndarray, " n_nodes"]  # float32
    edge_source: Int[np.ndarray, " n_edges"]  # int32 node index
    edge_target: Int[np.ndarray, " n_edges"]  # int32 node index
    edge_value: Float[np.ndarray, " n_edges"]  # float32 (float16 values widen on decode)

    def __post_init__(self) -> None:
        coerce = object.__setattr__
        coerce(self, "layers", tuple(self.layers))
        for name, dtype in _COLUMN_DTYPES.items():
            array = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            assert array.ndim == 1, f"Graph.{name} must be 1-D, got shape {array.shape}"
            coerce(self, name, array)
        n_nodes, n_edges = len(self.node_layer), len(self.edge_source)
        for name in ("node_pos", "node_component", "node_ci"):
            assert len(getattr(self, name)) == n_nodes, f"Graph.{name} length != {n_nodes} nodes"
        for name in ("edge_target", "edge_value"):
            assert len(getattr(self, name)) == n_edges, f"Graph.{name} length != {n_edges} edges"
        if n_nodes:
            assert self.node_layer.min() >= 0 and self.node_layer.max() < len(self.layers), (
                "node_layer indexes outside `layers`"
            )
            assert not _has_duplicate_nodes(self), "duplicate (layer, pos, component) nodes"
        if n_edges:
            lo = min(self.edge_source.min(), self.edge_target.min())
            hi = max(self.edge_source.max(), self.edge_target.max())
            assert lo >= 0 and hi < n_nodes, "edge endpoints index outside the node table"

    @classmethod
    def trusted(
        cls,
        *,
        layers: tuple[str, ...],
        node_layer: np.ndarray,
        node_pos: np.ndarray,
        node_component: np.ndarray,
        node_ci: np.ndarray,
        edge_source: np.ndarray,
        edge_target: np.ndarray,
        edge_value: np.ndarray,
    ) -> Graph:
        """A graph from arrays already of the column dtypes, in canonical order and consistent,
        without checking them: for producers whose tests hold those invariants
        (`locattr.compute`, the codec), where checking 10 M edges per prompt would cost more
        than computing them."""
        graph = object.__new__(cls)
        columns = {
            "node_layer": node_layer,
            "node_pos": node_pos,
            "node_component": node_component,
            "node_ci": node_ci,
            "edge_source": edge_source,
            "edge_target": edge_target,
            "edge_value": edge_value,
        }
        object.__setattr__(graph, "layers", tuple(layers))
        for name, array in columns.items():
            assert array.dtype == _COLUMN_DTYPES[name], (
                f"Graph.{name} must be {_COLUMN_DTYPES[name]}"
            )
            object.__setattr__(graph, name, array)
        return graph

    @property
    def n_nodes(self) -> int:
        return len(self.node_layer)

    @property
    def n_edges(self) -> int:
        return len(self.edge_source)

    @cached_property
    def nodes(self) -> list[Node]:
        """Nodes as records, in node-table order (for convenience; use the arrays for speed)."""
        names = self.layers
        return [
            Node(names[layer], pos, comp, ci)
            for layer, pos, comp, ci in zip(
                self.node_layer.tolist(),
                self.node_pos.tolist(),
                self.node_component.tolist(),
                self.node_ci.tolist(),
                strict=True,
            )
        ]

    @cached_property
    def edges(self) -> list[Edge]:
        """Edges as records, in edge-table order."""
        nodes = self.nodes
        return [
            Edge(a.layer, a.pos, a.component, b.layer, b.pos, b.component, value)
            for a, b, value in zip(
                (nodes[s] for s in self.edge_source.tolist()),
                (nodes[t] for t in self.edge_target.tolist()),
                self.edge_value.tolist(),
                strict=True,
            )
        ]

    def node_arrays(self) -> dict[str, NDArray[np.generic]]:
        """Columns ``layer`` (str), ``pos``, ``component``, ``ci``, one entry per node."""
        names = np.array(self.layers, dtype=object)
        return {
            "layer": names[self.node_layer],
            "pos": self.node_pos,
            "component": self.node_component,
            "ci": self.node_ci,
        }

    def edge_arrays(self) -> dict[str, NDArray[np.generic]]:
        """Columns named as `Edge`'s fields, one entry per edge."""
        nodes = self.node_arrays()
        out: dict[str, NDArray[np.generic]] = {}
        for side, index in (("source", self.edge_source), ("target", self.edge_target)):
            for field in ("layer", "pos", "component"):
                out[f"{side}_{field}"] = nodes[field][index]
        out["value"] = self.edge_value
        return out

    def canonical(self) -> Graph:
        """The same graph with nodes sorted by (layer, pos, component), edges by (target, source).

        Canonical order makes equal graphs byte-identical and compresses best. A graph already
        in canonical order (as `locattr.compute` builds them) is returned as is.
        """
        if self._is_canonical():
            return self
        node_order = np.lexsort((self.node_component, self.node_pos, self.node_layer))
        new_index = np.empty_like(node_order)
        new_index[node_order] = np.arange(len(node_order))
        source = new_index[self.edge_source]
        target = new_index[self.edge_target]
        edge_order = np.lexsort((source, target))
        return Graph(
            layers=self.layers,
            node_layer=self.node_layer[node_order],
            node_pos=self.node_pos[node_order],
            node_component=self.node_component[node_order],
            node_ci=self.node_ci[node_order],
            edge_source=source[edge_order],
            edge_target=target[edge_order],
            edge_value=self.edge_value[edge_order],
        )

    def _is_canonical(self) -> bool:
        if self.n_nodes and (self.node_pos.max() >= 2**24 or self.node_component.max() >= 2**24):
            return False  # the packed keys below would collide; let the sort decide
        node_key = (
            (self.node_layer.astype(np.int64) << 48)
            | (self.node_pos.astype(np.int64) << 24)
            | self.node_component.astype(np.int64)
        )
        edge_key = self.edge_target.astype(np.int64) * max(self.n_nodes, 1) + self.edge_source
        return bool(np.all(node_key[1:] > node_key[:-1]) and np.all(edge_key[1:] >= edge_key[:-1]))

    @classmethod
    def from_records(
        cls, nodes: Iterable[Node | Sequence[object]], edges: Iterable[Edge | Sequence[object]]
    ) -> Graph:
        """Build a graph from node and edge records; edge endpoints must be among the nodes."""
        node_rows = [Node(*row) for row in nodes]  # type: ignore[arg-type]
        layers = tuple(dict.fromkeys(node.layer for node in node_rows))
        layer_index = {name: i for i, name in enumerate(layers)}
        key_index = {(n.layer, n.pos, n.component): i for i, n in enumerate(node_rows)}
        assert len(key_index) == len(node_rows), "duplicate (layer, pos, component) node"
        edge_rows = [Edge(*row) for row in edges]  # type: ignore[arg-type]
        return cls(
            layers=layers,
            node_layer=np.array([layer_index[n.layer] for n in node_rows], dtype=np.int16),
            node_pos=np.array([n.pos for n in node_rows], dtype=np.int32),
            node_component=np.array([n.component for n in node_rows], dtype=np.int32),
            node_ci=np.array([n.ci for n in node_rows], dtype=np.float32),
            edge_source=np.array([key_index[e[:3]] for e in edge_rows], dtype=np.int32),
            edge_target=np.array([key_index[e[3:6]] for e in edge_rows], dtype=np.int32),
            edge_value=np.array([e.value for e in edge_rows], dtype=np.float32),
        )

    @classmethod
    def empty(cls) -> Graph:
        return cls.from_records([], [])

    def same_as(self, other: Graph, *, rtol: float = 0.0, atol: float = 0.0) -> bool:
        """True when both graphs have the same nodes and edges in any order, values within tol.

        Layer indices may differ between the two graphs; nodes are matched by layer name.
        """
        if self.n_nodes != other.n_nodes or self.n_edges != other.n_edges:
            return False
        a, b = _NameOrder.of(self), _NameOrder.of(other)
        if not (
            np.array_equal(a.names, b.names)
            and np.array_equal(self.node_pos[a.order], other.node_pos[b.order])
            and np.array_equal(self.node_component[a.order], other.node_component[b.order])
            and np.allclose(self.node_ci[a.order], other.node_ci[b.order], rtol=rtol, atol=atol)
        ):
            return False
        key_a, key_b = a.edge_keys(self), b.edge_keys(other)
        sort_a = np.lexsort((self.edge_value, key_a))
        sort_b = np.lexsort((other.edge_value, key_b))
        return bool(
            np.array_equal(key_a[sort_a], key_b[sort_b])
            and np.allclose(self.edge_value[sort_a], other.edge_value[sort_b], rtol=rtol, atol=atol)
        )


@dataclass(frozen=True)
class _NameOrder:
    """Nodes of one graph ordered by (layer name, pos, component), for comparing graphs."""

    order: NDArray[np.intp]
    rank: NDArray[np.intp]
    names: NDArray[np.str_]

    @classmethod
    def of(cls, graph: Graph) -> _NameOrder:
        names = np.array(graph.layers, dtype=str)[graph.node_layer]
        order = np.lexsort((graph.node_component, graph.node_pos, names))
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return cls(order=order, rank=rank, names=names[order])

    def edge_keys(self, graph: Graph) -> NDArray[np.int64]:
        target = self.rank[graph.edge_target].astype(np.int64)
        return target * max(graph.n_nodes, 1) + self.rank[graph.edge_source]


def _has_duplicate_nodes(graph: Graph) -> bool:
    if graph.node_pos.max() < 2**24 and graph.node_component.max() < 2**24:
        key = (
            (graph.node_layer.astype(np.int64) << 48)
            | (graph.node_pos.astype(np.int64) << 24)
            | graph.node_component.astype(np.int64)
        )
        if np.all(key[1:] > key[:-1]):  # canonical order, as decoded graphs are: no sort needed
            return False
        return len(np.unique(key)) != len(key)
    rows = np.stack([graph.node_layer, graph.node_pos, graph.node_component], axis=1)
    return len(np.unique(rows, axis=0)) != len(rows)


_COLUMN_DTYPES: dict[str, type[np.generic]] = {
    "node_layer": np.int16,
    "node_pos": np.int32,
    "node_component": np.int32,
    "node_ci": np.float32,
    "edge_source": np.int32,
    "edge_target": np.int32,
    "edge_value": np.float32,
}
