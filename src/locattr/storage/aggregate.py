"""`locattr db aggregate`: rebuild the corpus attributions and the edge index from the stored
graphs (for a database built before they existed, or to change the edge index's floor)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select

from locattr.storage import corpus_deltas, reads, writes
from locattr.storage.codec import decode_graph
from locattr.storage.edge_rows import edge_rows
from locattr.storage.engine import DatabaseError
from locattr.storage.models import (
    corpus_attributions_table,
    corpus_deltas_table,
    edge_postings_table,
    meta_table,
)
from locattr.storage.models import prompts_table as prompts

_GRAPHS_PER_BATCH = 64


@dataclass(frozen=True)
class AggregateReport:
    prompts: int
    pairs: int
    """Component pairs with corpus attributions."""
    indexed_edges: int
    """Edge index rows (a pair in a prompt whose strongest edge reaches the floor)."""
    edge_min_abs: float


def rebuild(
    connection: Connection,
    *,
    edge_min_abs: float,
    progress: Callable[[int, int], None] | None = None,
) -> AggregateReport:
    """Replace both tables with what the stored graphs give (in the caller's transaction, so a
    failure leaves the old tables). Refuses a database holding prompts stored without graphs."""
    without = connection.execute(
        select(func.count()).select_from(prompts).where(prompts.c.graph.is_(None))
    ).scalar_one()
    if without:
        raise DatabaseError(
            f"{without} prompts were stored without their graphs (--no-graphs), so their edges "
            "are gone: corpus attributions need a build that keeps graphs"
        )
    total = connection.execute(select(func.count()).select_from(prompts)).scalar_one()
    for table in (corpus_deltas_table, edge_postings_table, corpus_attributions_table):
        connection.execute(delete(table))
    slots = reads.layer_slots(connection)
    done = indexed = 0
    after = 0
    while True:
        batch = connection.execute(
            select(prompts.c.id, prompts.c.graph)
            .where(prompts.c.id > after)
            .order_by(prompts.c.id)
            .limit(_GRAPHS_PER_BATCH)
        ).all()
        if not batch:
            break
        stored = []
        for prompt_id, blob in batch:
            graph = decode_graph(bytes(blob))
            rows = edge_rows(
                graph, writes.layer_first(graph.layers, slots), graph.edge_value, edge_min_abs
            )
            stored.append((prompt_id, rows))
            indexed += len(rows.strong)
        corpus_deltas.write_delta(connection, stored)
        done += len(batch)
        after = batch[-1][0]
        if progress is not None:
            progress(done, total)
    corpus_deltas.fold(connection)
    pairs = connection.execute(
        select(func.count()).select_from(corpus_attributions_table)
    ).scalar_one()
    connection.execute(delete(meta_table).where(meta_table.c.key == writes.CORPUS_TABLES_STALE_KEY))
    writes.set_meta(connection, {writes.EDGE_INDEX_MIN_ABS_KEY: edge_min_abs})
    return AggregateReport(
        prompts=done, pairs=pairs, indexed_edges=indexed, edge_min_abs=edge_min_abs
    )
