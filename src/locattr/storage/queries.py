"""Every read statement, as SQLAlchemy Core selects usable from sync and async connections, or
as SQL text for the driver where compiling a select costs more than running it (those of the
packed index tables are in `index_queries`); and the page cursors.

Each public function builds a statement; `LocalAttrDB` (sync) and the API (async) execute them.
A request is answered with one or two statements, never one per row.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from sqlalchemy import (
    JSON,
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by

from locattr.errors import LocattrError
from locattr.storage.index_rows import CI_UNIT
from locattr.storage.models import (
    activation_contexts_table,
    component_activations_table,
    components_table,
    context_dictionaries_table,
    layers_table,
    meta_table,
    prompts_table,
)

ca = component_activations_table
AnySelect: TypeAlias = Select[*tuple[Any, ...]]
MAX_PAGE_SIZE = 1000
MAX_IN_IDS = 20_000

Rank: TypeAlias = Literal["specificity", "max_ci"]
"""How search scores a matching prompt: the sum over the queried components that fire in it of

- ``specificity`` (the default): CI mass × idf, that is the component's CI summed over the
  positions where it fires in the prompt, times ``ln(1 + N / n)`` with N the number of prompts
  in the database and n the number where the component fires. Grows with how much and how
  widely a component fires (no ceiling at CI 1), and weighs rare components above common ones;
- ``max_ci``: its largest CI in the prompt (at most 1 per component).
"""
RANKS: tuple[Rank, ...] = get_args(Rank)


class QueryError(LocattrError, ValueError):
    """A query argument out of range (limit, empty key list, ...)."""


class CursorError(QueryError):
    """A pagination cursor that this database did not hand out."""


_INT = "(?:[0-9]{1,18}|[1-8][0-9]{18})"
"""A cursor's integer (an id or a count): below 9e18, under 2**63, so any binds as a bound."""
_NUMBER = "-?[0-9]{1,20}(?:[.][0-9]{1,20})?(?:e[-+]?[0-9]{1,3})?"
"""A cursor's number: an integer, or a float as `repr` writes it."""
_CURSOR = re.compile(f"([a-z])((?:_{_NUMBER})+)")


def cursor_pattern(tags: str, *values: str) -> str:
    """The regular expression of the cursors with one of the letters `tags` and one value of each
    pattern in `values`, or empty (the first page): what the API declares, so that any cursor
    matching it is accepted."""
    return f"^(?:[{tags}]" + "".join(f"_{value}" for value in values) + ")?$"


def encode_cursor(tag: str, *values: float | int) -> str:
    """An opaque page cursor: a letter naming the list, then its values (`i_42`, `s_0.5_17`).

    Plain text rather than base64, so a regular expression says which cursors are well formed.
    """
    text = tag + "".join(f"_{_cursor_text(value)}" for value in values)
    assert _CURSOR.fullmatch(text), text  # a float cursor value is finite
    return text


def _cursor_text(value: float | int) -> str:
    # numpy scalars too: np.int64 is an Integral, np.float64 a float with a longer repr
    return str(int(value)) if isinstance(value, numbers.Integral) else repr(float(value))


def decode_cursor(tag: str, cursor: str) -> list[int | float]:
    """The values of a cursor made by `encode_cursor` with the same tag (ints stay ints)."""
    found = _CURSOR.fullmatch(cursor)
    values = [_cursor_value(text) for text in found[2][1:].split("_")] if found else []
    if not found or found[1] != tag:
        raise CursorError(
            f"invalid cursor {cursor!r}: pass back the next_cursor of a previous page"
        )
    return values


def _cursor_value(text: str) -> int | float:
    """An int where `_INT` matches; otherwise a float, which no id check accepts (an integer of
    more digits could not be bound as a database id)."""
    return int(text) if re.fullmatch(f"-?{_INT}", text) else float(text)


_CURSOR_TAGS: dict[Rank, str] = {"max_ci": "s", "specificity": "r"}


