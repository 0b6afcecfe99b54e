"""Search: prompts where all (or any) of a set of components fire, and none of another set;
prompts where one component drives another (the edge index)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Response
from sqlalchemy import Connection

from locattr.api import schemas
from locattr.api.deps import DatabaseDep, EdgeCursorParam, LimitParam, SearchCursorParam
from locattr.api.errors import ERROR_RESPONSES
from locattr.api.settings import MAX_QUERY_CHARS
from locattr.storage import SearchPage, corpus, reads
from locattr.storage.edge_rows import EDGE_INDEX_MIN_ABS
from locattr.storage.keys import KEY_PATTERN, MAX_KEY_CHARS, key_list_pattern
from locattr.storage.queries import QueryError, Rank

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)

MAX_SEARCH_KEYS = 64
RANK_DESCRIPTION = (
    "How prompts are scored, highest first (ties: lower prompt id). `specificity`: the sum over "
    "the queried components present in the prompt of `ci_sum × idf`, where `ci_sum` is the "
    "component's CI summed over the positions where it fires in the prompt and "
    "`idf = ln(1 + N / n)` (N prompts in the database, n prompts where the component fires): "
    "no ceiling at CI 1, and rare components weigh more. `max_ci`: the sum of the queried "
    "components' largest CI in the prompt (at most 1 each)."
)


@router.get("/search", response_model=schemas.SearchResults)
async def search_prompts(
    database: DatabaseDep,
    components: Annotated[
        str,
        Query(
            max_length=MAX_QUERY_CHARS,
            description=f"Comma-separated component keys `layer:index`, at most {MAX_SEARCH_KEYS}.",
            examples=["h.0.mlp.c_fc:3,h.1.attn.o_proj:7"],
            json_schema_extra={"pattern": key_list_pattern(MAX_SEARCH_KEYS)},
        ),
    ],
    mode: Annotated[
        Literal["all", "any"], Query(description="Prompts with all of the components, or any.")
    ] = "all",
    min_ci: Annotated[
        float,
        Query(ge=0, le=1, description="Count a component only where its max CI reaches this."),
    ] = 0.0,
    same_position: Annotated[
        bool, Query(description="Only prompts where all components fire at one common position.")
    ] = False,
    exclude: Annotated[
        str,
        Query(
            max_length=MAX_QUERY_CHARS,
            description=f"Comma-separated component keys, at most {MAX_SEARCH_KEYS}: leave out "
            "prompts where any of them fires (with max CI ≥ `min_ci`, as the queried ones). "
            "Unknown keys exclude nothing and are listed in `unknown_components`; a key both "
            "queried and excluded is an error.",
            examples=["h.0.mlp.down_proj:5"],
            json_schema_extra={"pattern": key_list_pattern(MAX_SEARCH_KEYS, min_keys=0)},
        ),
    ] = "",
    rank: Annotated[Rank, Query(description=RANK_DESCRIPTION)] = "specificity",
    limit: LimitParam = 50,
    cursor: SearchCursorParam = None,
) -> Response:
    """Ranked prompts where the components fire and the excluded ones do not (see `rank`)."""
    keys = [key.strip() for key in components.split(",") if key.strip()]
    excluded = list(dict.fromkeys(key.strip() for key in exclude.split(",") if key.strip()))
    if not keys:
        raise QueryError("give at least one component key 'layer:index' in `components`")
    if len(keys) > MAX_SEARCH_KEYS:
        raise QueryError(f"at most {MAX_SEARCH_KEYS} components per search, got {len(keys)}")
    if len(excluded) > MAX_SEARCH_KEYS:
        raise QueryError(
            f"at most {MAX_SEARCH_KEYS} excluded components per search, got {len(excluded)}"
        )

    def read(sync_connection: Connection) -> Response:
        page = reads.search(
            sync_connection,
            database.layers,
            keys,
            require_all=mode == "all",
            limit=limit,
            cursor=cursor,
            min_ci=min_ci,
            same_position=same_position,
            exclude=excluded,
            rank=rank,
        )
        return search_body(list(dict.fromkeys(keys)), mode, page, excluded)

    return await database.run(read)


def search_body(query: list[str], mode: str, page: SearchPage, exclude: list[str]) -> Response:
    """The `schemas.SearchResults` body, built as plain lists and dicts and serialised by
    orjson: validating and serialising it through the model cost about 1 ms of a 7 ms search.
    The tests check that this body validates as `schemas.SearchResults` field for field."""
    body = {
        "query": query,
        "mode": mode,
        "count": page.total,
        "results": [
            {
                "id": hit.prompt_id,
                "score": hit.score,
                "preview": hit.preview,
                "tokens": hit.tokens,
                "matches": {
                    key: {
                        "max_ci": match.max_ci,
                        "positions": match.positions,
                        "ci_sum": match.ci_sum,
                    }
                    for key, match in hit.matches.items()
                },
            }
            for hit in page.hits
        ],
        "next_cursor": page.next_cursor,
        "unknown_components": page.unknown_keys,
        "rank": page.rank,
        "exclude": exclude,
        "idf": page.idf,
    }
    return Response(orjson.dumps(body), media_type="application/json")


def _edge_end(role: str) -> Any:
    return Query(
        max_length=MAX_KEY_CHARS,
        description=f"The {role} component's key `layer:index`.",
        json_schema_extra={"pattern": KEY_PATTERN},
    )


@router.get("/search/edges", response_model=schemas.EdgeSearchResults)
async def search_edges(
    database: DatabaseDep,
    source: Annotated[str, _edge_end("source (earlier layer)")],
    target: Annotated[str, _edge_end("target (later layer)")],
    min_abs: Annotated[
        float | None,
        Query(
            ge=0,
            allow_inf_nan=False,
            description="Only prompts where the strongest edge from `source` to `target` has "
            "|value| at least this; at least the edge index's floor (`edge_index_min_abs` in "
            f"`/api/meta`, {EDGE_INDEX_MIN_ABS:g} unless the database was aggregated with "
            "another), which is also the default.",
        ),
    ] = None,
    limit: LimitParam = 50,
    cursor: EdgeCursorParam = None,
) -> schemas.EdgeSearchResults:
    """Prompts where component `source` drives component `target`: an edge from one to the
    other (at any positions) with |value| ≥ `min_abs`, read from the edge index, which keeps
    per prompt and component pair the strongest edge when its |value| reaches the floor (weaker
    edges are not indexed: rebuild it with `locattr db aggregate --edge-min-abs X` to go lower).
    Each result gives that strongest edge: its |value| (`max_abs`), signed value and positions.
    Largest `max_abs` first; ties: lower prompt id. A database built before the edge index
    answers 409 until `locattr db aggregate` has run."""

    def read(sync_connection: Connection) -> schemas.EdgeSearchResults:
        page = corpus.edge_search(
            sync_connection,
            database.layers,
            source,
            target,
            min_abs=min_abs,
            limit=limit,
            cursor=cursor,
        )
        return schemas.EdgeSearchResults(
            source=page.source,
            target=page.target,
            min_abs=page.min_abs,
            total=page.total,
            next_cursor=page.next_cursor,
            results=[
                schemas.EdgeHit(
                    id=hit.prompt_id,
                    max_abs=hit.max_abs,
                    value=hit.value,
                    source_position=hit.source_position,
                    target_position=hit.target_position,
                    preview=hit.preview,
                    tokens=hit.tokens,
                )
                for hit in page.hits
            ],
        )

    return await database.run(read)
