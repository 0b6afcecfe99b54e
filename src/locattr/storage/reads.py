"""Read operations on one open connection, shared by `LocalAttrDB` (sync) and the API.

The API runs them on its async connections with ``AsyncConnection.run_sync``, so the row
handling below exists once. Each answers with one or two statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import orjson
from sqlalchemy import Connection

from locattr.graph import Graph
from locattr.storage import postings, queries
from locattr.storage.context_blobs import ContextDecoder
from locattr.storage.index_rows import decode_positions
from locattr.storage.keys import ComponentKey, parse_keys
from locattr.storage.records import (
    Cofiring,
    CofiringPartner,
    ComponentDetails,
    ComponentMatch,
    ComponentStats,
    ComponentSummary,
    GraphComponentStats,
    LayerSlot,
    Page,
    PromptInfo,
    SearchHit,
    SearchPage,
    first_examples,
    paginate,
    preview_of,
)


class LayerCache:
    """The layer table (small, rarely changing), re-read when a key names an unknown layer;
    the components' prompt counts, re-read when the number of prompts changed; and the
    vocabulary, read once stored (a database without one is asked again: a running build may
    add it)."""

    def __init__(self) -> None:
        self._slots: dict[str, LayerSlot] = {}
        self._counts: postings.PromptCounts | None = None
        self._vocabulary: list[str] | None = None

    def vocabulary(self, connection: Connection) -> list[str] | None:
        if self._vocabulary is None:
            self._vocabulary = vocabulary(connection)
        return self._vocabulary

    def prompt_counts(self, connection: Connection) -> postings.PromptCounts:
        """Every component's prompt count. Prompts are only ever added, so an unchanged number
        of prompts means unchanged counters: counting the prompts (microseconds) spares
        reading every component's row (milliseconds) on each co-firing request."""
        counts = self._counts
        if counts is None or counts.n_prompts != prompt_count(connection):
            counts = self._counts = postings.read_prompt_counts(connection)
        return counts

    def slots(self, connection: Connection, *, refresh: bool = False) -> dict[str, LayerSlot]:
        if refresh or not self._slots:
            self._slots = layer_slots(connection)
        return self._slots

    def component_id(self, connection: Connection, key: ComponentKey) -> int | None:
        """The component's id, or None if this database has no such layer or index."""
        return self.component_ids(connection, [key])[key]

    def component_ids(
        self, connection: Connection, keys: Sequence[ComponentKey]
    ) -> dict[ComponentKey, int | None]:
        """Each key's component id (None where this database has no such layer or index),
        re-reading the layer table at most once however many keys name unknown layers."""
        slots = self.slots(connection)
        if any(key.layer not in slots for key in keys):
            slots = self.slots(connection, refresh=True)
        return {key: _component_id(slots.get(key.layer), key.index) for key in keys}

    def key_of(self, connection: Connection, component_id: int) -> str:
        for name, slot in self.slots(connection).items():
            if 0 <= component_id - slot.first_component_id < slot.n_components:
                return f"{name}:{component_id - slot.first_component_id}"
        raise KeyError(component_id)


def layer_slots(connection: Connection) -> dict[str, LayerSlot]:
    """Where each layer's component ids live, by layer name."""
    rows = connection.execute(queries.layer_slots())
    return {name: LayerSlot(id_, first, n) for name, id_, first, n in rows}


def _component_id(slot: LayerSlot | None, index: int) -> int | None:
    if slot is None or index >= slot.n_components:
        return None
    return slot.first_component_id + index


def prompt_info(row: Sequence[Any]) -> PromptInfo:
    prompt_id, identity, token_ids, tokens, source, n_nodes, n_edges, has_graph = row
    return PromptInfo(
        id=prompt_id,
        identity=identity,
        token_ids=orjson.loads(token_ids),
        tokens=orjson.loads(tokens),
        source=orjson.loads(source),
        n_nodes=n_nodes,
        n_edges=n_edges,
        has_graph=bool(has_graph),
    )


def get_prompts(connection: Connection, prompt_ids: Sequence[int]) -> list[PromptInfo]:
    """Prompts in the order asked; unknown ids are left out."""
    if not prompt_ids:
        return []
    rows = connection.execute(queries.prompts_by_ids(prompt_ids)).all()
    by_id = {row[0]: row for row in rows}
    return [prompt_info(by_id[i]) for i in prompt_ids if i in by_id]