@dataclass(frozen=True)
class SearchCursor:
    """Position after the last hit of a page: hits are ordered by (score desc, prompt id).

    The cursor names its ranking: a page of one ranking cannot continue another's.
    """

    score: float
    prompt_id: int

    def encode(self, rank: Rank) -> str:
        return encode_cursor(_CURSOR_TAGS[rank], self.score, self.prompt_id)

    @classmethod
    def decode(cls, cursor: str, rank: Rank) -> SearchCursor:
        values = decode_cursor(_CURSOR_TAGS[rank], cursor)
        if len(values) != 2 or not isinstance(values[1], int):
            raise CursorError(f"invalid cursor {cursor!r}: not a search cursor")
        return cls(float(values[0]), values[1])


ID_CURSOR_PATTERN = cursor_pattern("i", _INT)
SEARCH_CURSOR_PATTERN = cursor_pattern("".join(_CURSOR_TAGS.values()), _NUMBER, _INT)
"""Search cursors of every ranking (a cursor of another ranking than the request's is refused)."""
ComponentSort: TypeAlias = Literal["prompt_count", "mean_ci", "max_ci"]
COMPONENT_SORT_TAGS: dict[str, str] = {"prompt_count": "c", "mean_ci": "m", "max_ci": "x"}
"""Each component-list order's cursor tag, so a cursor of one order is refused under another."""
COMPONENT_CURSOR_PATTERN = cursor_pattern("".join(COMPONENT_SORT_TAGS.values()), _NUMBER, _INT)
"""Cursors of the component list: (sort value, component id) of the previous page's last."""
EDGE_CURSOR_PATTERN = cursor_pattern("e", _NUMBER, _INT)
"""Edge-search cursors: (|value|, prompt id) of the previous page's last hit."""


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
    """Which prompts match: the components fire in all (or any) of them with max CI >= min_ci,
    and none of the excluded components fires in them with max CI >= min_ci."""

    component_ids: tuple[int, ...]
    require_all: bool
    min_ci: float = 0.0
    excluded_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_ci):  # it is written into SQL text (`page_matches`)
            raise QueryError(f"min_ci must be a finite number, got {self.min_ci}")

    def rows(self) -> AnySelect:
        """The index rows that count towards a match (CI values as stored)."""
        statement = select(ca).where(ca.c.component_id.in_(self.component_ids))
        return self._strong_enough(statement)

    def excluded_prompts(self) -> AnySelect:
        """The prompts where an excluded component fires (with max CI >= min_ci)."""
        statement = select(ca.c.prompt_id).where(ca.c.component_id.in_(self.excluded_ids))
        return self._strong_enough(statement)

    def _strong_enough(self, statement: AnySelect) -> AnySelect:
        if self.min_ci <= 0:
            return statement
        return statement.where(ci_value(ca.c.max_ci) >= self.min_ci)

    def groups(self, scoring: Scoring | None = None) -> AnySelect:
        """(prompt_id, score) of every matching prompt (score: the sum of max CI without a
        `scoring`)."""
        rows = self.rows().subquery()
        if scoring is None:
            value = ci_value(rows.c.max_ci)
        else:
            value = scoring.term(rows, self.component_ids)
        grouped = select(rows.c.prompt_id, func.sum(value).label("score")).group_by(
            rows.c.prompt_id
        )
        if self.excluded_ids:
            grouped = grouped.where(rows.c.prompt_id.not_in(self.excluded_prompts()))
        if self.require_all:
            grouped = grouped.having(func.count() == len(self.component_ids))
        return grouped


@dataclass(frozen=True)
class Scoring:
    """How matching prompts are scored: the sum over their matching components of
    ``weight × value``, the value being the CI sum (``specificity``) or the max CI (``max_ci``).

    `weights` follow the `MatchSpec`'s component ids: each one's `idf` for ``specificity``, 1
    for ``max_ci``.
    """

    rank: Rank
    weights: tuple[float, ...]

    @classmethod
    def by_max_ci(cls, n_components: int) -> Scoring:
        return cls("max_ci", (1.0,) * n_components)

    def term(self, rows: Any, component_ids: Sequence[int]) -> ColumnElement[float]:
        """One index row's contribution to its prompt's score, in SQL."""
        if self.rank == "max_ci":
            return ci_value(rows.c.max_ci)
        weight = case(
            *(
                (rows.c.component_id == c, w)
                for c, w in zip(component_ids, self.weights, strict=True)
            ),
            else_=0.0,
        )
        return ci_value(rows.c.ci_sum) * weight


