"""The original system's storage, re-implemented as the baseline for `bench_storage`.

What it did (docs/original-system.md section 2): each prompt's graph as gzipped JSON "pairs"
(local component indices, values rounded to 6 decimals), one INSERT per index row keyed by
text component keys, one commit per prompt, a search that groups the index by prompt and
then loads every prompt summary, and the activation contexts as one gzipped JSON blob in
`meta` (`{layer: [component context, ...]}`, each list by `mean_ci` descending).
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.synthetic import Shape, layer_pairs
from locattr import LocalAttrDB
from locattr.graph import Graph

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tokens TEXT NOT NULL, pairs BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS component_activations (
    prompt_id INTEGER NOT NULL REFERENCES prompts(id), component_key TEXT NOT NULL,
    max_ci REAL NOT NULL, positions TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_component_key ON component_activations(component_key);
CREATE INDEX IF NOT EXISTS idx_prompt_id ON component_activations(prompt_id);
"""


def graph_pairs(graph: Graph) -> list[tuple[str, str, bool]]:
    """(source, target, crosses_positions) of the layer pairs `graph` has edges between, in
    layer order; a pair crosses positions by the original's name rule (`is_kv_to_o_pair`:
    k/v -> o_proj of the same block)."""
    src_layer = graph.node_layer[graph.edge_source].astype(np.int64)
    tgt_layer = graph.node_layer[graph.edge_target].astype(np.int64)
    codes = np.unique(src_layer * len(graph.layers) + tgt_layer)
    pairs = []
    for code in codes.tolist():
        source, target = (
            graph.layers[code // len(graph.layers)],
            graph.layers[code % len(graph.layers)],
        )
        same_block = source.split(".")[1:2] == target.split(".")[1:2]
        crosses = ("k_proj" in source or "v_proj" in source) and "o_proj" in target and same_block
        pairs.append((source, target, crosses))
    return pairs


def pairs_json(graph: Graph, shape: Shape | None = None) -> list[dict[str, object]]:
    """The seed's `pairs` list: one element per (source, target) layer pair, local indices;
    the pairs of `shape`'s topology (every one, as the original emitted them), or without a
    shape those `graph` has edges between."""
    index = {name: i for i, name in enumerate(graph.layers)}
    src_layer = graph.node_layer[graph.edge_source]
    tgt_layer = graph.node_layer[graph.edge_target]
    out = []
    for source, target, crosses in layer_pairs(shape) if shape else graph_pairs(graph):
        s, t = index[source], index[target]
        trimmed_in = np.unique(graph.node_component[graph.node_layer == s])
        trimmed_out = np.unique(graph.node_component[graph.node_layer == t])
        chosen = np.flatnonzero((src_layer == s) & (tgt_layer == t))
        c_in = np.searchsorted(trimmed_in, graph.node_component[graph.edge_source[chosen]])
        c_out = np.searchsorted(trimmed_out, graph.node_component[graph.edge_target[chosen]])
        s_in = graph.node_pos[graph.edge_source[chosen]]
        s_out = graph.node_pos[graph.edge_target[chosen]]
        values = graph.edge_value[chosen]
        # The original built these entries one Python value at a time; so does the baseline.
        if crosses:
            entries = [
                [int(a), int(b), int(c), int(d), round(float(v), 6)]
                for a, b, c, d, v in zip(s_in, c_in, s_out, c_out, values, strict=True)
            ]
        else:
            entries = [
                [int(a), int(b), int(d), round(float(v), 6)]
                for a, b, d, v in zip(s_in, c_in, c_out, values, strict=True)
            ]
        out.append(
            {
                "source": source,
                "target": target,
                "is_cross_seq": crosses,
                "trimmed_c_in_idxs": trimmed_in.tolist(),
                "trimmed_c_out_idxs": trimmed_out.tolist(),
                "attribution": entries,
            }
        )
    return out


def encode(graph: Graph, shape: Shape | None = None) -> bytes:
    return gzip.compress(json.dumps(pairs_json(graph, shape)).encode())


def decode(blob: bytes) -> list[dict[str, object]]:
    return json.loads(gzip.decompress(blob))


def index_rows(graph: Graph) -> list[tuple[str, float, str]]:
    """(component_key, max_ci, positions JSON) per firing component, as the original stored."""
    rows: dict[str, tuple[float, list[int]]] = {}
    for layer, pos, comp, ci in zip(
        graph.node_layer.tolist(),
        graph.node_pos.tolist(),
        graph.node_component.tolist(),
        graph.node_ci.tolist(),
        strict=True,
    ):
        key = f"{graph.layers[layer]}:{comp}"
        best, positions = rows.get(key, (0.0, []))
        positions.append(pos)
        rows[key] = (max(best, ci), positions)
    return [(key, ci, json.dumps(sorted(pos))) for key, (ci, pos) in rows.items()]


class OriginalDB:
    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.executescript(SCHEMA)

    def add_prompt(self, tokens: list[str], graph: Graph, shape: Shape) -> None:
        """One prompt: encode, insert, one INSERT per index row, commit."""
        cursor = self.connection.execute(
            "INSERT INTO prompts (tokens, pairs) VALUES (?, ?)",
            (json.dumps(tokens), encode(graph, shape)),
        )
        for key, max_ci, positions in index_rows(graph):
            self.connection.execute(
                "INSERT INTO component_activations VALUES (?, ?, ?, ?)",
                (cursor.lastrowid, key, max_ci, positions),
            )
        self.connection.commit()

    def search(self, keys: list[str]) -> list[dict[str, object]]:
        """AND search, then every prompt summary loaded and filtered, as the seed server did."""
        placeholders = ",".join("?" * len(keys))
        ids = {
            row[0]
            for row in self.connection.execute(
                f"SELECT prompt_id FROM component_activations WHERE component_key IN "
                f"({placeholders}) GROUP BY prompt_id HAVING COUNT(DISTINCT component_key) = ?",
                (*keys, len(keys)),
            )
        }
        summaries = []
        for prompt_id, tokens in self.connection.execute("SELECT id, tokens FROM prompts"):
            words = json.loads(tokens)
            summaries.append({"id": prompt_id, "tokens": words, "preview": "".join(words[:10])})
        return [s for s in summaries if s["id"] in ids]

    def close(self) -> None:
        self.connection.close()


def contexts_blob(contexts: dict[str, dict[str, Any]]) -> bytes:
    """The original's `activation_contexts` meta value: gzip(JSON of `{layer: [context, ...]}`),
    each layer's list by `mean_ci` descending."""
    by_layer: dict[str, list[dict[str, Any]]] = {}
    for key, context in contexts.items():
        by_layer.setdefault(key.rsplit(":", 1)[0], []).append(context)
    for contexts_of_layer in by_layer.values():
        contexts_of_layer.sort(key=lambda c: -float(c.get("mean_ci") or 0.0))
    return gzip.compress(json.dumps(by_layer).encode())


def write_database(db: LocalAttrDB, path: Path) -> None:
    """`db`'s content (a SQLite database) in the original's database: prompts with their token
    strings and graphs (as `db` decodes them), the same index rows (text keys, JSON positions)
    and the activation contexts; then VACUUM, so the file holds no free pages."""
    source = db.target.sqlite_path
    assert source is not None, "write_database reads a SQLite database"
    original = OriginalDB(path)
    connection = original.connection
    connection.execute(
        "INSERT INTO meta VALUES ('activation_contexts', ?)",
        (contexts_blob(db.get_activation_contexts()),),
    )
    ours = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    for prompt in db.iter_prompts():
        graph = db.get_graph(prompt.id)
        assert graph is not None, f"prompt {prompt.id} has no graph"
        cursor = connection.execute(
            "INSERT INTO prompts (tokens, pairs) VALUES (?, ?)",
            (json.dumps(prompt.tokens), encode(graph)),
        )
        index = ours.execute(
            "SELECT l.name || ':' || c.\"index\", a.max_ci * 1e-6, a.positions "
            "FROM component_activations a JOIN components c ON c.id = a.component_id "
            "JOIN layers l ON l.id = c.layer_id WHERE a.prompt_id = ? ORDER BY a.component_id",
            (prompt.id,),
        ).fetchall()
        connection.executemany(
            "INSERT INTO component_activations VALUES (?, ?, ?, ?)",
            [
                (
                    cursor.lastrowid,
                    key,
                    max_ci,
                    json.dumps(np.frombuffer(positions, "<u2").tolist()),
                )
                for key, max_ci, positions in index
            ],
        )
    ours.close()
    connection.commit()
    connection.execute("VACUUM")
    original.close()
