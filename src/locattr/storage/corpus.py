"""Reads of the corpus tables: a component's partners across the corpus (corpus attributions)
and the prompts where one component drives another (the edge index).

Like `reads`, each function runs on one open connection, for `LocalAttrDB` and the API alike.
"""

from __future__ import annotations

import math
from typing import Literal, TypeAlias, get_args

import numpy as np
from sqlalchemy import Connection

from locattr.errors import LocattrError
from locattr.storage import corpus_deltas, edge_postings, index_queries, queries
from locattr.storage.edge_rows import ATTRIBUTION_UNIT, EDGE_INDEX_MIN_ABS, PairSums
from locattr.storage.keys import ComponentKey
from locattr.storage.queries import CORPUS_TABLES_STALE_KEY, EDGE_INDEX_MIN_ABS_KEY
from locattr.storage.reads import LayerCache, get_prompts, meta_value, prompt_count
from locattr.storage.records import EdgeHit, EdgeSearchPage, Partner, Partners, paginate

Direction: TypeAlias = Literal["upstream", "downstream"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)


class UnknownComponentError(LocattrError):
    """A well-formed key that names no component of this database."""


class StaleCorpusTablesError(LocattrError):
    """The corpus attributions and edge index do not cover every stored prompt."""


def edge_index_min_abs(connection: Connection) -> float:
    """The edge index's floor: recorded by the first write, the default before."""
    value = meta_value(connection, EDGE_INDEX_MIN_ABS_KEY)
    return EDGE_INDEX_MIN_ABS if value is None else float(value)


def check_fresh(connection: Connection) -> None:
    """Refuse to answer from corpus tables that miss prompts (a database older than them)."""
    reason = meta_value(connection, CORPUS_TABLES_STALE_KEY)
    if reason is not None:
        raise StaleCorpusTablesError(
            f"this database's corpus attributions and edge index are incomplete ({reason}): "
            "run `locattr db aggregate --db <database>` to build them from the stored graphs"
        )


def partners(
    connection: Connection, layers: LayerCache, key: str, *, direction: Direction, limit: int
) -> Partners:
    """The components sending attribution to `key` (``upstream``) or receiving it from `key`
    (``downstream``), summed over every stored graph, largest total |value| first."""
    if direction not in DIRECTIONS:
        raise queries.QueryError(f"direction must be upstream or downstream, got {direction!r}")
    queries.check_limit(limit)
    component = ComponentKey.parse(key)
    component_id = _known(connection, layers, component)
    check_fresh(connection)
    upstream = direction == "upstream"
    pending = corpus_deltas.pending(connection).sums
    if not len(pending):
        rows = connection.execute(
            index_queries.strongest_partners(component_id, upstream=upstream, limit=limit)
        ).all()
        n_partners = connection.execute(
            index_queries.partner_count(component_id, upstream=upstream)
        ).scalar_one()
    else:  # while a build runs: the table plus what is not folded in yet
        stored = np.array(
            connection.execute(index_queries.all_partners(component_id, upstream=upstream)).all(),
            np.int64,
        ).reshape(-1, 4)
        ends = (pending.target, pending.source) if upstream else (pending.source, pending.target)
        new = pending.take(ends[0] == component_id)
        found = PairSums.combine(
            [
                PairSums(np.zeros(len(stored), np.int64), *(stored[:, i] for i in range(4))),
                PairSums(
                    np.zeros(len(new), np.int64),
                    new.source if upstream else new.target,
                    new.total,
                    new.total_abs,
                    new.prompt_count,
                ),
            ]
        )
        best = np.lexsort((found.target, -found.total_abs))[:limit]
        n_partners = len(found)
        rows = [
            (
                int(found.target[i]),
                int(found.total[i]),
                int(found.total_abs[i]),
                int(found.prompt_count[i]),
            )
            for i in best.tolist()
        ]
    return Partners(
        key=str(component),
        direction=direction,
        n_prompts=prompt_count(connection),
        n_partners=int(n_partners),
        partners=[
            Partner(
                key=layers.key_of(connection, other_id),
                total=total * ATTRIBUTION_UNIT,
                total_abs=total_abs * ATTRIBUTION_UNIT,
                prompt_count=count,
            )
            for other_id, total, total_abs, count in rows
        ],
    )