def ci_value(column: ColumnElement[int]) -> ColumnElement[float]:
    """An index CI column as the CI value it stands for (see `index_rows.CI_UNIT`): a double
    product on both databases, as numpy computes it (PostgreSQL would multiply a NUMERIC
    literal exactly)."""
    return type_coerce(column * literal(CI_UNIT, Float), Float)


_CI_VALUE_SQL = f" * CAST({CI_UNIT!r} AS DOUBLE PRECISION)"
"""`ci_value` in SQL text."""


def idf(n_prompts: int, prompt_count: int) -> float:
    """A component's weight under ``specificity``: ``ln(1 + N / n)``, never 0 (a component firing
    in every prompt still separates prompts by its CI mass), ~ln(N / n) for rare components."""
    return math.log1p(n_prompts / max(prompt_count, 1))


def search_weights(component_ids: Sequence[int]) -> str:
    """(id, prompt_count, prompts in the database) of each component: its idf's inputs.
    SQL text for ``exec_driver_sql`` (integers inline, as `page_matches`)."""
    listed = ",".join(str(int(c)) for c in component_ids)
    return (
        "SELECT id, prompt_count, (SELECT count(*) FROM prompts) FROM components "
        f"WHERE id IN ({listed})"
    )


def prompt_counts(dialect: str) -> str:
    """One row: (prompts in the database, components' id bound = largest id + 1, the ids and
    the prompt counts of the components that fire) — the two lists in the same order, JSON
    arrays on SQLite, arrays on PostgreSQL. One row, not one per component: fetching 30,000
    rows costs more than the co-firing count they serve."""
    aggregate = "array_agg" if dialect == "postgresql" else "json_group_array"
    return (
        "SELECT (SELECT count(*) FROM prompts), "
        "(SELECT coalesce(max(id), -1) + 1 FROM components), "
        f"{aggregate}(id), {aggregate}(prompt_count) FROM components WHERE prompt_count > 0"
    )


def search_prompts(
    spec: MatchSpec, scoring: Scoring, *, limit: int, after: SearchCursor | None
) -> AnySelect:
    """Matching prompts, best first: (prompt_id, score, total), in plain SQL.

    Searches run on `storage.postings` (several times faster on frequent components); this
    formulation is their oracle in the tests and their baseline in the benchmark.

    score = see `Scoring` (and `Rank`); ties go to the lower prompt id; total = number of
    matching prompts over all pages. Fetches ``limit + 1`` rows so the caller can tell whether
    another page exists. The matching groups are materialised once and both counted and ranked
    from there (a window count over them costs twice as much on SQLite).
    """
    matching = spec.groups(scoring).cte("matching").prefix_with("MATERIALIZED")
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
    """(prompt_id, component_id, max_ci, positions, ci_sum) of the counted rows in every
    matching prompt."""
    matching = spec.groups().subquery()
    return (
        spec.rows()
        .with_only_columns(
            ca.c.prompt_id,
            ca.c.component_id,
            ci_value(ca.c.max_ci),
            ca.c.positions,
            ci_value(ca.c.ci_sum),
        )
        .where(ca.c.prompt_id.in_(select(matching.c.prompt_id)))
    )