def list_prompts(
    connection: Connection, *, limit: int, cursor: str | None = None, after_id: int = 0
) -> Page[PromptInfo]:
    """A page of prompts in id order: after the `cursor`'s, or without one after `after_id`."""
    after = queries.decode_id_cursor(cursor) if cursor else after_id
    rows = connection.execute(queries.prompts_after(after, limit + 1)).all()
    return paginate(rows, limit, lambda row: queries.encode_id_cursor(row[0])).map(prompt_info)


def get_graph_blob(connection: Connection, prompt_id: int) -> bytes | None:
    return connection.execute(queries.prompt_graph(prompt_id)).scalar()


def get_prompt_with_graph(
    connection: Connection, prompt_id: int
) -> tuple[PromptInfo, bytes | None] | None:
    """The prompt and its graph blob (None when stored without one), or None if unknown."""
    row = connection.execute(queries.prompt_with_graph(prompt_id)).first()
    return (prompt_info(row[:-1]), row[-1]) if row is not None else None


def get_meta(connection: Connection) -> dict[str, Any]:
    rows = connection.execute(queries.meta_items()).all()
    return {key: orjson.loads(value) for key, value in rows}


def meta_value(connection: Connection, key: str) -> Any:
    """One meta key's value (None when absent), without reading the others."""
    value = connection.execute(queries.meta_value(key)).scalar()
    return orjson.loads(value) if value is not None else None


def vocabulary(connection: Connection) -> list[str] | None:
    """The tokenizer's vocabulary (token id -> text) stored by locattr-generate, if any."""
    return meta_value(connection, queries.VOCABULARY_KEY)


def prompt_count(connection: Connection) -> int:
    return int(connection.execute(queries.prompt_count()).scalar_one())


def search(
    connection: Connection,
    layers: LayerCache,
    keys: Iterable[str],
    *,
    require_all: bool,
    limit: int,
    cursor: str | None,
    min_ci: float = 0.0,
    same_position: bool = False,
    exclude: Iterable[str] = (),
    rank: queries.Rank = "specificity",
) -> SearchPage:
    """Ranked prompts where all (or any) components fire and no excluded one does; see
    `queries.search_prompts` and `queries.Rank`.

    ``min_ci`` counts a component, queried or excluded, only where its max CI in the prompt
    reaches it; ``same_position`` (with all components) keeps prompts where they fire at a
    common position. Unknown excluded keys exclude nothing (and are reported as unknown).
    """
    parsed = parse_keys(keys)
    excluded = parse_keys(exclude)
    if not parsed:
        raise queries.QueryError("give at least one component key ('layer:index')")
    if rank not in queries.RANKS:
        raise queries.QueryError(f"rank must be one of {', '.join(queries.RANKS)}, got {rank!r}")
    if same_position and not require_all:
        raise queries.QueryError("same_position needs mode 'all': every component at one position")
    both = set(parsed).intersection(excluded)
    if both:
        key = next(k for k in parsed if k in both)
        raise queries.QueryError(
            f"{key} is both searched for and excluded, an exclusion that empties the query: "
            "drop it from one of the two lists"
        )
    queries.check_limit(limit)
    after = queries.SearchCursor.decode(cursor, rank) if cursor else None
    ids = layers.component_ids(connection, [*parsed, *excluded])
    key_of = {i: str(k) for k in parsed if (i := ids[k]) is not None}
    unknown = [str(k) for k in parsed if ids[k] is None]
    if not key_of or (require_all and unknown):
        unknown += [str(k) for k in excluded if ids[k] is None]
        return SearchPage(items=[], next_cursor=None, total=0, unknown_keys=unknown, rank=rank)
    excluded_ids = tuple(i for i in (ids[k] for k in excluded) if i is not None)
    unknown += [str(k) for k in excluded if ids[k] is None]
    spec = queries.MatchSpec(
        tuple(key_of), require_all=require_all, min_ci=min_ci, excluded_ids=excluded_ids
    )
    scoring, idf = _scoring(connection, spec, rank)
    if same_position:
        ranked = _same_position_ranking(connection, spec, scoring, key_of)
        total = len(ranked)
        if after is not None:
            ranked = [r for r in ranked if (-r[1], r[0]) > (-after.score, after.prompt_id)]
        rows = ranked[: limit + 1]
    else:
        found = postings.read_postings(connection, (*spec.component_ids, *excluded_ids))
        rows, total = postings.rank(found, spec, scoring, limit=limit, after=after)
    page = paginate(rows, limit, lambda row: queries.SearchCursor(row[1], row[0]).encode(rank))
    details = (
        connection.exec_driver_sql(queries.page_matches(spec, [row[0] for row in page.items])).all()
        if page.items
        else []
    )
    matches, tokens = _page_details(details, key_of)
    hits = [
        SearchHit(
            prompt_id=prompt_id,
            score=score,
            matches={k: matches[prompt_id][k] for k in key_of.values() if k in matches[prompt_id]},
            preview=preview_of(tokens[prompt_id]),
            tokens=tokens[prompt_id],
        )
        for prompt_id, score in page.items
    ]
    return SearchPage(
        items=hits,
        next_cursor=page.next_cursor,
        total=total,
        unknown_keys=unknown,
        rank=rank,
        idf={key_of[c]: v for c, v in idf.items()},
    )