def edge_search(
    connection: Connection,
    layers: LayerCache,
    source: str,
    target: str,
    *,
    min_abs: float | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> EdgeSearchPage:
    """Prompts where an edge from component `source` to component `target` (at any positions)
    has |value| >= `min_abs` (the index floor when None), largest |value| first."""
    queries.check_limit(limit)
    keys = ComponentKey.parse(source), ComponentKey.parse(target)
    # Unknown components first: a well-formed request naming none of this database's components
    # is a 404 whatever its min_abs (the floor is this database's, the schema cannot state it).
    source_id, target_id = (_known(connection, layers, key) for key in keys)
    floor = edge_index_min_abs(connection)
    wanted = floor if min_abs is None else min_abs
    if not math.isfinite(wanted) or wanted < 0:
        raise queries.QueryError(f"min_abs must be a finite number >= 0, got {wanted}")
    if wanted < floor:
        raise queries.QueryError(
            f"min_abs {wanted:g} is below the edge index's floor {floor:g} (weaker edges are not "
            f"indexed): ask for {floor:g} or more, or rebuild the index with "
            "`locattr db aggregate --edge-min-abs <value>`"
        )
    after = _decode_edge_cursor(cursor)
    _check_connectable(connection, layers, *keys)
    check_fresh(connection)
    pending = corpus_deltas.pending(connection).strong
    entries = edge_postings.read_pair(connection, source_id, target_id, pending)
    entries = entries.take(np.abs(entries.values) >= wanted)
    magnitude = np.abs(entries.values).astype(np.float64)
    total = len(entries)
    if after is not None:
        later = (magnitude < after[0]) | ((magnitude == after[0]) & (entries.prompt_ids > after[1]))
        entries, magnitude = entries.take(later), magnitude[later]
    order = np.lexsort((entries.prompt_ids, -magnitude))  # strongest first, ties by id
    shown = entries.take(order[: limit + 1])
    rows: list[tuple[int, float, int, int]] = list(
        zip(
            shown.prompt_ids.tolist(),
            shown.values.tolist(),
            shown.source_positions.tolist(),
            shown.target_positions.tolist(),
            strict=True,
        )
    )
    page = paginate(rows, limit, lambda row: queries.encode_cursor("e", abs(row[1]), row[0]))
    info = {p.id: p for p in get_prompts(connection, [row[0] for row in page.items])}
    hits = [
        EdgeHit(
            prompt_id=prompt_id,
            max_abs=abs(value),
            value=value,
            source_position=source_position,
            target_position=target_position,
            preview=info[prompt_id].preview(),
            tokens=info[prompt_id].tokens,
        )
        for prompt_id, value, source_position, target_position in page.items
    ]
    return EdgeSearchPage(
        items=hits,
        next_cursor=page.next_cursor,
        source=str(keys[0]),
        target=str(keys[1]),
        min_abs=wanted,
        total=total,
    )


def _decode_edge_cursor(cursor: str | None) -> tuple[float, int] | None:
    if not cursor:
        return None
    values = queries.decode_cursor("e", cursor)
    if len(values) != 2 or not isinstance(values[1], int):
        raise queries.CursorError(f"invalid cursor {cursor!r}: not an edge-search cursor")
    return float(values[0]), values[1]


def _known(connection: Connection, layers: LayerCache, key: ComponentKey) -> int:
    component_id = layers.component_id(connection, key)
    if component_id is None:
        raise UnknownComponentError(
            f"no component {key} in this database (`locattr query components` and "
            "/api/components list them)"
        )
    return component_id


def _check_connectable(
    connection: Connection, layers: LayerCache, source: ComponentKey, target: ComponentKey
) -> None:
    """Edges run from a layer to a later one (in model order): refuse pairs that cannot."""
    slots = layers.slots(connection)
    if slots[source.layer].first_component_id >= slots[target.layer].first_component_id:
        raise queries.QueryError(
            f"no edge can run from {source} to {target}: edges go from a layer to a later one, "
            f"and {target.layer} does not come after {source.layer}"
        )
