"""Every write of the packed index tables: the component postings and the stored co-firing
counts (`build_postings`, read by `postings`; prompt postings are written with each prompt),
the corpus deltas a write batch adds (`write_delta`) and their folding into the corpus
attributions and the edge postings (`fold`, read by `corpus` through `corpus_deltas` and
`edge_postings`).

Call each inside a write transaction (`writes.write_transaction`). The bulk writes go through
the driver with plain tuples: a fold or a build writes up to millions of rows, and building
SQLAlchemy statements or dicts per row cost more than the writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zstandard
from sqlalchemy import Connection, delete, insert

from locattr.storage import corpus_deltas, edge_postings, index_queries, postings
from locattr.storage.edge_postings import PairEntries
from locattr.storage.edge_rows import EdgeRows, PairSums, StrongEntries
from locattr.storage.index_rows import pack_ci_units
from locattr.storage.models import cofiring_counts_table as cc
from locattr.storage.models import component_postings_table as cp
from locattr.storage.models import corpus_attributions_table as attributions
from locattr.storage.models import corpus_deltas_table as deltas
from locattr.storage.models import edge_postings_table

_COMPONENTS_PER_BLOCK = 2048
_ROWS_PER_INSERT = 50_000
FREQUENT_SHARE = 0.05
FREQUENT_MIN_PROMPTS = 1000
"""Components firing in at least this share of the prompts, and in this many, get their
co-firing counts stored: counting theirs at request time reads the most (tens of ms)."""


# -- packed postings -------------------------------------------------------------------------


def build_postings(connection: Connection) -> int:
    """Rebuild every component's posting and the stored co-firing counts from the index;
    returns the watermark prompt id.

    Call inside a write transaction (so no prompt commits meanwhile). Reads the index once, a
    block of components at a time in primary-key order.
    """
    through = int(connection.execute(index_queries.last_indexed_prompt_id()).scalar_one())
    connection.execute(delete(cp))
    n_components = int(connection.execute(index_queries.last_component_id()).scalar_one()) + 1
    for first in range(0, n_components, _COMPONENTS_PER_BLOCK):
        rows = postings.fetch_index_rows(
            connection,
            index_queries.index_rows_of_components(first, first + _COMPONENTS_PER_BLOCK, through),
        )
        entries = [
            {
                "component_id": component_id,
                "through_prompt_id": through,
                "prompt_ids": posting.prompt_ids.astype("<i4").tobytes(),
                "max_ci": pack_ci_units(posting.max_ci),
                "ci_sum": pack_ci_units(posting.ci_sum),
            }
            for component_id, posting in postings.split_by_component(rows)
        ]
        if entries:
            connection.execute(insert(cp), entries)
    _build_cofiring_counts(connection, through)
    fold(connection)
    return through


def _build_cofiring_counts(connection: Connection, through: int) -> None:
    """Store the co-firing counts of the components whose counting would read the most."""
    connection.execute(delete(cc))
    counts = postings.read_prompt_counts(connection)
    frequent = np.flatnonzero(
        counts.by_component >= max(FREQUENT_MIN_PROMPTS, FREQUENT_SHARE * counts.n_prompts)
    )
    compressor = zstandard.ZstdCompressor(level=3)
    for component_id in frequent.tolist():
        together = postings.count_together(connection, component_id, counts)
        connection.execute(
            insert(cc),
            [
                {
                    "component_id": component_id,
                    "through_prompt_id": through,
                    "counts": compressor.compress(together.astype("<i4").tobytes()),
                }
            ],
        )


# -- corpus deltas and their fold -------------------------------------------------------------


def write_delta(connection: Connection, prompts: Sequence[tuple[int, EdgeRows]]) -> None:
    """Store what the prompts add to the corpus tables (one row, in the caller's transaction)."""
    if not prompts:
        return
    sums = PairSums.combine([rows.pairs for _, rows in prompts])
    strong = StrongEntries.of_prompts(prompts)
    if not len(sums) and not len(strong):
        return
    connection.execute(
        insert(deltas),
        [
            {
                "pair_sums": corpus_deltas.pack_sums(sums),
                "strong_edges": corpus_deltas.pack_strong(strong),
            }
        ],
    )


def fold(connection: Connection) -> int:
    """Add every pending delta to `corpus_attributions` and `edge_postings` and drop them (in
    a write transaction); returns the number of deltas folded."""
    found = corpus_deltas.pending(connection)
    if not found.ids:
        return 0
    _fold_sums(connection, found.sums)
    add_edge_entries(connection, found.strong)
    connection.execute(delete(deltas).where(deltas.c.id <= max(found.ids)))
    return len(found.ids)


def _fold_sums(connection: Connection, sums: PairSums) -> None:
    """Rewrite the table with its sums plus `sums` (one pass, no per-pair upsert)."""
    if not len(sums):
        return
    existing = corpus_deltas.stored_sums(connection)
    merged = PairSums.combine([existing, sums])
    connection.execute(delete(attributions))
    statement = (
        "INSERT INTO corpus_attributions (source_id, target_id, total, total_abs, prompt_count) "
        f"VALUES ({_markers(connection, 5)})"
    )
    for start in range(0, len(merged), _ROWS_PER_INSERT):
        part = merged.slice(start, start + _ROWS_PER_INSERT)
        columns = (part.source, part.target, part.total, part.total_abs, part.prompt_count)
        # The driver's executemany with plain tuples: a third of the time of dicts through
        # SQLAlchemy, for what can be millions of rows.
        connection.exec_driver_sql(
            statement, list(zip(*(c.tolist() for c in columns), strict=True))
        )


def add_edge_entries(connection: Connection, strong: StrongEntries) -> None:
    """Add entries to their pairs' edge postings (inside a write transaction).

    Plain driver statements with tuples: a fold adds thousands of pairs per thousand prompts,
    and building SQLAlchemy statements per pair cost more than the writes."""
    if not len(strong):
        return
    order = np.lexsort((strong.prompt_id, strong.target, strong.source))
    strong = strong.take(order)
    new = np.ones(len(strong), dtype=bool)
    new[1:] = (strong.source[1:] != strong.source[:-1]) | (strong.target[1:] != strong.target[:-1])
    starts = np.flatnonzero(new).tolist()
    bounds = list(zip(starts, [*starts[1:], len(strong)], strict=True))
    keys = [(int(strong.source[a]), int(strong.target[a])) for a, _ in bounds]
    existing = edge_postings.postings_of(connection, keys)
    marker = _markers(connection, 1)
    if existing:
        connection.exec_driver_sql(
            f"DELETE FROM edge_postings WHERE source_id = {marker} AND target_id = {marker}",
            list(existing),
        )
    rows = []
    for key, (a, b) in zip(keys, bounds, strict=True):
        added = PairEntries(
            strong.prompt_id[a:b],
            strong.value[a:b],
            strong.source_position[a:b],
            strong.target_position[a:b],
        )
        old = existing.get(key)
        blobs = (added if old is None else PairEntries.concat([old, added])).packed()
        rows.append((*key, blobs["prompt_ids"], blobs["edge_values"], blobs["positions"]))
    connection.exec_driver_sql(
        "INSERT INTO edge_postings (source_id, target_id, prompt_ids, edge_values, positions) "
        f"VALUES ({_markers(connection, 5)})",
        rows,
    )


def clear_corpus_tables(connection: Connection) -> None:
    """Empty the corpus attributions, the edge postings and the pending deltas (before they
    are rebuilt from the stored graphs)."""
    for table in (deltas, edge_postings_table, attributions):
        connection.execute(delete(table))


def _markers(connection: Connection, n: int) -> str:
    """`n` driver parameter markers, comma-separated, in the driver's style."""
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([marker] * n)
