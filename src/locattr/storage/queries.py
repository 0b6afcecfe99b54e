"""Every read statement, as SQLAlchemy Core selects usable from sync and async connections.

Each public function builds a statement; `LocalAttrDB` (sync) and the API (async) execute them.
A request is answered with one or two statements, never one per row.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson
from sqlalchemy import JSON, ColumnElement, Integer, Select, and_, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by

from locattr.errors import LocattrError
from locattr.storage.models import (
    activation_contexts_table,
    component_activations_table,
    components_table,
    layers_table,
    meta_table,
    prompts_table,
)

ca = component_activations_table
AnySelect: TypeAlias = Select[*tuple[Any, ...]]
MAX_PAGE_SIZE = 1000
MAX_IN_IDS = 20_000


class QueryError(LocattrError, ValueError):
    """A query argument out of range (limit, empty key list, ...)."""


class CursorError(QueryError):
    """A pagination cursor that this database did not hand out."""


def encode_cursor(tag: str, *values: float | int) -> str:
    """An opaque page cursor: base64url of a tagged JSON list."""
    return base64.urlsafe_b64encode(orjson.dumps([tag, *values])).decode().rstrip("=")


def decode_cursor(tag: str, cursor: str) -> list[Any]:
    """The values of a cursor made by `encode_cursor` with the same tag."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = orjson.loads(base64.urlsafe_b64decode(padded))
        assert isinstance(decoded, list) and decoded and decoded[0] == tag
        assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in decoded[1:])
    except (binascii.Error, orjson.JSONDecodeError, ValueError, AssertionError) as error:
        raise CursorError(
            f"invalid cursor {cursor!r}: pass back the next_cursor of a previous page"
        ) from error
    return decoded[1:]


@dataclass(frozen=True)
class SearchCursor:
    """Position after the last hit of a page: hits are ordered by (score desc, prompt id)."""

    score: float
    prompt_id: int

    def encode(self) -> str:
        return encode_cursor("s", self.score, self.prompt_id)

    @classmethod
    def decode(cls, cursor: str) -> SearchCursor:
        values = decode_cursor("s", cursor)
        if len(values) != 2 or not isinstance(values[1], int):
            raise CursorError(f"invalid cursor {cursor!r}: not a search cursor")
        return cls(float(values[0]), values[1])


def encode_id_cursor(last_id: int) -> str:
    """Cursor for lists in id order (prompts, activation contexts)."""
    return encode_cursor("i", last_id)


def decode_id_cursor(cursor: str | None) -> int:
    """The id after which the next page starts (0 for the first page)."""
    if not cursor:
        return 0
    values = decode_cursor("i", cursor)
    if len(values) != 1 or not isinstance(values[0], int):
        raise CursorError(f"invalid cursor {cursor!r}: not a list cursor")
    return values[0]


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise QueryError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    return limit


@dataclass(frozen=True)
class MatchSpec:
    """Which prompts match: the components fire in all (or any) of them with max CI >= min_ci."""

    component_ids: tuple[int, ...]
    require_all: bool
    min_ci: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_ci):  # it is written into SQL text (`page_matches`)
            raise QueryError(f"min_ci must be a finite number, got {self.min_ci}")

    def rows(self) -> AnySelect:
        """The index rows that count towards a match."""
        statement = select(ca).where(ca.c.component_id.in_(self.component_ids))
        return statement.where(ca.c.max_ci >= self.min_ci) if self.min_ci > 0 else statement

    def groups(self) -> AnySelect:
        """(prompt_id, score) of every matching prompt."""
        rows = self.rows().subquery()
        grouped = select(rows.c.prompt_id, func.sum(rows.c.max_ci).label("score")).group_by(
            rows.c.prompt_id
        )
        if self.require_all:
            grouped = grouped.having(func.count() == len(self.component_ids))
        return grouped


def search_prompts(spec: MatchSpec, *, limit: int, after: SearchCursor | None) -> AnySelect:
    """Matching prompts, best first: (prompt_id, score, total), in plain SQL.

    Searches run on `storage.postings` (several times faster on frequent components); this
    formulation is their oracle in the tests and their baseline in the benchmark.

    score = sum of the components' max CI in the prompt; ties go to the lower prompt id;
    total = number of matching prompts over all pages. Fetches ``limit + 1`` rows so the caller
    can tell whether another page exists. The matching groups are materialised once and both
    counted and ranked from there (a window count over them costs twice as much on SQLite).
    """
    matching = spec.groups().cte("matching").prefix_with("MATERIALIZED")
    total = select(func.count()).select_from(matching).scalar_subquery().label("total")
    statement = select(matching.c.prompt_id, matching.c.score, total)
    if after is not None:
        statement = statement.where(
            or_(
                matching.c.score < after.score,
                and_(matching.c.score == after.score, matching.c.prompt_id > after.prompt_id),
            )
        )
    return statement.order_by(matching.c.score.desc(), matching.c.prompt_id).limit(limit + 1)


