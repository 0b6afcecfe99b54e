"""Packed postings: the inverted index as arrays per component, and transposed per prompt.

A SQL GROUP BY over the index costs about a microsecond per index row, which for components
firing in half of 20,000 prompts is tens of milliseconds per search. Intersecting packed,
sorted arrays with numpy costs a few. Postings are rebuilt in one pass after a build
(`LocalAttrDB.build_postings`, which `locattr-generate` and `locattr merge` call); index rows
written afterwards (prompt ids above the postings' watermark) are read from the index itself,
so searches are always complete. This module reads them; `postings_build` writes them.

Per component (`component_postings`): ascending prompt ids with the max CI and the CI sum in
each, for search. Per prompt (`prompt_postings`, written with each prompt, so always complete):
the components firing in it, for co-firing, which counts partners over a component's prompts
(`cofiring_counts`).

CI values arrive as the index's integers and leave as `index_rows.from_ci_units` floats.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import zstandard
from numpy.typing import NDArray
from sqlalchemy import Connection

from locattr.storage import component_lists, index_queries, queries
from locattr.storage.index_rows import from_ci_units, unpack_ci_units

_FETCH_ROWS = 100_000
_PAIRS_PER_STATEMENT = 50_000
_COUNT_CHUNK = 1 << 18
"""Ids counted per `np.bincount` call: a chunk's intp copy stays in cache (2x faster at 10M)."""


_DENSE_SHARE = 32
"""`_intersect` counts over the id range once the shortest posting holds more than 1/32 of it
(measured at 80,000 prompts: three postings of 40-70k ids intersect in 0.9 ms counting, 5.7 ms
by binary search; three of a few hundred ids take 0.04 ms by search and 0.3 ms counting)."""


@dataclass(frozen=True)
class Posting:
    """Where one component fires: ascending prompt ids, its max CI and its CI sum in each."""

    prompt_ids: NDArray[np.int64]
    max_ci: NDArray[np.float64]
    ci_sum: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def where(self, keep: NDArray[np.bool_]) -> Posting:
        return Posting(self.prompt_ids[keep], self.max_ci[keep], self.ci_sum[keep])

    def at_least(self, min_ci: float) -> Posting:
        """The prompts where its max CI reaches `min_ci` (all of them for 0)."""
        return self.where(self.max_ci >= min_ci) if min_ci > 0 else self

    def values(self, rank: queries.Rank) -> NDArray[np.float64]:
        """What `rank` sums: the CI sum (specificity) or the max CI."""
        return self.ci_sum if rank == "specificity" else self.max_ci


_EMPTY = Posting(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))


def fetch_index_rows(connection: Connection, sql: str) -> NDArray[np.float64]:
    """The (component_id, prompt_id, max_ci, ci_sum) rows of `sql` (an `index_queries`
    statement of index rows) as an array, CI values as stored (in `index_rows.CI_UNIT`).

    Goes through the DBAPI cursor: building numpy arrays from SQLAlchemy rows costs ~20x more.
    """
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        blocks = []
        while batch := cursor.fetchmany(_FETCH_ROWS):
            blocks.append(np.array(batch, dtype=np.float64))
    finally:
        cursor.close()
    return np.concatenate(blocks) if blocks else np.zeros((0, 4))


def fetch_ints(connection: Connection, sql: str, *, columns: int) -> NDArray[np.int64]:
    """The integer rows of `sql` (an `index_queries` statement) as an array, through the
    DBAPI."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        blocks = []
        while batch := cursor.fetchmany(_FETCH_ROWS):
            blocks.append(np.array(batch, dtype=np.int64).reshape(len(batch), columns))
    finally:
        cursor.close()
    return np.concatenate(blocks) if blocks else np.zeros((0, columns), np.int64)


def _fetch_all(connection: Connection, sql: str) -> list[tuple[Any, ...]]:
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def split_by_component(rows: NDArray[np.float64]) -> Iterator[tuple[int, Posting]]:
    """(component id, posting) of each component in `fetch_index_rows`' rows (in key order)."""
    if not len(rows):
        return
    starts = np.flatnonzero(np.diff(rows[:, 0], prepend=-1.0) != 0)
    for begin, end in zip(starts, [*starts[1:], len(rows)], strict=True):
        block = rows[begin:end]
        yield (
            int(block[0, 0]),
            Posting(
                block[:, 1].astype(np.int64), from_ci_units(block[:, 2]), from_ci_units(block[:, 3])
            ),
        )


