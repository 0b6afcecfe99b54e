"""Every write statement of the prompts, the layers and components, the inverted index, meta
and activation contexts (those of the packed index tables are in `postings_build`). Callers
hold one write transaction (see `write_transaction`).

A prompt, its graph blob, its index rows and the component counters it bumps are written in
the same transaction, so a reader sees all of a prompt or none of it, and a crashed writer
leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import orjson
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, bindparam, case, insert, text, update

from locattr.storage import component_lists, postings_build, queries, reads
from locattr.storage.codec import (
    ValueEncoding,
    encode_graph,
    stored_edge_values,
    stored_node_ci,
)
from locattr.storage.context_blobs import encode_contexts
from locattr.storage.edge_rows import EdgeRows, edge_rows
from locattr.storage.engine import DatabaseError
from locattr.storage.index_rows import from_ci_units, index_rows
from locattr.storage.models import (
    activation_contexts_table,
    component_activations_table,
    components_table,
    context_dictionaries_table,
    layers_table,
    meta_table,
    prompt_postings_table,
    prompts_table,
)
from locattr.storage.queries import CORPUS_TABLES_STALE_KEY as CORPUS_TABLES_STALE_KEY
from locattr.storage.queries import EDGE_INDEX_MIN_ABS_KEY as EDGE_INDEX_MIN_ABS_KEY
from locattr.storage.records import LayerSlot, PromptRecord

_PG_WRITER_LOCK = 0x10CA77  # one writer at a time on PostgreSQL too, as SQLite's BEGIN IMMEDIATE


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt ready to insert: row values plus index rows keyed by component id."""

    row: dict[str, object]
    component_ids: NDArray[np.int64]
    max_ci: NDArray[np.int64]
    """In `index_rows.CI_UNIT`, as the index stores it (and `ci_sum`)."""
    position_blobs: list[bytes]
    ci_sum: NDArray[np.int64]
    edges: EdgeRows | None
    """The corpus attributions and edge index rows it adds; None when they cannot be known (a
    prompt merged from a database that stored no graph), which leaves those tables stale."""


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction; writers queue on SQLite's lock or a PostgreSQL advisory lock."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_WRITER_LOCK})
        yield connection


def register_layers(connection: Connection, layers: Mapping[str, int]) -> dict[str, LayerSlot]:
    """Create the layers (name -> number of components) not yet present, with their components.

    A layer already present with a different number of components is an error: the database
    belongs to another decomposition.
    """
    slots = reads.layer_slots(connection)
    for name, n_components in layers.items():
        existing = slots.get(name)
        if existing is not None and existing.n_components != n_components:
            raise DatabaseError(
                f"layer {name!r} has {existing.n_components} components in this database but "
                f"{n_components} in the new data: it was built from another SPD run"
            )
    next_id = max((s.first_component_id + s.n_components for s in slots.values()), default=0)
    for name, n_components in layers.items():
        if name in slots:
            continue
        layer_id = connection.execute(
            insert(layers_table)
            .values(name=name, n_components=n_components, first_component_id=next_id)
            .returning(layers_table.c.id)
        ).scalar_one()
        connection.execute(
            insert(components_table),
            [
                {
                    "id": next_id + index,
                    "layer_id": layer_id,
                    "index": index,
                    "prompt_count": 0,
                    "sum_max_ci": 0.0,
                    "max_max_ci": 0.0,
                }
                for index in range(n_components)
            ],
        )
        slots[name] = LayerSlot(layer_id, next_id, n_components)
        next_id += n_components
    return slots