def _scoring(
    connection: Connection, spec: queries.MatchSpec, rank: queries.Rank
) -> tuple[queries.Scoring, dict[int, float]]:
    """The search's scoring, and the idf of each queried component (``specificity`` only: the
    ``max_ci`` ranking reads nothing more than it did before there were two)."""
    if rank == "max_ci":
        return queries.Scoring.by_max_ci(len(spec.component_ids)), {}
    rows = connection.exec_driver_sql(queries.search_weights(spec.component_ids)).all()
    idf = {component_id: queries.idf(n_prompts, count) for component_id, count, n_prompts in rows}
    weights = tuple(idf[c] for c in spec.component_ids)
    return queries.Scoring(rank, weights), {c: idf[c] for c in spec.component_ids}


def _group_matches(
    rows: Sequence[Any], key_of: Mapping[int, str]
) -> dict[int, dict[str, ComponentMatch]]:
    grouped: dict[int, dict[str, ComponentMatch]] = {}
    for prompt_id, component_id, max_ci, positions, ci_sum in rows:
        grouped.setdefault(prompt_id, {})[key_of[component_id]] = ComponentMatch(
            max_ci=max_ci, positions=decode_positions(positions), ci_sum=ci_sum
        )
    return grouped


def _page_details(
    rows: Sequence[Any], key_of: Mapping[int, str]
) -> tuple[dict[int, dict[str, ComponentMatch]], dict[int, list[str]]]:
    """Rows of `queries.page_matches` -> matches by prompt and key, tokens by prompt."""
    matches: dict[int, dict[str, ComponentMatch]] = {}
    tokens: dict[int, list[str]] = {}
    for prompt_id, component_id, max_ci, positions, ci_sum, tokens_json in rows:
        if prompt_id not in tokens:  # the same tokens on every row of a prompt
            tokens[prompt_id] = orjson.loads(tokens_json)
            matches[prompt_id] = {}
        matches[prompt_id][key_of[component_id]] = ComponentMatch(
            max_ci=max_ci, positions=decode_positions(positions), ci_sum=ci_sum
        )
    return matches, tokens


def _same_position_ranking(
    connection: Connection,
    spec: queries.MatchSpec,
    scoring: queries.Scoring,
    key_of: Mapping[int, str],
) -> list[tuple[int, float]]:
    """Every matching prompt whose components share a position, ranked (score desc, id)."""
    matches = _group_matches(connection.execute(queries.matches_in_prompts(spec)).all(), key_of)
    ranked = []
    for prompt_id, by_key in matches.items():
        common = set.intersection(*(set(m.positions) for m in by_key.values()))
        if len(by_key) == len(key_of) and common:
            score = 0.0  # in query order, as `postings.rank` adds them
            for component_id, weight in zip(spec.component_ids, scoring.weights, strict=True):
                match = by_key[key_of[component_id]]
                score += weight * (match.ci_sum if scoring.rank == "specificity" else match.max_ci)
            ranked.append((prompt_id, score))
    ranked.sort(key=lambda r: (-r[1], r[0]))
    return ranked


