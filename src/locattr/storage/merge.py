"""Merging one database into another (shards of one build, or extending a build)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from locattr.storage import postings, queries, writes
from locattr.storage.codec import decode_graph
from locattr.storage.edge_rows import edge_rows
from locattr.storage.engine import DatabaseError
from locattr.storage.provenance import first_difference
from locattr.storage.records import LayerSlot

if TYPE_CHECKING:
    from locattr.storage.db import LocalAttrDB

_PROMPT_COLUMNS = (
    "identity",
    "source",
    "n_tokens",
    "token_ids",
    "tokens",
    "n_nodes",
    "n_edges",
    "n_components",
    "graph",
)


def check_same_provenance(into: Mapping[str, Any], other: Mapping[str, Any]) -> None:
    """Refuse to mix prompts built from different runs, thresholds or prompt windows."""
    difference = first_difference(into, other)
    if difference is not None:
        raise DatabaseError(
            f"cannot merge: meta {difference.key!r} differs ({difference.other!r} in the source, "
            f"{difference.existing!r} in the destination); merge only shards of one build"
        )


def merge_databases(into: LocalAttrDB, other: LocalAttrDB, *, batch_size: int) -> int:
    into_meta, other_meta = into.get_meta(), other.get_meta()
    check_same_provenance(into_meta, other_meta)
    other_layers = other.get_layers()
    with writes.write_transaction(into.engine) as connection:
        slots = writes.register_layers(connection, other_layers)
        writes.set_meta(
            connection,
            {
                k: v
                for k, v in other_meta.items()
                if k not in into_meta and k != writes.CORPUS_TABLES_STALE_KEY
            },
        )
    floor = into.edge_index_min_abs()
    remap = _component_id_map(other, slots)
    vocabulary = other.get_vocabulary()  # before the contexts, which may leave tokens to it
    if vocabulary is not None and into.get_vocabulary() is None:
        into.set_vocabulary(vocabulary)

    existing_contexts = set(into.get_activation_contexts())
    missing_contexts = {
        key: value
        for key, value in other.get_activation_contexts().items()
        if key not in existing_contexts
    }
    if missing_contexts:
        into.set_activation_contexts(missing_contexts)

    added = 0
    after = 0
    while True:
        with other.engine.connect() as source:
            rows = source.execute(
                queries.stored_prompt_rows(after, batch_size, _PROMPT_COLUMNS)
            ).all()
            if not rows:
                return added
            index = postings.index_rows_of_prompts(source, [row[0] for row in rows])
        after = rows[-1][0]
        by_prompt: dict[int, list[tuple[int, int, bytes, int]]] = {}
        for prompt_id, component_id, max_ci, positions, ci_sum in index:
            by_prompt.setdefault(prompt_id, []).append((component_id, max_ci, positions, ci_sum))
        prepared = []
        for row in rows:
            entries = by_prompt.get(row[0], [])
            blob = row[-1]
            graph = decode_graph(bytes(blob)) if blob is not None else None
            prepared.append(
                writes.PreparedPrompt(
                    row=dict(zip(_PROMPT_COLUMNS, row[1:], strict=True)),
                    component_ids=remap[np.array([e[0] for e in entries], dtype=np.int64)],
                    max_ci=np.array([e[1] for e in entries], dtype=np.int64),
                    position_blobs=[e[2] for e in entries],
                    ci_sum=np.array([e[3] for e in entries], dtype=np.int64),
                    edges=None
                    if graph is None
                    else edge_rows(
                        graph, writes.layer_first(graph.layers, slots), graph.edge_value, floor
                    ),
                )
            )
        with writes.write_transaction(into.engine) as connection:
            writes.set_meta(connection, {writes.EDGE_INDEX_MIN_ABS_KEY: floor})
            new_ids = writes.insert_prompts(connection, prepared)
        added += sum(new_id is not None for new_id in new_ids)
        into.checkpoint()


def _component_id_map(other: LocalAttrDB, slots: dict[str, LayerSlot]) -> np.ndarray:
    """Array mapping `other`'s component ids to the destination's."""
    other_slots = other.layer_slots()
    size = max((s.first_component_id + s.n_components for s in other_slots.values()), default=0)
    remap = np.full(size, -1, dtype=np.int64)
    for name, slot in other_slots.items():
        target = slots[name]
        remap[slot.first_component_id : slot.first_component_id + slot.n_components] = np.arange(
            target.first_component_id, target.first_component_id + target.n_components
        )
    return remap