def prepare_prompt(
    record: PromptRecord,
    slots: Mapping[str, LayerSlot],
    value_encoding: ValueEncoding,
    edge_min_abs: float,
) -> PreparedPrompt:
    """Encode the graph and map index rows to component ids (outside any transaction)."""
    graph = record.graph.canonical()
    # From the CIs the blob stores, as everything derived from a graph: rebuilt from the blobs,
    # the index comes out the same.
    node_ci = stored_node_ci(graph.node_ci, value_encoding)
    rows = index_rows(graph, decomposed=slots.keys(), node_ci=node_ci)
    values = stored_edge_values(graph.edge_value, value_encoding)
    first = np.zeros(len(graph.layers), dtype=np.int64)
    limit = np.zeros(len(graph.layers), dtype=np.int64)
    for i, name in enumerate(graph.layers):
        slot = slots.get(name)
        if slot is not None:
            first[i], limit[i] = slot.first_component_id, slot.n_components
    missing = sorted(
        {graph.layers[i] for i in np.unique(rows.layer) if graph.layers[i] not in slots}
    )
    if missing:
        raise DatabaseError(f"prompt {record.identity!r} has unregistered layers {missing}")
    out_of_range = rows.component >= limit[rows.layer]
    if np.any(out_of_range):
        bad = int(np.flatnonzero(out_of_range)[0])
        raise DatabaseError(
            f"prompt {record.identity!r}: component {rows.component[bad]} of layer "
            f"{graph.layers[rows.layer[bad]]!r} is beyond its {limit[rows.layer[bad]]} components"
        )
    return PreparedPrompt(
        row={
            "identity": record.identity,
            "source": orjson.dumps(dict(record.source)).decode(),
            "n_tokens": len(record.token_ids),
            "token_ids": orjson.dumps([int(t) for t in record.token_ids]).decode(),
            "tokens": orjson.dumps(list(record.tokens)).decode(),
            "n_nodes": graph.n_nodes,
            "n_edges": graph.n_edges if record.keep_graph else 0,
            "n_components": len(rows),
            "graph": encode_graph(graph, value_encoding=value_encoding)
            if record.keep_graph
            else None,
        },
        component_ids=first[rows.layer] + rows.component,
        max_ci=rows.max_ci,
        position_blobs=rows.position_blobs(),
        ci_sum=rows.ci_sum,
        edges=edge_rows(graph, layer_first(graph.layers, slots), values, edge_min_abs),
    )


def layer_first(layers: Sequence[str], slots: Mapping[str, LayerSlot]) -> NDArray[np.int64]:
    """Per graph layer, its first component id (-1 for layers without components)."""
    return np.array(
        [slots[name].first_component_id if name in slots else -1 for name in layers],
        dtype=np.int64,
    )


def insert_prompts(connection: Connection, prompts: Sequence[PreparedPrompt]) -> list[int | None]:
    """Insert prompts whose identity is new; returns each one's new id, or None if present."""
    identities = [str(p.row["identity"]) for p in prompts]
    present = set(connection.execute(queries.stored_identities(identities)).scalars().all())
    fresh: dict[object, PreparedPrompt] = {}
    for prompt in prompts:
        if prompt.row["identity"] not in present:
            fresh.setdefault(prompt.row["identity"], prompt)
    if not fresh:
        return [None] * len(prompts)
    new_ids = (
        connection.execute(
            insert(prompts_table).returning(prompts_table.c.id, sort_by_parameter_order=True),
            [p.row for p in fresh.values()],
        )
        .scalars()
        .all()
    )
    id_of = dict(zip(fresh, new_ids, strict=True))
    stored = [(id_of[i], p) for i, p in fresh.items()]
    _insert_index_rows(connection, stored)
    _insert_edge_rows(connection, stored)
    seen: set[object] = set()
    result: list[int | None] = []
    for identity in identities:
        result.append(None if identity in seen or identity not in id_of else id_of[identity])
        seen.add(identity)
    return result


def _insert_index_rows(
    connection: Connection, prompts: Sequence[tuple[int, PreparedPrompt]]
) -> None:
    """The prompts' index rows, their component lists (`prompt_postings`) and the component
    counters they bump."""
    rows = [
        {
            "component_id": cid,
            "prompt_id": prompt_id,
            "max_ci": ci,
            "positions": blob,
            "ci_sum": ci_sum,
        }
        for prompt_id, prompt in prompts
        for cid, ci, blob, ci_sum in zip(
            prompt.component_ids.tolist(),
            prompt.max_ci.tolist(),
            prompt.position_blobs,
            prompt.ci_sum.tolist(),
            strict=True,
        )
    ]
    if not rows:
        return
    connection.execute(insert(component_activations_table), rows)
    connection.execute(
        insert(prompt_postings_table),
        [
            {"prompt_id": prompt_id, "component_ids": component_lists.pack(p.component_ids)}
            for prompt_id, p in prompts
            if len(p.component_ids)
        ],
    )
    all_ids = np.concatenate([p.component_ids for _, p in prompts])
    all_ci = from_ci_units(np.concatenate([p.max_ci for _, p in prompts]))
    bump_component_counters(connection, all_ids, all_ci)