def component_stats(
    connection: Connection, layers: LayerCache, key: str, *, top_k: int
) -> ComponentStats | None:
    parsed = ComponentKey.parse(key)
    component_id = layers.component_id(connection, parsed)
    if component_id is None:
        return None
    counters = connection.execute(queries.component_counters(component_id)).one()
    top = connection.execute(queries.top_prompts_of_component(component_id, top_k)).all()
    return _stats(str(parsed), counters, [prompt_id for prompt_id, _ in top])


def _stats(key: str, counters: Sequence[Any], top_prompt_ids: list[int]) -> ComponentStats:
    """`ComponentStats` from the columns of `queries.component_counters`."""
    count, total, maximum, mean_ci = counters
    return ComponentStats(
        key=key,
        prompt_count=count,
        mean_max_ci=total / count if count else 0.0,
        max_max_ci=maximum,
        top_prompt_ids=top_prompt_ids,
        mean_ci=mean_ci,
    )


def component_details(
    connection: Connection, layers: LayerCache, keys: Iterable[str], *, top_k: int, examples: int
) -> tuple[list[ComponentDetails], list[str]]:
    """Many components' statistics and activation contexts (cut to their first `examples`
    examples), in the order asked, each once; and the well-formed keys that name none.

    One statement however many keys (see `queries.component_details`); each item's statistics
    equal `component_stats`' for the same key.
    """
    ids = layers.component_ids(connection, parse_keys(keys))
    known = sorted({i for i in ids.values() if i is not None})
    statement = queries.component_details(known, top_k=top_k, dialect=connection.dialect.name)
    rows = connection.execute(statement).all() if known else []
    by_id = {row[0]: row for row in rows}
    decoder = context_decoder(connection, [row[6] for row in rows], layers)
    found: list[ComponentDetails] = []
    unknown: list[str] = []
    for key, component_id in ids.items():
        row = by_id.get(component_id) if component_id is not None else None
        if row is None:
            unknown.append(str(key))
            continue
        _, count, total, maximum, mean_ci, data, dictionary_id, top = row
        context = None
        if data is not None:
            context = first_examples(decoder.decode(data, dictionary_id), examples)
        stats = _stats(str(key), (count, total, maximum, mean_ci), list(top or []))
        found.append(ComponentDetails(stats, context))
    return found, unknown


def component_mean_ci(connection: Connection, layers: LayerCache, graph: Graph) -> dict[str, float]:
    """Dataset mean CI of the graph's components (`layer:index` -> value) where one is stored."""
    return graph_component_stats(connection, layers, graph).mean_ci


def graph_component_stats(
    connection: Connection, layers: LayerCache, graph: Graph
) -> GraphComponentStats:
    """Mean CI and prompt count of the graph's components, in one statement."""
    slots = layers.slots(connection)
    first = np.array([slots[n].first_component_id if n in slots else -1 for n in graph.layers])
    node_first = first[graph.node_layer]
    decomposed = np.flatnonzero(node_first >= 0)  # pseudo-layers (wte, output) have no rows
    node_ids = node_first[decomposed] + graph.node_component[decomposed]
    ids, first_node = np.unique(node_ids, return_index=True)
    if not len(ids):
        return GraphComponentStats({}, {})
    statement = queries.component_mean_ci(ids.tolist())
    rows = (
        connection.exec_driver_sql(statement)
        if isinstance(statement, str)
        else connection.execute(statement)
    ).all()
    if not rows:
        return GraphComponentStats({}, {})
    found, values, counts = zip(*rows, strict=True)
    where = np.searchsorted(ids, found)
    present = where < len(ids)
    present[present] = ids[where[present]] == np.asarray(found)[present]
    nodes = decomposed[first_node[where[present]]]
    keys = [
        f"{graph.layers[layer]}:{component}"
        for layer, component in zip(
            graph.node_layer[nodes].tolist(), graph.node_component[nodes].tolist(), strict=True
        )
    ]
    kept_values = np.asarray(values, dtype=object)[present].tolist()
    kept_counts = np.asarray(counts, dtype=np.int64)[present].tolist()
    return GraphComponentStats(
        mean_ci={k: float(v) for k, v in zip(keys, kept_values, strict=True) if v is not None},
        prompt_count={k: n for k, n in zip(keys, kept_counts, strict=True) if n > 0},
    )


