"""Server-side pruning against a per-edge reference, ties and filters included."""

from __future__ import annotations

import numpy as np
import pytest

from locattr.graph import Graph
from locattr.pruning import Normalize, prune_graph
from tests.graphs import random_graph


def reference(
    graph: Graph, *, top_k: int, min_abs: float, normalize: Normalize, layers: set[str] | None
) -> list[tuple[int, int, float]]:
    """(source, target, value) of the kept edges in stored node indices, strongest first, ties
    in stored edge order: one edge at a time."""
    values = graph.edge_value.astype(np.float64)
    norms: dict[int, float] = {}
    for target, value in zip(graph.edge_target.tolist(), values.tolist(), strict=True):
        add = abs(value) if normalize == "l1_target" else value**2
        norms[target] = norms.get(target, 0.0) + add
    kept = []
    for i, (source, target, value) in enumerate(
        zip(graph.edge_source.tolist(), graph.edge_target.tolist(), values.tolist(), strict=True)
    ):
        if normalize != "none":
            norm = norms[target] if normalize == "l1_target" else norms[target] ** 0.5
            if norm == 0:
                continue
            value /= norm
        names = (graph.layers[graph.node_layer[source]], graph.layers[graph.node_layer[target]])
        if layers is not None and not set(names) <= layers:
            continue
        if abs(value) >= min_abs:
            kept.append((i, source, target, value))
    kept.sort(key=lambda edge: (-abs(edge[3]), edge[0]))
    return [(s, t, v) for _, s, t, v in kept[:top_k]]


@pytest.mark.parametrize("normalize", ["none", "l1_target", "l2_target"])
def test_prune_matches_the_reference(normalize: Normalize) -> None:
    rng = np.random.default_rng(5)
    for trial in range(40):
        graph = random_graph(rng, n_nodes=30, n_edges=120)
        # Rounded values make ties in |value| common.
        graph = Graph(**{**vars(graph), "edge_value": np.round(graph.edge_value, 1)})
        top_k = int(rng.integers(1, 150))
        min_abs = [0.0, 0.5][trial % 2]
        layers = {"h.0.attn.q_proj", "h.0.mlp.c_fc"} if trial % 3 == 0 else None
        pruned = prune_graph(
            graph, top_k=top_k, min_abs=min_abs, normalize=normalize, layers=layers
        )
        kept = pruned.graph
        expected = reference(
            graph, top_k=top_k, min_abs=min_abs, normalize=normalize, layers=layers
        )
        node_key = [tuple(node[:3]) for node in graph.nodes]
        kept_key = [tuple(node[:3]) for node in kept.nodes]
        got = [
            (node_key.index(kept_key[s]), node_key.index(kept_key[t]), v)
            for s, t, v in zip(
                kept.edge_source.tolist(),
                kept.edge_target.tolist(),
                kept.edge_value.tolist(),
                strict=True,
            )
        ]
        assert [(s, t) for s, t, _ in got] == [(s, t) for s, t, _ in expected]
        assert [v for *_, v in got] == pytest.approx([v for *_, v in expected], rel=1e-6)
        assert pruned.n_edges_dropped == graph.n_edges - len(expected)
        touched = {n for s, t, _ in expected for n in (s, t)}
        assert sorted(node_key.index(k) for k in kept_key) == sorted(touched)


@pytest.mark.parametrize(
    "values", ["distinct", "rounded", "equal", "periodic", "sampled strongest", "some NaN"]
)
def test_top_k_of_many_edges_matches_a_full_sort(values: str) -> None:
    """Enough edges for the sampled cut: the same edges as a full sort by (-|value|, index)."""
    rng = np.random.default_rng(11)
    n_nodes, n_edges = 500, 300_000
    value = rng.standard_normal(n_edges).astype(np.float32)
    match values:
        case "rounded":
            value = np.round(value, 1)
        case "equal":
            value = np.full(n_edges, -0.5, np.float32)
        case "periodic":  # every 16th edge (the sampled ones) is the weakest
            value = np.tile(np.arange(16, dtype=np.float32), n_edges // 16)
        case "sampled strongest":  # the guessed cut keeps too few: the exact search runs
            value = rng.random(n_edges).astype(np.float32) / 10
            value[: 16 * 600 : 16] = 10 + rng.random(600)
        case "some NaN":
            value[rng.random(n_edges) < 0.01] = np.nan
    graph = Graph(
        layers=("a",),
        node_layer=np.zeros(n_nodes),
        node_pos=np.arange(n_nodes),  # a node's position is its stored index
        node_component=np.zeros(n_nodes),
        node_ci=np.ones(n_nodes),
        edge_source=rng.integers(0, n_nodes, n_edges),
        edge_target=rng.integers(0, n_nodes, n_edges),
        edge_value=value,
    )
    valid = np.flatnonzero(~np.isnan(value))
    for top_k in (1, 1000, 4000):
        expected = valid[np.lexsort((valid, -np.abs(value[valid])))][:top_k]
        kept = prune_graph(graph, top_k=top_k).graph
        np.testing.assert_array_equal(kept.node_pos[kept.edge_source], graph.edge_source[expected])
        np.testing.assert_array_equal(kept.node_pos[kept.edge_target], graph.edge_target[expected])
        np.testing.assert_array_equal(kept.edge_value, value[expected])


def test_nan_values_are_never_kept() -> None:
    graph = Graph.from_records(
        [("a", 0, 0, 1.0), ("b", 0, 0, 1.0)],
        [("a", 0, 0, "b", 0, 0, float("nan")), ("a", 0, 0, "b", 0, 0, 0.5)],
    )
    assert prune_graph(graph, top_k=5).graph.edge_value.tolist() == [0.5]
    assert prune_graph(graph, top_k=1).graph.edge_value.tolist() == [0.5]
