"""Random graphs and prompt records for storage and API tests."""

from __future__ import annotations

import numpy as np

from locattr.graph import Graph
from locattr.storage import PromptRecord, identity_for_tokens

LAYERS = {"h.0.attn.q_proj": 16, "h.0.mlp.c_fc": 24, "h.1.mlp.down_proj": 12}


def random_graph(
    rng: np.random.Generator, *, n_pos: int = 6, n_nodes: int = 20, n_edges: int = 40
) -> Graph:
    """Distinct random nodes over `LAYERS`, edges from lower to higher layers."""
    names = tuple(LAYERS)
    keys: set[tuple[int, int, int]] = set()
    while len(keys) < n_nodes:
        layer = int(rng.integers(len(names)))
        keys.add((layer, int(rng.integers(n_pos)), int(rng.integers(LAYERS[names[layer]]))))
    nodes = sorted(keys)
    layer = np.array([k[0] for k in nodes])
    lower = [i for i in range(n_nodes) for j in range(n_nodes) if layer[i] < layer[j]]
    upper = [j for i in range(n_nodes) for j in range(n_nodes) if layer[i] < layer[j]]
    pick = rng.choice(len(lower), size=min(n_edges, len(lower)), replace=False) if lower else []
    return Graph(
        layers=names,
        node_layer=layer,
        node_pos=np.array([k[1] for k in nodes]),
        node_component=np.array([k[2] for k in nodes]),
        node_ci=rng.uniform(1e-6, 1.0, n_nodes),
        edge_source=np.array(lower)[pick] if lower else np.zeros(0),
        edge_target=np.array(upper)[pick] if lower else np.zeros(0),
        edge_value=rng.standard_normal(len(pick)),
    )


def random_record(
    rng: np.random.Generator, *, n_pos: int = 6, **graph_options: int
) -> PromptRecord:
    token_ids = rng.integers(0, 1000, n_pos).tolist()
    return PromptRecord(
        identity=identity_for_tokens(token_ids + [int(rng.integers(1 << 30))]),
        token_ids=token_ids,
        tokens=[f"t{t}" for t in token_ids],
        graph=random_graph(rng, n_pos=n_pos, **graph_options),
        source={"kind": "test"},
    )


THREE_EDGE_GRAPH = Graph.from_records(
    [
        ("h.0.mlp.c_fc", 0, 3, 0.5),
        ("h.0.mlp.c_fc", 1, 3, 0.75),
        ("h.0.mlp.down_proj", 1, 5, 0.5),
        ("h.1.attn.o_proj", 1, 2, 0.25),
    ],
    [
        ("h.0.mlp.c_fc", 1, 3, "h.0.mlp.down_proj", 1, 5, -0.5),
        ("h.0.mlp.c_fc", 0, 3, "h.1.attn.o_proj", 1, 2, 0.25),
        ("h.0.mlp.down_proj", 1, 5, "h.1.attn.o_proj", 1, 2, 0.75),
    ],
)
"""Four nodes and three edges over three layers: the served test database's prompt 1, and the
graph the real format-1 test blobs were written from (`tests/storage/v1_blobs.py`)."""
