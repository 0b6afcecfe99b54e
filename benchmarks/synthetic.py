"""Synthetic graphs with the original system's topology and the real model's size.

Shape (measured on the original at its real model: 4 blocks, d_model 128, C 1200, n_ctx 32):
about 1.6 million edges >= 1e-4 and 12,000 firing (component, prompt) pairs per prompt.
Layer pairs follow `docs/original-system.md` section 1: residual writers (o_proj, down_proj)
feed later q/k/v and c_fc at the same position, q -> o at the same position, k/v -> o across
positions s_in <= s_out, c_fc -> down_proj at the same position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from locattr.graph import Graph

KINDS = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "mlp.c_fc", "mlp.down_proj")


@dataclass(frozen=True)
class Shape:
    n_blocks: int = 4
    n_components: int = 1200
    n_ctx: int = 32
    alive_per_cell: int = 20
    """Components alive per (layer, position): ~1.7 % of C, giving ~12,000 index rows."""
    keep_fraction: float = 0.65
    """Share of candidate edges with |value| >= 1e-4: ~1.6 million edges per prompt."""
    outputs_per_position: int = 0
    """With more than 0: a `wte` input node per position (feeding every block's q/k/v and c_fc)
    and this many `output` nodes per position (fed by every residual writer), as
    `locattr-generate` stores them by default."""
    vocab_size: int = 4096

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(f"h.{b}.{kind}" for b in range(self.n_blocks) for kind in KINDS)


def layer_pairs(shape: Shape) -> list[tuple[str, str, bool]]:
    """(source, target, crosses_positions) in the original's topology."""
    pairs = []
    for b in range(shape.n_blocks):
        writers = [f"h.{e}.{k}" for e in range(b) for k in ("attn.o_proj", "mlp.down_proj")]
        for kind in ("attn.q_proj", "attn.k_proj", "attn.v_proj"):
            pairs += [(w, f"h.{b}.{kind}", False) for w in writers]
        pairs.append((f"h.{b}.attn.q_proj", f"h.{b}.attn.o_proj", False))
        pairs += [(f"h.{b}.attn.{k}", f"h.{b}.attn.o_proj", True) for k in ("k_proj", "v_proj")]
        pairs += [(w, f"h.{b}.mlp.c_fc", False) for w in [*writers, f"h.{b}.attn.o_proj"]]
        pairs.append((f"h.{b}.mlp.c_fc", f"h.{b}.mlp.down_proj", False))
    return pairs


def synthetic_graph(shape: Shape, rng: np.random.Generator) -> Graph:
    """One prompt's graph: alive nodes per cell, edges kept at random, log-uniform values."""
    layers = shape.layers
    n_layers, n_pos, k = len(layers), shape.n_ctx, shape.alive_per_cell
    components = np.stack(
        [
            np.sort(rng.choice(shape.n_components, size=k, replace=False))
            for _ in range(n_layers * n_pos)
        ]
    ).reshape(n_layers, n_pos, k)
    node_layer = np.repeat(np.arange(n_layers), n_pos * k)
    node_pos = np.tile(np.repeat(np.arange(n_pos), k), n_layers)
    node_of = np.arange(n_layers * n_pos * k).reshape(n_layers, n_pos, k)
    index = {name: i for i, name in enumerate(layers)}
    sources, targets = [], []
    for source, target, crosses in layer_pairs(shape):
        s_nodes, t_nodes = node_of[index[source]], node_of[index[target]]
        if crosses:
            s_out, s_in = np.tril_indices(n_pos)  # every s_in <= s_out
            s_nodes, t_nodes = s_nodes[s_in], t_nodes[s_out]
        src, tgt = np.broadcast_arrays(s_nodes[:, :, None], t_nodes[:, None, :])
        keep = rng.random(src.size) < shape.keep_fraction
        sources.append(src.reshape(-1)[keep])
        targets.append(tgt.reshape(-1)[keep])
    node_component = components.reshape(-1)
    node_ci = 10.0 ** rng.uniform(-6.0, 0.0, len(node_layer))
    if shape.outputs_per_position:
        io = _input_output_rows(shape, rng, node_of, index, len(node_layer))
        layers = (*layers, "wte", "output")
        node_layer = np.concatenate([node_layer, io["layer"] + n_layers])
        node_pos = np.concatenate([node_pos, io["pos"]])
        node_component = np.concatenate([node_component, io["component"]])
        node_ci = np.concatenate([node_ci, io["ci"]])
        sources.append(io["source"])
        targets.append(io["target"])
    source, target = np.concatenate(sources), np.concatenate(targets)
    magnitude = 10.0 ** rng.uniform(-4.0, -0.5, len(source))
    sign = np.where(rng.random(len(source)) < 0.5, -1.0, 1.0)
    return Graph(
        layers=layers,
        node_layer=node_layer,
        node_pos=node_pos,
        node_component=node_component,
        node_ci=node_ci,
        edge_source=source,
        edge_target=target,
        edge_value=(magnitude * sign).astype(np.float32),
    )


def _input_output_rows(
    shape: Shape,
    rng: np.random.Generator,
    node_of: np.ndarray,
    index: dict[str, int],
    first: int,
) -> dict[str, np.ndarray]:
    """Nodes (layer 0 = wte, 1 = output, numbered from `first`) and their edges: wte -> every
    reader at its position, every residual writer -> output at its position."""
    n_pos, n_out = shape.n_ctx, shape.outputs_per_position
    wte = first + np.arange(n_pos)
    out = first + n_pos + np.arange(n_pos * n_out).reshape(n_pos, n_out)
    readers = [index[f"h.{b}.{k}"] for b in range(shape.n_blocks) for k in KINDS[:3] + KINDS[4:5]]
    writers = [index[f"h.{b}.{k}"] for b in range(shape.n_blocks) for k in (KINDS[3], KINDS[5])]
    sources, targets = [], []
    for layer in readers:  # wte -> every alive reader at the same position
        t = node_of[layer]  # [pos, k]
        sources.append(np.broadcast_to(wte[:, None], t.shape).reshape(-1))
        targets.append(t.reshape(-1))
    for layer in writers:  # writer -> every output at the same position
        s = node_of[layer]
        src, tgt = np.broadcast_arrays(s[:, :, None], out[:, None, :])
        sources.append(src.reshape(-1))
        targets.append(tgt.reshape(-1))
    source, target = np.concatenate(sources), np.concatenate(targets)
    keep = rng.random(source.size) < shape.keep_fraction
    probs = rng.dirichlet(np.ones(n_out + 1), size=n_pos)[:, :n_out]
    return {
        "layer": np.concatenate([np.zeros(n_pos, np.int64), np.ones(n_pos * n_out, np.int64)]),
        "pos": np.concatenate([np.arange(n_pos), np.repeat(np.arange(n_pos), n_out)]),
        "component": np.concatenate(
            [np.zeros(n_pos, np.int64)]
            + [rng.choice(shape.vocab_size, n_out, replace=False) for _ in range(n_pos)]
        ),
        "ci": np.concatenate([np.ones(n_pos), probs.reshape(-1)]),
        "source": source[keep],
        "target": target[keep],
    }