def _insert_edge_rows(
    connection: Connection, prompts: Sequence[tuple[int, PreparedPrompt]]
) -> None:
    """What the prompts add to the corpus attributions and the edge index, as one delta."""
    known = [(prompt_id, p.edges) for prompt_id, p in prompts if p.edges is not None]
    if len(known) < len(prompts):
        mark_corpus_tables_stale(connection, "it holds prompts merged without their graphs")
    postings_build.write_delta(connection, known)


def mark_corpus_tables_stale(connection: Connection, reason: str) -> None:
    set_meta(connection, {CORPUS_TABLES_STALE_KEY: reason})


def bump_component_counters(
    connection: Connection, component_ids: NDArray[np.int64], max_ci: NDArray[np.float64]
) -> None:
    """Add index rows' contributions to the per-component running statistics."""
    ids, inverse = np.unique(component_ids, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(ids))
    sums = np.bincount(inverse, weights=max_ci, minlength=len(ids))
    maxima = np.full(len(ids), -np.inf)
    np.maximum.at(maxima, inverse, max_ci)
    new_max = bindparam("new_max")
    connection.execute(
        update(components_table)
        .where(components_table.c.id == bindparam("cid"))
        .values(
            prompt_count=components_table.c.prompt_count + bindparam("n"),
            sum_max_ci=components_table.c.sum_max_ci + bindparam("s"),
            max_max_ci=case(
                (components_table.c.max_max_ci < new_max, new_max),
                else_=components_table.c.max_max_ci,
            ),
        ),
        [
            {"cid": c, "n": n, "s": s, "new_max": m}
            for c, n, s, m in zip(
                ids.tolist(), counts.tolist(), sums.tolist(), maxima.tolist(), strict=True
            )
        ],
    )


def set_meta(connection: Connection, values: Mapping[str, object]) -> None:
    """Insert or replace meta keys (values are stored as JSON)."""
    if not values:
        return
    delete_meta(connection, list(values))
    connection.execute(
        insert(meta_table),
        [{"key": k, "value": orjson.dumps(v).decode()} for k, v in values.items()],
    )


def delete_meta(connection: Connection, keys: Sequence[str]) -> None:
    """Remove these meta keys (those absent are ignored)."""
    connection.execute(meta_table.delete().where(meta_table.c.key.in_(keys)))


def set_activation_contexts(
    connection: Connection,
    contexts: Mapping[int, Mapping[str, object]],
    mean_ci: Mapping[int, float],
) -> None:
    """Store activation contexts by component id (replacing any), compressed together (see
    `context_blobs`), and the dataset mean CIs; drops dictionaries no context uses any more."""
    ids = list(contexts)
    for chunk in _chunks(ids, 5000):
        connection.execute(
            activation_contexts_table.delete().where(
                activation_contexts_table.c.component_id.in_(chunk)
            )
        )
    if ids:
        encoded = encode_contexts([contexts[i] for i in ids], reads.vocabulary(connection))
        dictionary_id = None
        if encoded.dictionary is not None:
            dictionary_id = connection.execute(
                insert(context_dictionaries_table)
                .values(data=encoded.dictionary)
                .returning(context_dictionaries_table.c.id)
            ).scalar_one()
        connection.execute(
            insert(activation_contexts_table),
            [
                {"component_id": i, "dictionary_id": dictionary_id, "data": blob}
                for i, blob in zip(ids, encoded.blobs, strict=True)
            ],
        )
    used = queries.used_context_dictionary_ids()
    connection.execute(
        context_dictionaries_table.delete().where(context_dictionaries_table.c.id.not_in(used))
    )
    if mean_ci:
        connection.execute(
            update(components_table)
            .where(components_table.c.id == bindparam("cid"))
            .values(mean_ci=bindparam("m")),
            [{"cid": i, "m": float(m)} for i, m in mean_ci.items()],
        )


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