def matches_in_prompts(spec: MatchSpec) -> AnySelect:
    """(prompt_id, component_id, max_ci, positions) of the counted rows in every matching
    prompt."""
    matching = spec.groups().subquery()
    return (
        spec.rows()
        .with_only_columns(ca.c.prompt_id, ca.c.component_id, ca.c.max_ci, ca.c.positions)
        .where(ca.c.prompt_id.in_(select(matching.c.prompt_id)))
    )


def page_matches(spec: MatchSpec, prompt_ids: Sequence[int]) -> str:
    """(prompt_id, component_id, max_ci, positions, tokens JSON) of the counted rows in the
    given prompts: a result page's matches and previews in one statement.

    SQL text for ``exec_driver_sql``, every value a number written inline: SQLAlchemy took
    longer to build and compile this statement per search than the database takes to run it.
    The same rows as ``spec.rows()`` restricted to those prompts.
    """
    components = ",".join(str(int(c)) for c in spec.component_ids)
    prompts = ",".join(str(int(p)) for p in prompt_ids)
    min_ci = f" AND ca.max_ci >= {float(spec.min_ci)!r}" if spec.min_ci > 0 else ""
    return (
        "SELECT ca.prompt_id, ca.component_id, ca.max_ci, ca.positions, p.tokens "
        "FROM component_activations AS ca JOIN prompts AS p ON p.id = ca.prompt_id "
        f"WHERE ca.component_id IN ({components}) AND ca.prompt_id IN ({prompts}){min_ci}"
    )


def layers() -> AnySelect:
    """(id, name, first_component_id, n_components) in model order."""
    return select(
        layers_table.c.id,
        layers_table.c.name,
        layers_table.c.first_component_id,
        layers_table.c.n_components,
    ).order_by(layers_table.c.id)


def component_summaries(
    *,
    layer_id: int | None = None,
    limit: int,
    after: tuple[int, int] | None = None,
) -> AnySelect:
    """(id, layer, index, prompt_count, sum_max_ci, max_max_ci, mean_ci) of components that
    fire, most prompts first (ties by id); `after` = (prompt_count, id) of the previous page's
    last row."""
    c = components_table.c
    statement = (
        select(
            c.id,
            layers_table.c.name,
            c.index,
            c.prompt_count,
            c.sum_max_ci,
            c.max_max_ci,
            c.mean_ci,
        )
        .join(layers_table, layers_table.c.id == c.layer_id)
        .where(c.prompt_count > 0)
    )
    if layer_id is not None:
        statement = statement.where(c.layer_id == layer_id)
    if after is not None:
        count, component_id = after
        statement = statement.where(
            or_(c.prompt_count < count, and_(c.prompt_count == count, c.id > component_id))
        )
    return statement.order_by(c.prompt_count.desc(), c.id).limit(limit)


def count_active_components(layer_id: int | None = None) -> AnySelect:
    c = components_table.c
    statement = select(func.count()).select_from(components_table).where(c.prompt_count > 0)
    return statement.where(c.layer_id == layer_id) if layer_id is not None else statement


def count_activation_contexts() -> AnySelect:
    return select(func.count()).select_from(activation_contexts_table)


def component_counters(component_id: int) -> AnySelect:
    c = components_table.c
    return select(c.prompt_count, c.sum_max_ci, c.max_max_ci, c.mean_ci).where(c.id == component_id)


def component_mean_ci(component_ids: Sequence[int]) -> AnySelect | str:
    """(id, mean_ci) of those components that have a dataset mean CI; for a long list, of every
    component between its first and last id (a range reads faster than a huge IN list).

    A short list comes as SQL text for ``exec_driver_sql``: compiling a statement with a
    thousand inline ids costs SQLAlchemy three times as long as SQLite takes to run it.
    """
    c = components_table.c
    if len(component_ids) > MAX_IN_IDS:
        return select(c.id, c.mean_ci).where(
            c.id.between(component_ids[0], component_ids[-1]), c.mean_ci.is_not(None)
        )
    # Integers written inline: a bound parameter per id costs more than the lookup itself.
    listed = ",".join(map(str, map(int, component_ids)))
    return f"SELECT id, mean_ci FROM components WHERE id IN ({listed}) AND mean_ci IS NOT NULL"


def top_prompts_of_component(component_id: int | ColumnElement[int], limit: int) -> AnySelect:
    """(prompt_id, max_ci) of the prompts where the component fires most strongly: highest
    max CI first, ties to the lower prompt id."""
    return (
        select(ca.c.prompt_id, ca.c.max_ci)
        .where(ca.c.component_id == component_id)
        .order_by(ca.c.max_ci.desc(), ca.c.prompt_id)
        .limit(limit)
    )