def cofiring_components(
    connection: Connection, layers: LayerCache, key: str, *, sample: int, limit: int
) -> list[tuple[str, int]]:
    """(key, prompts) of the components that fire most often in this one's strongest prompts."""
    component_id = layers.component_id(connection, ComponentKey.parse(key))
    if component_id is None:
        return []
    strongest = connection.execute(queries.top_prompts_of_component(component_id, sample)).all()
    together = postings.count_components_in(
        connection, np.array([prompt_id for prompt_id, _ in strongest], dtype=np.int64)
    )
    if component_id < len(together):
        together[component_id] = 0
    partners = np.flatnonzero(together)
    best = partners[np.lexsort((partners, -together[partners]))][:limit]
    return [(layers.key_of(connection, int(other)), int(together[other])) for other in best]


CofiringOrder: TypeAlias = Literal["lift", "jaccard", "count"]
COFIRING_ORDERS: tuple[CofiringOrder, ...] = get_args(CofiringOrder)
DEFAULT_MIN_COUNT = 3
"""Partners seen in fewer common prompts are left out by default: their lifts are mostly chance
(a partner firing once, in one of A's prompts, has the largest lift there is)."""


def cofiring(
    connection: Connection,
    layers: LayerCache,
    key: str,
    *,
    limit: int,
    min_count: int = DEFAULT_MIN_COUNT,
    order: CofiringOrder = "lift",
) -> Cofiring | None:
    """The components firing in at least `min_count` of the same prompts as `key`, counted
    over every prompt, best first by `order` (ties: more common prompts first, then model
    order); None if the database has no such component. See `CofiringPartner` for lift and
    Jaccard."""
    parsed = ComponentKey.parse(key)
    queries.check_limit(limit)
    if min_count < 1:
        raise queries.QueryError(f"min_count must be at least 1, got {min_count}")
    if order not in COFIRING_ORDERS:
        raise queries.QueryError(
            f"order must be one of {', '.join(COFIRING_ORDERS)}, got {order!r}"
        )
    component_id = layers.component_id(connection, parsed)
    if component_id is None:
        return None
    counts = layers.prompt_counts(connection)
    all_together = postings.cofiring_counts(connection, component_id, counts)
    n_a = int(counts.by_component[component_id])
    partner_ids = np.flatnonzero(all_together >= min_count)
    n_partners = len(partner_ids)
    together = all_together[partner_ids]
    n_b = counts.by_component[partner_ids]
    # Integer products first: each ratio is then one correctly rounded division.
    lift = (together * counts.n_prompts) / (n_a * n_b)
    jaccard = together / (n_a + n_b - together)
    primary = {"lift": lift, "jaccard": jaccard, "count": together}[order]
    if n_partners > limit:  # sort only those at least as good as the limit-th: ties stay in
        kept = primary >= -np.partition(-primary, limit - 1)[limit - 1]
        partner_ids, together, n_b, lift, jaccard, primary = (
            column[kept] for column in (partner_ids, together, n_b, lift, jaccard, primary)
        )
    best = np.lexsort((partner_ids, -together, -primary))[:limit]
    return Cofiring(
        key=str(parsed),
        prompt_count=n_a,
        n_prompts=counts.n_prompts,
        n_partners=n_partners,
        partners=[
            CofiringPartner(
                key=layers.key_of(connection, int(partner_ids[i])),
                count=int(together[i]),
                prompt_count=int(n_b[i]),
                lift=float(lift[i]),
                jaccard=float(jaccard[i]),
            )
            for i in best.tolist()
        ],
    )


def list_components(
    connection: Connection,
    layers: LayerCache,
    *,
    layer: str | None,
    limit: int,
    cursor: str | None = None,
    sort: queries.ComponentSort = "prompt_count",
) -> Page[ComponentSummary]:
    """A page of the components that fire in stored prompts, largest `sort` value first."""
    queries.check_limit(limit)
    tag = queries.COMPONENT_SORT_TAGS[sort]
    after = None
    if cursor:
        values = queries.decode_cursor(tag, cursor)
        if len(values) != 2 or not isinstance(values[1], int):
            raise queries.CursorError(f"invalid cursor {cursor!r}: not a component-list cursor")
        after = (values[0], int(values[1]))
    layer_id = None
    if layer is not None:
        slot = layers.slots(connection, refresh=True).get(layer)
        if slot is None:
            return Page([], None)
        layer_id = slot.id
    rows = connection.execute(
        queries.component_summaries(layer_id=layer_id, limit=limit + 1, after=after, sort=sort)
    ).all()
    page = paginate(rows, limit, lambda row: queries.encode_cursor(tag, row[-1], row[0]))
    return page.map(_component_summary)


