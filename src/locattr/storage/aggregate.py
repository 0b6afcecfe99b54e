"""`locattr db aggregate`: rebuild the corpus attributions and the edge index from the stored
graphs (for a database built before they existed, or to change the edge index's floor)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from locattr.storage import index_queries, postings_build, queries, reads, writes
from locattr.storage.codec import decode_graph
from locattr.storage.edge_rows import edge_rows
from locattr.storage.engine import DatabaseError

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
    without = connection.execute(queries.prompts_without_graph_count()).scalar_one()
    if without:
        raise DatabaseError(
            f"{without} prompts were stored without their graphs (--no-graphs), so their edges "
            "are gone: corpus attributions need a build that keeps graphs"
        )
    total = connection.execute(queries.prompt_count()).scalar_one()
    postings_build.clear_corpus_tables(connection)
    slots = reads.layer_slots(connection)
    done = indexed = 0
    after = 0
    while True:
        batch = connection.execute(queries.prompt_graphs_after(after, _GRAPHS_PER_BATCH)).all()
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
        postings_build.write_delta(connection, stored)
        done += len(batch)
        after = batch[-1][0]
        if progress is not None:
            progress(done, total)
    postings_build.fold(connection)
    pairs = connection.execute(index_queries.corpus_attribution_count()).scalar_one()
    writes.delete_meta(connection, [writes.CORPUS_TABLES_STALE_KEY])
    writes.set_meta(connection, {writes.EDGE_INDEX_MIN_ABS_KEY: edge_min_abs})
    return AggregateReport(
        prompts=done, pairs=pairs, indexed_edges=indexed, edge_min_abs=edge_min_abs
    )
