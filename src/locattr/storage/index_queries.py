"""Read statements of the packed index tables: component and prompt postings, stored co-firing
counts, corpus attributions, their pending deltas and the edge postings.

Like `queries`, each function builds a statement and never runs it. Most are SQL text for the
DBAPI cursor or ``exec_driver_sql`` with integers written inline: these statements read up to
millions of rows into numpy arrays, or run once per search, where SQLAlchemy's statement
compilation and row objects cost more than the database does. Every inlined value is an
integer (`_listed`, `int()`), never text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select

from locattr.storage.models import cofiring_counts_table as cc
from locattr.storage.models import components_table, prompts_table
from locattr.storage.models import corpus_attributions_table as attributions
from locattr.storage.models import corpus_deltas_table as deltas
from locattr.storage.models import edge_postings_table as edge_postings
from locattr.storage.queries import AnySelect

_INDEX_ROW = "SELECT component_id, prompt_id, max_ci, ci_sum FROM component_activations"
"""Index rows with their CI values as stored (integers in `index_rows.CI_UNIT`)."""
_INDEX_ORDER = "ORDER BY component_id, prompt_id"


def _listed(ids: Iterable[int]) -> str:
    """Ids as an SQL list, each through `int` (a few ids: the check costs nothing)."""
    return ",".join(str(int(i)) for i in ids)


def _listed_array(ids: NDArray[np.int64]) -> str:
    """An integer array as an SQL list (thousands of ids: `tolist` gives ints, no check needed)."""
    return ",".join(map(str, ids.tolist()))


# -- the inverted index, as the packed postings read it ---------------------------------------


def last_indexed_prompt_id() -> AnySelect:
    """The largest prompt id (0 when there are none): every prompt up to it has its index rows,
    written with it. (The index itself has no order by prompt to find this in.)"""
    return select(func.coalesce(func.max(prompts_table.c.id), 0))


def last_component_id() -> AnySelect:
    """The largest component id (-1 when there are none)."""
    return select(func.coalesce(func.max(components_table.c.id), -1))


def index_rows_of_components(first: int, stop: int, through: int) -> str:
    """(component_id, prompt_id, max_ci, ci_sum) of components `first` <= id < `stop` in
    prompts up to `through`, in primary-key order."""
    return (
        f"{_INDEX_ROW} WHERE component_id >= {int(first)} AND component_id < {int(stop)} "
        f"AND prompt_id <= {int(through)} {_INDEX_ORDER}"
    )


def index_rows_after(component_ids: Iterable[int], after_prompt_id: int) -> str:
    """(component_id, prompt_id, max_ci, ci_sum) of these components in prompts after
    `after_prompt_id`, in primary-key order (what their packed postings do not hold yet)."""
    return (
        f"{_INDEX_ROW} WHERE component_id IN ({_listed(component_ids)}) "
        f"AND prompt_id > {int(after_prompt_id)} {_INDEX_ORDER}"
    )


# -- packed postings ---------------------------------------------------------------------------


def component_postings(component_ids: Iterable[int]) -> str:
    """(component_id, through_prompt_id, prompt_ids, max_ci, ci_sum) of these components'
    packed postings."""
    return (
        "SELECT component_id, through_prompt_id, prompt_ids, max_ci, ci_sum "
        f"FROM component_postings WHERE component_id IN ({_listed(component_ids)})"
    )


def prompt_postings(prompt_ids: Iterable[int]) -> str:
    """(prompt_id, component_ids) of these prompts' packed component lists."""
    return (
        "SELECT prompt_id, component_ids FROM prompt_postings "
        f"WHERE prompt_id IN ({_listed(prompt_ids)})"
    )


def index_rows_of_pairs(component_ids: NDArray[np.int64], prompt_ids: NDArray[np.int64]) -> str:
    """(prompt_id, component_id, max_ci, positions, ci_sum) of the index rows of these (component,
    prompt) pairs, by prompt then component: one primary-key lookup each (the index has no
    order by prompt)."""
    pairs = ",".join(
        f"({c},{p})" for c, p in zip(component_ids.tolist(), prompt_ids.tolist(), strict=True)
    )
    return (
        f"WITH pairs (component_id, prompt_id) AS (VALUES {pairs}) "
        "SELECT ca.prompt_id, ca.component_id, ca.max_ci, ca.positions, ca.ci_sum "
        "FROM pairs JOIN component_activations AS ca "
        "ON ca.component_id = pairs.component_id AND ca.prompt_id = pairs.prompt_id "
        "ORDER BY ca.prompt_id, ca.component_id"
    )


