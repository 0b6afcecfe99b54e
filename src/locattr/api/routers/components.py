"""Components: the most frequent ones, one component's statistics, activation contexts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import Connection

from locattr.api import schemas
from locattr.api.deps import DatabaseDep
from locattr.api.errors import ERROR_RESPONSES, NotFoundError
from locattr.api.routers.prompts import CursorParam, LimitParam
from locattr.storage import reads

router = APIRouter(prefix="/api", tags=["components"], responses=ERROR_RESPONSES)

COFIRING_SAMPLE = 200
COFIRING_LIMIT = 20
LayerParam = Annotated[str | None, Query(max_length=300, description="Only this layer.")]
KeyParam = Annotated[str, Path(max_length=320, description="Component key `layer:index`.")]


@router.get("/components", response_model=schemas.ComponentList)
async def list_components(
    database: DatabaseDep,
    layer: LayerParam = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> schemas.ComponentList:
    """Components that fire in stored prompts, most prompts first (ties by model order)."""

    def read(sync_connection: Connection) -> schemas.ComponentList:
        rows, next_cursor = reads.list_components(
            sync_connection, database.layers, layer=layer, limit=limit, cursor=cursor
        )
        return schemas.ComponentList(
            items=[schemas.Component.model_validate(row, from_attributes=True) for row in rows],
            count=reads.count_components(sync_connection, database.layers, layer=layer),
            next_cursor=next_cursor,
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
        return schemas.ComponentDetail(
            key=stats.key,
            prompt_count=stats.prompt_count,
            mean_max_ci=stats.mean_max_ci,
            max_max_ci=stats.max_max_ci,
            mean_ci=stats.mean_ci,
            top_prompt_ids=stats.top_prompt_ids,
            activation_context=context,
            cofiring=[schemas.Cofiring(key=k, prompts=n) for k, n in cofiring],
            cofiring_sample=min(COFIRING_SAMPLE, stats.prompt_count),
        )

    detail = await database.run(read)
    if detail is None:
        raise NotFoundError(f"no component {key} in this database (see /api/layers)")
    return detail


@router.get("/activation_contexts", response_model=schemas.ActivationContextPage)
async def list_activation_contexts(
    database: DatabaseDep,
    layer: LayerParam = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> schemas.ActivationContextPage:
    """Activation contexts in component order, a page at a time."""

    def read(sync_connection: Connection) -> schemas.ActivationContextPage:
        page, next_cursor = reads.activation_context_page(
            sync_connection, database.layers, layer=layer, limit=limit, cursor=cursor
        )
        return schemas.ActivationContextPage(
            items=[schemas.ActivationContextItem(key=k, context=v) for k, v in page.items()],
            count=reads.count_activation_contexts(sync_connection),
            next_cursor=next_cursor,
        )

    return await database.run(read)