def page_matches(spec: MatchSpec, prompt_ids: Sequence[int]) -> str:
    """(prompt_id, component_id, max_ci, positions, ci_sum, tokens JSON) of the counted rows in
    the given prompts: a result page's matches and previews in one statement.

    SQL text for ``exec_driver_sql``, every value a number written inline: SQLAlchemy took
    longer to build and compile this statement per search than the database takes to run it.
    The same rows as ``spec.rows()`` restricted to those prompts.
    """
    components = ",".join(str(int(c)) for c in spec.component_ids)
    prompts = ",".join(str(int(p)) for p in prompt_ids)
    unit = _CI_VALUE_SQL
    min_ci = f" AND ca.max_ci{unit} >= {float(spec.min_ci)!r}" if spec.min_ci > 0 else ""
    return (
        f"SELECT ca.prompt_id, ca.component_id, ca.max_ci{unit}, ca.positions, ca.ci_sum{unit}, "
        "p.tokens "
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
    after: tuple[float, int] | None = None,
    sort: ComponentSort = "prompt_count",
) -> AnySelect:
    """(id, layer, index, prompt_count, sum_max_ci, max_max_ci, mean_ci) of components that
    fire, largest `sort` value first (components without a mean CI last; ties by id); `after` =
    (sort value, id) of the previous page's last row."""
    c = components_table.c
    value = {
        "prompt_count": c.prompt_count,
        "mean_ci": func.coalesce(c.mean_ci, -1.0),
        "max_ci": c.max_max_ci,
    }[sort]
    statement = (
        select(
            c.id,
            layers_table.c.name,
            c.index,
            c.prompt_count,
            c.sum_max_ci,
            c.max_max_ci,
            c.mean_ci,
            value,
        )
        .join(layers_table, layers_table.c.id == c.layer_id)
        .where(c.prompt_count > 0)
    )
    if layer_id is not None:
        statement = statement.where(c.layer_id == layer_id)
    if after is not None:
        last, component_id = after
        statement = statement.where(or_(value < last, and_(value == last, c.id > component_id)))
    return statement.order_by(value.desc(), c.id).limit(limit)


def count_active_components(layer_id: int | None = None) -> AnySelect:
    c = components_table.c
    statement = select(func.count()).select_from(components_table).where(c.prompt_count > 0)
    return statement.where(c.layer_id == layer_id) if layer_id is not None else statement


def count_activation_contexts(layer_id: int | None = None) -> AnySelect:
    statement = select(func.count()).select_from(activation_contexts_table)
    if layer_id is None:
        return statement
    c = components_table.c
    return statement.join(components_table, c.id == activation_contexts_table.c.component_id).where(
        c.layer_id == layer_id
    )


def component_counters(component_id: int) -> AnySelect:
    c = components_table.c
    return select(c.prompt_count, c.sum_max_ci, c.max_max_ci, c.mean_ci).where(c.id == component_id)


def component_mean_ci(component_ids: Sequence[int]) -> AnySelect | str:
    """(id, mean_ci, prompt_count) of those components that have a dataset mean CI or fire in
    a stored prompt; for a long list, of every such component between its first and last id (a
    range reads faster than a huge IN list).

    A short list comes as SQL text for ``exec_driver_sql``: compiling a statement with a
    thousand inline ids costs SQLAlchemy three times as long as SQLite takes to run it.
    """
    c = components_table.c
    if len(component_ids) > MAX_IN_IDS:
        return select(c.id, c.mean_ci, c.prompt_count).where(
            c.id.between(component_ids[0], component_ids[-1]),
            or_(c.mean_ci.is_not(None), c.prompt_count > 0),
        )
    # Integers written inline: a bound parameter per id costs more than the lookup itself.
    listed = ",".join(map(str, map(int, component_ids)))
    return (
        f"SELECT id, mean_ci, prompt_count FROM components WHERE id IN ({listed}) "
        "AND (mean_ci IS NOT NULL OR prompt_count > 0)"
    )


def top_prompts_of_component(component_id: int | ColumnElement[int], limit: int) -> AnySelect:
    """(prompt_id, max_ci) of the prompts where the component fires most strongly: highest
    max CI first, ties to the lower prompt id."""
    return (
        select(ca.c.prompt_id, ci_value(ca.c.max_ci).label("max_ci"))
        .where(ca.c.component_id == component_id)
        .order_by(ca.c.max_ci.desc(), ca.c.prompt_id)
        .limit(limit)
    )