def read_postings(connection: Connection, component_ids: Sequence[int]) -> dict[int, Posting]:
    """Each component's complete posting: the packed part plus index rows added since."""
    if not component_ids:
        return {}
    # Plain SQL with the ids inline: SQLAlchemy's statement compilation cost more than the read.
    stored = connection.exec_driver_sql(index_queries.component_postings(component_ids)).all()
    n_asked = len(set(component_ids))
    through = min((row[1] for row in stored), default=0) if len(stored) == n_asked else 0
    packed = {
        component_id: Posting(
            np.frombuffer(ids, dtype="<i4").astype(np.int64),
            unpack_ci_units(max_ci, len(ids) // 4),
            unpack_ci_units(ci_sum, len(ids) // 4),
        )
        for component_id, watermark, ids, max_ci, ci_sum in stored
        if watermark == through
    }
    tail = fetch_index_rows(connection, index_queries.index_rows_after(component_ids, through))
    recent = dict(split_by_component(tail))
    return {c: _concat(packed.get(c, _EMPTY), recent.get(c, _EMPTY)) for c in component_ids}


def _concat(a: Posting, b: Posting) -> Posting:
    if not len(b):
        return a
    return Posting(
        np.concatenate([a.prompt_ids, b.prompt_ids]),
        np.concatenate([a.max_ci, b.max_ci]),
        np.concatenate([a.ci_sum, b.ci_sum]),
    )


def rank(
    postings: Mapping[int, Posting],
    spec: queries.MatchSpec,
    scoring: queries.Scoring,
    *,
    limit: int,
    after: queries.SearchCursor | None,
) -> tuple[list[tuple[int, float]], int]:
    """The page after `after` of matching prompts by (score desc, id), and the total count.

    Same matches and scores as `queries.search_prompts`; returns up to ``limit + 1`` rows.
    `postings` holds every component of `spec`, excluded ones included.
    """
    lists = [postings[c].at_least(spec.min_ci) for c in spec.component_ids]
    weights = scoring.weights
    if spec.require_all:
        prompt_ids, scores = _intersect(lists, weights, scoring.rank)
    else:
        ids = np.concatenate([p.prompt_ids for p in lists])
        prompt_ids, inverse = np.unique(ids, return_inverse=True)
        values = np.concatenate(
            [p.values(scoring.rank) * w for p, w in zip(lists, weights, strict=True)]
        )
        scores = np.bincount(inverse, weights=values, minlength=len(prompt_ids))
    if spec.excluded_ids:
        excluded = np.concatenate(
            [postings[c].at_least(spec.min_ci).prompt_ids for c in spec.excluded_ids]
        )
        keep = ~np.isin(prompt_ids, excluded)
        prompt_ids, scores = prompt_ids[keep], scores[keep]
    total = len(prompt_ids)
    if after is not None:
        later = (scores < after.score) | ((scores == after.score) & (prompt_ids > after.prompt_id))
        prompt_ids, scores = prompt_ids[later], scores[later]
    if len(prompt_ids) > limit + 1:
        # Keep every prompt scoring at least the (limit+1)-th best, so ties are cut by id below.
        cutoff = -np.partition(-scores, limit)[limit]
        best = scores >= cutoff
        prompt_ids, scores = prompt_ids[best], scores[best]
    order = np.lexsort((prompt_ids, -scores))[: limit + 1]
    return list(zip(prompt_ids[order].tolist(), scores[order].tolist(), strict=True)), total


def _intersect(
    lists: list[Posting], weights: Sequence[float], rank_by: queries.Rank
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Prompts in every posting (ascending) and their scores, summed in query order.

    Binary searches from the shortest posting: a few microseconds per thousand of its prompts,
    however frequent the other components are. When even the shortest posting holds a good
    share of the prompt ids, counting over the id range is cheaper than its binary searches.
    """
    shortest = min(lists, key=len).prompt_ids
    top = max((int(p.prompt_ids[-1]) for p in lists if len(p)), default=0)
    if len(shortest) * _DENSE_SHARE > top:
        return _intersect_by_counting(lists, weights, rank_by, top)
    return _intersect_by_search(lists, weights, rank_by)


def _intersect_by_search(
    lists: list[Posting], weights: Sequence[float], rank_by: queries.Rank
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """`_intersect` by binary searches of the shortest posting's ids in the others."""
    prompt_ids = min(lists, key=len).prompt_ids
    for posting in lists:
        prompt_ids = prompt_ids[_positions(posting, prompt_ids) >= 0]
    scores = np.zeros(len(prompt_ids))
    # In query order, as the `np.bincount` of mode "any" adds them: a score does not depend on
    # posting lengths, nor on the mode that found the prompt.
    for posting, weight in zip(lists, weights, strict=True):
        scores += posting.values(rank_by)[_positions(posting, prompt_ids)] * weight
    return prompt_ids, scores


def _intersect_by_counting(
    lists: list[Posting], weights: Sequence[float], rank_by: queries.Rank, top: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """`_intersect` over a dense array of the ids 0..top: a prompt is in every posting where
    its count reaches their number (a posting holds each id once). Scores are added in query
    order from 0, as `_intersect` adds them, so both give the very same floats."""
    counts = np.zeros(top + 1, np.int32)
    scores = np.zeros(top + 1)
    for posting, weight in zip(lists, weights, strict=True):
        counts[posting.prompt_ids] += 1
        scores[posting.prompt_ids] += posting.values(rank_by) * weight
    prompt_ids = np.flatnonzero(counts == len(lists)).astype(np.int64)
    return prompt_ids, scores[prompt_ids]


def _positions(posting: Posting, prompt_ids: NDArray[np.int64]) -> NDArray[np.intp]:
    """Index of each of `prompt_ids` in the posting's sorted ids, -1 where it is absent."""
    if not len(posting):
        return np.full(len(prompt_ids), -1, dtype=np.intp)
    where = np.minimum(np.searchsorted(posting.prompt_ids, prompt_ids), len(posting) - 1)
    return np.where(posting.prompt_ids[where] == prompt_ids, where, -1)


@dataclass(frozen=True)
class PromptCounts:
    """The number of prompts, and in how many each component fires (by component id)."""

    n_prompts: int
    by_component: NDArray[np.int64]


def read_prompt_counts(connection: Connection) -> PromptCounts:
    """Every component's prompt count, from one statement (one row, not one per component)."""
    n_prompts, size, ids, counts = _fetch_all(
        connection, queries.prompt_counts(connection.dialect.name)
    )[0]
    if isinstance(ids, str):  # SQLite's JSON arrays (PostgreSQL's arrays arrive as lists)
        ids, counts = orjson.loads(ids), orjson.loads(counts)
    by_component = np.zeros(int(size), np.int64)
    by_component[np.asarray(ids or [], dtype=np.int64)] = counts or []
    return PromptCounts(int(n_prompts), by_component)


def cofiring_counts(
    connection: Connection, component_id: int, counts: PromptCounts
) -> NDArray[np.int64]:
    """By component id, the number of prompts where it fires together with `component_id` (0
    for `component_id` itself); `counts` are the database's current prompt counts.

    Reads the component's posting, then the packed component lists of its prompts and counts
    them with numpy (work proportional to its prompts times the components per prompt). When
    it fires in more than half of the prompts, the lists of the other prompts are read instead:
    together = prompt count - prompts without it. Components firing in many prompts have their
    counts stored by `build_postings` (`cofiring_counts`); only prompts added since are read.
    """
    size = len(counts.by_component)
    stored = connection.execute(index_queries.stored_cofiring_counts(component_id)).first()
    if stored is None:
        return count_together(connection, component_id, counts)
    together = np.zeros(size, np.int64)
    known = np.frombuffer(zstandard.ZstdDecompressor().decompress(stored[1]), "<i4")[:size]
    together[: len(known)] = known
    mine = read_postings(connection, [component_id])[component_id].prompt_ids
    together += _count(_components_in(connection, mine[mine > stored[0]]), size)
    together[component_id] = 0
    return together


def count_together(
    connection: Connection, component_id: int, counts: PromptCounts
) -> NDArray[np.int64]:
    """By component id, the prompts where it fires together with `component_id` (0 for
    itself), counted from the index (no stored counts)."""
    size = len(counts.by_component)
    mine = read_postings(connection, [component_id])[component_id].prompt_ids
    if 2 * len(mine) <= counts.n_prompts:
        together = _count(_components_in(connection, mine), size)
    else:
        together = counts.by_component - _count(_components_outside(connection, mine), size)
    together[component_id] = 0
    return together


def _components_in(connection: Connection, prompt_ids: NDArray[np.int64]) -> NDArray[np.int64]:
    """The ids of the components firing in each of the prompts, concatenated."""
    if not len(prompt_ids):
        return np.zeros(0, np.int64)
    rows = _fetch_all(connection, index_queries.prompt_postings(prompt_ids.tolist()))
    return component_lists.unpack_many([row[1] for row in rows])


def components_in_prompts(
    connection: Connection, prompt_ids: Sequence[int]
) -> dict[int, NDArray[np.int64]]:
    """The ids of the components firing in each of these prompts (ascending), by prompt id;
    prompts without index rows are left out."""
    if not prompt_ids:
        return {}
    rows = _fetch_all(connection, index_queries.prompt_postings(prompt_ids))
    return {prompt_id: component_lists.unpack(blob) for prompt_id, blob in rows}


def count_components_in(connection: Connection, prompt_ids: NDArray[np.int64]) -> NDArray[np.int64]:
    """By component id, in how many of these prompts it fires (as long as the largest id that
    fires in one)."""
    ids = _components_in(connection, prompt_ids)
    return _count(ids, int(ids.max()) + 1 if len(ids) else 0)


def index_rows_of_prompts(
    connection: Connection, prompt_ids: Sequence[int]
) -> list[tuple[Any, ...]]:
    """(prompt_id, component_id, max_ci, positions, ci_sum) of every index row of these
    prompts, by prompt then component, CI values as stored: the pairs of each prompt's component
    list looked up by primary key, up to `_PAIRS_PER_STATEMENT` pairs a statement."""
    lists = sorted(components_in_prompts(connection, prompt_ids).items())
    rows: list[tuple[Any, ...]] = []
    while lists:
        sizes = np.cumsum([len(ids) for _, ids in lists])
        n = max(1, int(np.searchsorted(sizes, _PAIRS_PER_STATEMENT, side="right")))
        block, lists = lists[:n], lists[n:]
        components = np.concatenate([ids for _, ids in block])
        prompts = np.repeat([p for p, _ in block], [len(ids) for _, ids in block])
        if len(components):
            rows += _fetch_all(connection, index_queries.index_rows_of_pairs(components, prompts))
    return rows


def _components_outside(connection: Connection, prompt_ids: NDArray[np.int64]) -> NDArray[np.int64]:
    """The ids of the components firing in each prompt not among `prompt_ids`, concatenated."""
    rows = _fetch_all(connection, index_queries.prompt_postings_except(prompt_ids))
    return component_lists.unpack_many([row[0] for row in rows])


def _count(ids: NDArray[np.int64], size: int) -> NDArray[np.int64]:
    counts = np.zeros(size, np.int64)
    for start in range(0, len(ids), _COUNT_CHUNK):
        counts += np.bincount(ids[start : start + _COUNT_CHUNK], minlength=size)
    return counts