def prompt_postings_except(prompt_ids: NDArray[np.int64]) -> str:
    """(component_ids) of the packed component lists of the prompts not among `prompt_ids` (one
    list of ids: it can hold tens of thousands)."""
    listed = _listed_array(prompt_ids) or "-1"
    return f"SELECT component_ids FROM prompt_postings WHERE prompt_id NOT IN ({listed})"


def stored_cofiring_counts(component_id: int) -> AnySelect:
    """(through_prompt_id, counts blob) of the component's stored co-firing counts."""
    return select(cc.c.through_prompt_id, cc.c.counts).where(cc.c.component_id == component_id)


# -- corpus attributions and their deltas ------------------------------------------------------


def pending_deltas() -> AnySelect:
    """(id, pair_sums, strong_edges) of the deltas not yet folded, by id."""
    return select(deltas.c.id, deltas.c.pair_sums, deltas.c.strong_edges).order_by(deltas.c.id)


def delta_count() -> AnySelect:
    """How many deltas wait to be folded."""
    return select(func.count()).select_from(deltas)


def all_corpus_attributions() -> str:
    """(source_id, target_id, total, total_abs, prompt_count) of every corpus attribution."""
    return "SELECT source_id, target_id, total, total_abs, prompt_count FROM corpus_attributions"


def corpus_attribution_count() -> AnySelect:
    """How many component pairs have corpus attributions."""
    return select(func.count()).select_from(attributions)


def _partner_ends(upstream: bool) -> tuple[Any, Any]:
    """(the component's column, the partner's column): upstream partners are edge sources."""
    a = attributions.c
    return (a.target_id, a.source_id) if upstream else (a.source_id, a.target_id)


def strongest_partners(component_id: int, *, upstream: bool, limit: int) -> AnySelect:
    """(partner id, total, total_abs, prompt_count) of the component's `limit` strongest
    partners (edges ending at it when `upstream`, starting at it otherwise): largest
    total_abs first, ties by partner id."""
    a = attributions.c
    mine, other = _partner_ends(upstream)
    return (
        select(other, a.total, a.total_abs, a.prompt_count)
        .where(mine == component_id)
        .order_by(a.total_abs.desc(), other)
        .limit(limit)
    )


def all_partners(component_id: int, *, upstream: bool) -> AnySelect:
    """(partner id, total, total_abs, prompt_count) of every partner of the component, in no
    particular order."""
    a = attributions.c
    mine, other = _partner_ends(upstream)
    return select(other, a.total, a.total_abs, a.prompt_count).where(mine == component_id)


def partner_count(component_id: int, *, upstream: bool) -> AnySelect:
    """How many partners the component has (in the table, pending deltas aside)."""
    mine, _ = _partner_ends(upstream)
    return select(func.count()).select_from(attributions).where(mine == component_id)


# -- edge postings -----------------------------------------------------------------------------


def edge_posting(source_id: int, target_id: int) -> AnySelect:
    """(prompt_ids, edge_values, positions) of one component pair's packed edge posting."""
    e = edge_postings.c
    return select(e.prompt_ids, e.edge_values, e.positions).where(
        e.source_id == source_id, e.target_id == target_id
    )


def edge_postings_from(source_ids: Iterable[int]) -> str:
    """(source_id, target_id, prompt_ids, edge_values, positions) of every packed edge posting
    starting at one of these components."""
    return (
        "SELECT source_id, target_id, prompt_ids, edge_values, positions FROM edge_postings "
        f"WHERE source_id IN ({_listed(source_ids)})"
    )


def edge_posting_pairs() -> AnySelect:
    """(source_id, target_id) of every packed edge posting."""
    return select(edge_postings.c.source_id, edge_postings.c.target_id)