def component_details(component_ids: Sequence[int], *, top_k: int, dialect: str) -> AnySelect:
    """(id, `component_counters`' columns, activation context blob and its dictionary id (None,
    None without one), top prompt ids) of those of the components that have a row; the top
    prompt ids (a list, or None when there are none on PostgreSQL) are
    `top_prompts_of_component`'s.

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
        select(c.id, c.prompt_count, c.sum_max_ci, c.max_max_ci, c.mean_ci)
        .add_columns(contexts.c.data, contexts.c.dictionary_id)
        .add_columns(select(top_ids).select_from(strongest).scalar_subquery())
        .select_from(components_table.outerjoin(contexts, contexts.c.component_id == c.id))
        .where(c.id.in_(component_ids))
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


def prompts_without_graph_count() -> AnySelect:
    """How many prompts were stored without their graph (``--no-graphs``)."""
    return select(func.count()).select_from(prompts_table).where(prompts_table.c.graph.is_(None))


def prompt_graphs_after(after_id: int, limit: int) -> AnySelect:
    """(id, graph blob) of a page of prompts in id order."""
    p = prompts_table.c
    return select(p.id, p.graph).where(p.id > after_id).order_by(p.id).limit(limit)


VOCABULARY_KEY = "vocabulary"
"""Meta key of the tokenizer's vocabulary (a JSON list, token id -> text): labels for output
nodes. Kept out of `meta_items` (it is data, not provenance, and can be megabytes)."""


CORPUS_TABLES_STALE_KEY = "corpus_tables_stale"
"""Meta key present (with the reason) while the corpus attributions and edge index miss some
stored prompts; `locattr db aggregate` rebuilds them and removes it."""
EDGE_INDEX_MIN_ABS_KEY = "edge_index_min_abs"
"""Meta key of the edge index's floor (|value| of the weakest indexed edge)."""


def meta_items() -> AnySelect:
    return select(meta_table.c.key, meta_table.c.value).where(meta_table.c.key != VOCABULARY_KEY)


def meta_value(key: str) -> AnySelect:
    return select(meta_table.c.value).where(meta_table.c.key == key)


def activation_contexts(
    *, after_id: int = -1, limit: int | None = None, layer_id: int | None = None
) -> AnySelect:
    """(component id, layer, index, context blob, dictionary id) of components with stored
    contexts, by id (decode with the dictionaries of `context_dictionaries`)."""
    c = components_table.c
    contexts = activation_contexts_table.c
    statement = (
        select(c.id, layers_table.c.name, c.index, contexts.data, contexts.dictionary_id)
        .join(components_table, c.id == contexts.component_id)
        .join(layers_table, layers_table.c.id == c.layer_id)
        .where(c.id > after_id)
        .order_by(c.id)
    )
    if layer_id is not None:
        statement = statement.where(c.layer_id == layer_id)
    return statement.limit(limit) if limit is not None else statement


def activation_context(component_id: int) -> AnySelect:
    """(context blob, dictionary id, dictionary bytes) of one component's stored context."""
    contexts, dictionaries = activation_contexts_table, context_dictionaries_table
    return (
        select(contexts.c.data, contexts.c.dictionary_id, dictionaries.c.data)
        .select_from(
            contexts.outerjoin(dictionaries, dictionaries.c.id == contexts.c.dictionary_id)
        )
        .where(contexts.c.component_id == component_id)
    )


def used_context_dictionary_ids() -> AnySelect:
    """(dictionary_id) of every stored activation context compressed with a dictionary."""
    contexts = activation_contexts_table.c
    return select(contexts.dictionary_id).where(contexts.dictionary_id.is_not(None))


def context_dictionaries(dictionary_ids: Sequence[int]) -> AnySelect:
    """(id, bytes) of these activation-context dictionaries."""
    table = context_dictionaries_table
    return select(table.c.id, table.c.data).where(table.c.id.in_(dictionary_ids))


def layer_slots() -> AnySelect:
    """Every layer: name, id, first component id, number of components."""
    return select(
        layers_table.c.name,
        layers_table.c.id,
        layers_table.c.first_component_id,
        layers_table.c.n_components,
    )


def stored_prompt_rows(after_id: int, limit: int, columns: Sequence[str]) -> AnySelect:
    """A page of prompts in id order: the id, then the named columns as stored (what a merge
    copies)."""
    p = prompts_table.c
    return (
        select(p.id, *(p[name] for name in columns))
        .where(p.id > after_id)
        .order_by(p.id)
        .limit(limit)
    )