def component_details(component_ids: Sequence[int], *, top_k: int, dialect: str) -> AnySelect:
    """(id, `component_counters`' columns, activation context JSON or None, top prompt ids) of
    those of the components that have a row; the top prompt ids (a list, or None when there are
    none on PostgreSQL) are `top_prompts_of_component`'s.

    One statement for all: the top prompts are a correlated subquery per component, which reads
    its index rows once with a bounded sort (ranking them all with `row_number()` over a window
    took 8x longer on SQLite).
    """
    c = components_table.c
    contexts = activation_contexts_table
    strongest = top_prompts_of_component(c.id, top_k).correlate(components_table).subquery()
    if dialect == "postgresql":
        ordered = aggregate_order_by(
            strongest.c.prompt_id, strongest.c.max_ci.desc(), strongest.c.prompt_id
        )
        top_ids = func.array_agg(ordered, type_=ARRAY(Integer))
    else:
        # SQLite aggregates a LIMIT subquery's rows in its ORDER BY order (it cannot flatten it).
        top_ids = func.json_group_array(strongest.c.prompt_id, type_=JSON)
    return (
        select(c.id, c.prompt_count, c.sum_max_ci, c.max_max_ci, c.mean_ci, contexts.c.data)
        .add_columns(select(top_ids).select_from(strongest).scalar_subquery())
        .select_from(components_table.outerjoin(contexts, contexts.c.component_id == c.id))
        .where(c.id.in_(component_ids))
    )


def cofiring_components(component_id: int, *, sample: int, limit: int) -> AnySelect:
    """(component_id, prompts) of the components firing most often alongside this one,
    counted over its `sample` strongest prompts (bounded work for components firing often)."""
    strongest = (
        select(ca.c.prompt_id)
        .where(ca.c.component_id == component_id)
        .order_by(ca.c.max_ci.desc(), ca.c.prompt_id)
        .limit(sample)
        .subquery()
    )
    together = func.count().label("prompts")
    return (
        select(ca.c.component_id, together)
        .join(strongest, strongest.c.prompt_id == ca.c.prompt_id)
        .where(ca.c.component_id != component_id)
        .group_by(ca.c.component_id)
        .order_by(together.desc(), ca.c.component_id)
        .limit(limit)
    )


def active_component_ids() -> AnySelect:
    return select(components_table.c.id).where(components_table.c.prompt_count > 0)


def prompt_by_id(prompt_id: int) -> AnySelect:
    p = prompts_table.c
    return select(*_prompt_columns()).where(p.id == prompt_id)


def prompts_by_ids(prompt_ids: Sequence[int]) -> AnySelect:
    return select(*_prompt_columns()).where(prompts_table.c.id.in_(prompt_ids))


def prompts_after(after_id: int, limit: int) -> AnySelect:
    """A page of prompts in id order (keyset pagination, stable under concurrent inserts)."""
    p = prompts_table.c
    return select(*_prompt_columns()).where(p.id > after_id).order_by(p.id).limit(limit)


def _prompt_columns() -> tuple[Any, ...]:
    p = prompts_table.c
    return (
        p.id,
        p.identity,
        p.token_ids,
        p.tokens,
        p.source,
        p.n_nodes,
        p.n_edges,
        # Not `graph IS NOT NULL`: SQLite reads a whole blob (megabytes) to test that, but
        # takes a blob's length from the row header.
        func.length(p.graph).is_not(None),
    )


def stored_identities(identities: Sequence[str]) -> AnySelect:
    return select(prompts_table.c.identity).where(prompts_table.c.identity.in_(identities))


def prompt_graph(prompt_id: int) -> AnySelect:
    return select(prompts_table.c.graph).where(prompts_table.c.id == prompt_id)


def prompt_with_graph(prompt_id: int) -> AnySelect:
    """The prompt's columns (as `prompt_by_id`) followed by its graph blob."""
    return prompt_by_id(prompt_id).add_columns(prompts_table.c.graph)


def prompt_count() -> AnySelect:
    return select(func.count()).select_from(prompts_table)


VOCABULARY_KEY = "vocabulary"
"""Meta key of the tokenizer's vocabulary (a JSON list, token id -> text): labels for output
nodes. Kept out of `meta_items` (it is data, not provenance, and can be megabytes)."""


def meta_items() -> AnySelect:
    return select(meta_table.c.key, meta_table.c.value).where(meta_table.c.key != VOCABULARY_KEY)


def meta_value(key: str) -> AnySelect:
    return select(meta_table.c.value).where(meta_table.c.key == key)


def activation_contexts(
    *, after_id: int = -1, limit: int | None = None, layer_id: int | None = None
) -> AnySelect:
    """(component id, layer, index, data JSON) of components with stored contexts, by id."""
    c = components_table.c
    statement = (
        select(c.id, layers_table.c.name, c.index, activation_contexts_table.c.data)
        .join(components_table, c.id == activation_contexts_table.c.component_id)
        .join(layers_table, layers_table.c.id == c.layer_id)
        .where(c.id > after_id)
        .order_by(c.id)
    )
    if layer_id is not None:
        statement = statement.where(c.layer_id == layer_id)
    return statement.limit(limit) if limit is not None else statement


def activation_context(component_id: int) -> AnySelect:
    return select(activation_contexts_table.c.data).where(
        activation_contexts_table.c.component_id == component_id
    )