def _component_summary(row: Sequence[Any]) -> ComponentSummary:
    """`ComponentSummary` from a row of `queries.component_summaries`."""
    _, name, index, count, total, maximum, mean_ci, _ = row
    return ComponentSummary(
        key=f"{name}:{index}",
        layer=name,
        index=index,
        prompt_count=count,
        mean_max_ci=total / count if count else 0.0,
        max_max_ci=maximum,
        mean_ci=mean_ci,
    )


def count_components(connection: Connection, layers: LayerCache, *, layer: str | None) -> int:
    """How many components fire in at least one stored prompt (in `layer`, if given)."""
    if layer is None:
        return int(connection.execute(queries.count_active_components()).scalar_one())
    slot = layers.slots(connection, refresh=True).get(layer)
    if slot is None:
        return 0
    return int(connection.execute(queries.count_active_components(slot.id)).scalar_one())


def count_activation_contexts(
    connection: Connection, layers: LayerCache, *, layer: str | None
) -> int:
    """How many components have activation contexts (in `layer`, if given)."""
    if layer is None:
        return int(connection.execute(queries.count_activation_contexts()).scalar_one())
    slot = layers.slots(connection, refresh=True).get(layer)
    if slot is None:
        return 0
    return int(connection.execute(queries.count_activation_contexts(slot.id)).scalar_one())


def activation_context(
    connection: Connection, layers: LayerCache, key: str
) -> dict[str, Any] | None:
    component_id = layers.component_id(connection, ComponentKey.parse(key))
    if component_id is None:
        return None
    row = connection.execute(queries.activation_context(component_id)).one_or_none()
    if row is None:
        return None
    data, dictionary_id, dictionary = row
    decoder = ContextDecoder(
        {} if dictionary_id is None else {dictionary_id: dictionary},
        lambda: layers.vocabulary(connection),
    )
    return decoder.decode(data, dictionary_id)


def activation_contexts(connection: Connection) -> dict[str, dict[str, Any]]:
    rows = connection.execute(queries.activation_contexts()).all()
    decoder = context_decoder(connection, [row[4] for row in rows], LayerCache())
    return {f"{layer}:{index}": decoder.decode(data, d) for _, layer, index, data, d in rows}


def activation_context_page(
    connection: Connection, layers: LayerCache, *, layer: str | None, limit: int, cursor: str | None
) -> Page[tuple[str, dict[str, Any]]]:
    """A page of (component key, activation context) in component order."""
    after = queries.decode_id_cursor(cursor) if cursor else -1
    layer_id = None
    if layer is not None:
        slot = layers.slots(connection, refresh=True).get(layer)
        if slot is None:
            return Page([], None)
        layer_id = slot.id
    statement = queries.activation_contexts(
        after_id=after, limit=queries.check_limit(limit) + 1, layer_id=layer_id
    )
    rows = connection.execute(statement).all()
    page = paginate(rows, limit, lambda row: queries.encode_id_cursor(row[0]))
    decoder = context_decoder(connection, [row[4] for row in page.items], layers)
    return page.map(lambda row: (f"{row[1]}:{row[2]}", decoder.decode(row[3], row[4])))


def context_decoder(
    connection: Connection, dictionary_ids: Iterable[int | None], layers: LayerCache
) -> ContextDecoder:
    """A decoder for stored contexts compressed with these dictionaries (one statement, none
    when no context uses one), taking the vocabulary from `layers`' cache."""
    wanted = sorted({i for i in dictionary_ids if i is not None})
    rows = connection.execute(queries.context_dictionaries(wanted)).all() if wanted else []
    return ContextDecoder(
        {dictionary_id: data for dictionary_id, data in rows},
        lambda: layers.vocabulary(connection),
    )


def layer_sizes(slots: Mapping[str, LayerSlot]) -> dict[str, int]:
    return {name: slot.n_components for name, slot in slots.items()}
