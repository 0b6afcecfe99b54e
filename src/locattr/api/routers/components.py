"""Components: the most frequent ones, one or many components' statistics, activation
contexts, co-firing and corpus attribution partners."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import Connection

from locattr.api import schemas
from locattr.api.deps import (
    ComponentCursorParam,
    DatabaseDep,
    IdCursorParam,
    KeyParam,
    LimitParam,
)
from locattr.api.errors import ERROR_RESPONSES, NotFoundError
from locattr.api.settings import MAX_KEY_LIST_CHARS
from locattr.storage import ComponentStats, corpus, reads
from locattr.storage.keys import key_list_pattern
from locattr.storage.queries import MAX_PAGE_SIZE, ComponentSort, QueryError
from locattr.storage.reads import DEFAULT_MIN_COUNT, CofiringOrder

router = APIRouter(tags=["components"], responses=ERROR_RESPONSES)

COFIRING_SAMPLE = 200
COFIRING_LIMIT = 20
PARTNERS_LIMIT = 20
MAX_DETAIL_KEYS = 500
MAX_DETAIL_EXAMPLES = 20
LayerParam = Annotated[str | None, Query(max_length=300, description="Only this layer.")]


@router.get("/components", response_model=schemas.ComponentList)
async def list_components(
    database: DatabaseDep,
    layer: LayerParam = None,
    limit: LimitParam = 100,
    cursor: ComponentCursorParam = None,
    sort: Annotated[
        ComponentSort,
        Query(
            description="Order: most prompts (`prompt_count`), highest dataset mean CI "
            "(`mean_ci`; components without one last) or highest max CI (`max_ci`)."
        ),
    ] = "prompt_count",
) -> schemas.ComponentList:
    """Components that fire in stored prompts, largest `sort` value first (ties by model
    order)."""

    def read(sync_connection: Connection) -> schemas.ComponentList:
        page = reads.list_components(
            sync_connection, database.layers, layer=layer, limit=limit, cursor=cursor, sort=sort
        )
        return schemas.ComponentList(
            items=[
                schemas.Component.model_validate(item, from_attributes=True) for item in page.items
            ],
            count=reads.count_components(sync_connection, database.layers, layer=layer),
            next_cursor=page.next_cursor,
        )

    return await database.run(read)


@router.get("/components/{key}", response_model=schemas.ComponentDetail)
async def get_component(
    database: DatabaseDep,
    key: KeyParam,
    top: Annotated[int, Query(ge=1, le=1000, description="How many top prompts.")] = 20,
) -> schemas.ComponentDetail:
    """How often and how strongly a component fires, where most, and its activation context."""

    def read(sync_connection: Connection) -> schemas.ComponentDetail | None:
        stats = reads.component_stats(sync_connection, database.layers, key, top_k=top)
        if stats is None:
            return None
        context = reads.activation_context(sync_connection, database.layers, key)
        cofiring = reads.cofiring_components(
            sync_connection, database.layers, key, sample=COFIRING_SAMPLE, limit=COFIRING_LIMIT
        )
        return component_detail(
            stats,
            context,
            [schemas.Cofiring(key=k, prompts=n) for k, n in cofiring],
            cofiring_sample=min(COFIRING_SAMPLE, stats.prompt_count),
        )

    detail = await database.run(read)
    if detail is None:
        raise NotFoundError(f"no component {key} in this database (see /api/layers)")
    return detail


@router.get("/components/{key}/cofiring", response_model=schemas.CofiringList)
async def get_cofiring(
    database: DatabaseDep,
    key: KeyParam,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="How many partners, best first.")
    ] = COFIRING_LIMIT,
    min_count: Annotated[
        int,
        Query(
            ge=1,
            le=2**31 - 1,
            description="Only partners firing in at least this many of the same prompts: "
            "lifts of partners seen once or twice are mostly chance.",
        ),
    ] = DEFAULT_MIN_COUNT,
    order: Annotated[
        CofiringOrder,
        Query(description="Rank partners by lift, by Jaccard index or by count (descending)."),
    ] = "lift",
) -> schemas.CofiringList:
    """The components that fire in the same prompts as this one, counted over every stored
    prompt. With N prompts in the database and n_A, n_B the prompts where the component and a
    partner fire, and count the prompts where both do: `lift = count × N / (n_A × n_B)` (1 when
    they fire independently) and `jaccard = count / (n_A + n_B − count)` (1 when they fire in
    exactly the same prompts). Best first by `order`; ties: larger count, then model order."""

    def read(sync_connection: Connection) -> schemas.CofiringList | None:
        found = reads.cofiring(
            sync_connection,
            database.layers,
            key,
            limit=limit,
            min_count=min_count,
            order=order,
        )
        if found is None:
            return None
        return schemas.CofiringList(
            key=found.key,
            prompt_count=found.prompt_count,
            n_prompts=found.n_prompts,
            order=order,
            min_count=min_count,
            n_partners=found.n_partners,
            items=[
                schemas.CofiringPartner.model_validate(partner, from_attributes=True)
                for partner in found.partners
            ],
        )

    listing = await database.run(read)
    if listing is None:
        raise NotFoundError(f"no component {key} in this database (see /api/layers)")
    return listing


@router.get("/components/{key}/partners", response_model=schemas.PartnerList)
async def get_partners(
    database: DatabaseDep,
    key: KeyParam,
    direction: Annotated[
        corpus.Direction,
        Query(
            description="`upstream`: the components sending attribution to this one (its edges' "
            "sources); `downstream`: those receiving it (its edges' targets)."
        ),
    ] = "upstream",
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="How many partners, strongest first.")
    ] = PARTNERS_LIMIT,
) -> schemas.PartnerList:
    """The components this one exchanges attribution with across the corpus (corpus
    attributions). For a partner B of component A: `total` is the sum, over every stored graph,
    of the values of the edges between A and B (at any positions; from B to A upstream, from A
    to B downstream), `total_abs` the sum of their |value|, and `prompt_count` the number of
    prompts whose graph has such an edge. Only component-to-component edges count (not those
    from input embeddings or to output tokens). Largest `total_abs` first; ties: model order.
    A database built before corpus attributions answers 409 until `locattr db aggregate` has
    run."""

    def read(sync_connection: Connection) -> schemas.PartnerList:
        found = corpus.partners(
            sync_connection, database.layers, key, direction=direction, limit=limit
        )
        return schemas.PartnerList(
            key=found.key,
            direction=direction,
            n_prompts=found.n_prompts,
            n_partners=found.n_partners,
            items=[
                schemas.Partner.model_validate(partner, from_attributes=True)
                for partner in found.partners
            ],
        )

    return await database.run(read)


@router.get("/component_details", response_model=schemas.ComponentDetails)
async def get_component_details(
    database: DatabaseDep,
    keys: Annotated[
        str,
        Query(
            max_length=MAX_KEY_LIST_CHARS,
            description=f"Comma-separated component keys `layer:index`, at most {MAX_DETAIL_KEYS}.",
            examples=["h.0.mlp.c_fc:3,h.1.attn.o_proj:7"],
            json_schema_extra={"pattern": key_list_pattern(MAX_DETAIL_KEYS)},
        ),
    ],
    examples: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_DETAIL_EXAMPLES,
            description="How many activation-context examples to keep, the strongest first.",
        ),
    ] = 5,
    top: Annotated[
        int,
        Query(ge=0, le=100, description="How many top prompts per component (0: none, fastest)."),
    ] = 20,
) -> schemas.ComponentDetails:
    """Many components at once, as `/api/components/{key}` answers each (what a hover card
    shows), for exports: one request and two queries instead of one request per component.

    Activation contexts keep their first `examples` examples; co-firing is left out.
    """
    listed = [key.strip() for key in keys.split(",") if key.strip()]
    if not listed:
        raise QueryError("give at least one component key 'layer:index' in `keys`")
    if len(listed) > MAX_DETAIL_KEYS:
        raise QueryError(f"at most {MAX_DETAIL_KEYS} components per request, got {len(listed)}")

    def read(sync_connection: Connection) -> schemas.ComponentDetails:
        found, unknown = reads.component_details(
            sync_connection, database.layers, listed, top_k=top, examples=examples
        )
        return schemas.ComponentDetails(
            items=[
                component_detail(item.stats, item.activation_context, [], cofiring_sample=0)
                for item in found
            ],
            unknown_components=unknown,
        )

    return await database.run(read)


def component_detail(
    stats: ComponentStats,
    context: dict[str, Any] | None,
    cofiring: list[schemas.Cofiring],
    *,
    cofiring_sample: int,
) -> schemas.ComponentDetail:
    return schemas.ComponentDetail(
        key=stats.key,
        prompt_count=stats.prompt_count,
        mean_max_ci=stats.mean_max_ci,
        max_max_ci=stats.max_max_ci,
        mean_ci=stats.mean_ci,
        top_prompt_ids=stats.top_prompt_ids,
        activation_context=context,
        cofiring=cofiring,
        cofiring_sample=cofiring_sample,
    )


@router.get("/activation_contexts", response_model=schemas.ActivationContextPage)
async def list_activation_contexts(
    database: DatabaseDep,
    layer: LayerParam = None,
    limit: LimitParam = 100,
    cursor: IdCursorParam = None,
) -> schemas.ActivationContextPage:
    """Activation contexts in component order, a page at a time."""

    def read(sync_connection: Connection) -> schemas.ActivationContextPage:
        page = reads.activation_context_page(
            sync_connection, database.layers, layer=layer, limit=limit, cursor=cursor
        )
        return schemas.ActivationContextPage(
            items=[schemas.ActivationContextItem(key=k, context=v) for k, v in page.items],
            count=reads.count_activation_contexts(sync_connection, database.layers, layer=layer),
            next_cursor=page.next_cursor,
        )

    return await database.run(read)
