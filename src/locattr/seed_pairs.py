"""A graph in the original system's ``pairs`` format, for code written against it.

The original stored each prompt's graph as a JSON list with one element per (source layer,
target layer) pair: the components of each layer alive at any position (``trimmed_c_in_idxs``,
``trimmed_c_out_idxs``, sorted) and entries that index into those lists, values rounded to 6
decimals. Only pairs from a key/value projection to the output projection of the same block cross
positions; their entries carry both positions, the others one. `PromptInfo.pairs_json` gives it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from locattr.graph import Graph

PAIRS_DECIMALS = 6
"""The original rounded every edge value to this many decimals."""


def crosses_positions(source: str, target: str) -> bool:
    """The original's rule for a layer pair whose edges join different positions: a key or
    value projection into the output projection of the same block."""
    same_block = source.split(".")[1:2] == target.split(".")[1:2]
    return ("k_proj" in source or "v_proj" in source) and "o_proj" in target and same_block


def seed_pairs(graph: Graph) -> list[dict[str, Any]]:
    """`graph` as the original's pairs list: the layer pairs it has edges between, in layer
    order, each with its entries in the graph's edge order."""
    n_layers = len(graph.layers)
    source_layer = graph.node_layer[graph.edge_source].astype(np.int64)
    target_layer = graph.node_layer[graph.edge_target].astype(np.int64)
    pair_code = source_layer * n_layers + target_layer
    alive = [np.unique(graph.node_component[graph.node_layer == i]) for i in range(n_layers)]
    pairs = []
    for code in np.unique(pair_code).tolist():
        s, t = divmod(code, n_layers)
        chosen = np.flatnonzero(pair_code == code)
        sources, targets = graph.edge_source[chosen], graph.edge_target[chosen]
        c_in = np.searchsorted(alive[s], graph.node_component[sources])
        c_out = np.searchsorted(alive[t], graph.node_component[targets])
        values = np.round(graph.edge_value[chosen].astype(np.float64), PAIRS_DECIMALS)
        crosses = crosses_positions(graph.layers[s], graph.layers[t])
        columns = [graph.node_pos[sources], c_in]
        columns += [graph.node_pos[targets], c_out] if crosses else [c_out]
        entries = [
            [*index, value]
            for index, value in zip(
                np.stack(columns, axis=1).tolist(), values.tolist(), strict=True
            )
        ]
        pairs.append(
            {
                "source": graph.layers[s],
                "target": graph.layers[t],
                "is_cross_seq": crosses,
                "trimmed_c_in_idxs": alive[s].tolist(),
                "trimmed_c_out_idxs": alive[t].tolist(),
                "attribution": entries,
            }
        )
    return pairs


def seed_pairs_json(graph: Graph) -> str:
    """`seed_pairs` as JSON text (what the original's ``prompt.pairs_json`` held)."""
    return orjson.dumps(seed_pairs(graph)).decode()
