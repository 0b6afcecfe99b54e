"""Prompts: the list, and one prompt with its pruned graph."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import Connection

from locattr.api import schemas
from locattr.api.deps import ConnectionDep, DatabaseDep
from locattr.api.errors import ERROR_RESPONSES, NotFoundError
from locattr.api.settings import MAX_QUERY_CHARS
from locattr.pruning import Normalize, prune_graph
from locattr.storage import decode_graph, queries, reads
from locattr.storage.records import PromptInfo

router = APIRouter(prefix="/api", tags=["prompts"], responses=ERROR_RESPONSES)

LimitParam = Annotated[int, Query(ge=1, le=queries.MAX_PAGE_SIZE, description="Page size.")]
CursorParam = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
]
MAX_TOP_K = 100_000


def summary(info: PromptInfo) -> schemas.PromptSummary:
    return schemas.PromptSummary(
        id=info.id,
        preview=info.preview(),
        n_tokens=len(info.tokens),
        n_nodes=info.n_nodes,
        n_edges=info.n_edges,
        has_graph=info.has_graph,
    )


@router.get("/prompts", response_model=schemas.PromptPage)
async def list_prompts(
    database: DatabaseDep,
    connection: ConnectionDep,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> schemas.PromptPage:
    """Prompts in id order, a page at a time."""
    after = queries.decode_id_cursor(cursor)

    def read(sync_connection: Connection) -> schemas.PromptPage:
        page = reads.list_prompts(sync_connection, after_id=after, limit=limit + 1)
        return schemas.PromptPage(
            items=[summary(info) for info in page[:limit]],
            count=reads.prompt_count(sync_connection),
            next_cursor=queries.encode_id_cursor(page[limit - 1].id) if len(page) > limit else None,
        )

    return await database.run(connection, read)


@router.get("/prompt/{prompt_id}", response_model=schemas.PromptGraph)
async def get_prompt_graph(
    database: DatabaseDep,
    connection: ConnectionDep,
    prompt_id: Annotated[int, Path(ge=1, le=2**62)],
    top_k: Annotated[
        int, Query(ge=1, le=MAX_TOP_K, description="Keep this many strongest edges.")
    ] = 1000,
    min_abs: Annotated[
        float, Query(ge=0, description="Drop edges weaker than this (after normalising).")
    ] = 0.0,
    normalize: Annotated[
        Normalize, Query(description="Divide by the norm of each target's incoming edges.")
    ] = "none",
    layers: Annotated[
        str | None,
        Query(
            max_length=MAX_QUERY_CHARS, description="Comma-separated layers to keep (default all)."
        ),
    ] = None,
) -> schemas.PromptGraph:
    """A prompt's tokens and its graph, pruned on the server."""

    def read(sync_connection: Connection) -> tuple[list[PromptInfo], bytes | None]:
        found = reads.get_prompts(sync_connection, [prompt_id])
        return found, reads.get_graph_blob(sync_connection, prompt_id) if found else None

    found, blob = await database.run(connection, read)
    if not found:
        raise NotFoundError(f"no prompt {prompt_id} in this database (see /api/prompts)")
    info = found[0]
    layer_filter = {name.strip() for name in layers.split(",") if name.strip()} if layers else None
    if blob is None:
        nodes: list[schemas.Node] = []
        edges: list[schemas.Edge] = []
        n_nodes = n_edges = dropped = 0
    else:
        graph = decode_graph(blob)
        pruned = prune_graph(
            graph, top_k=top_k, min_abs=min_abs, normalize=normalize, layers=layer_filter
        )
        kept = pruned.graph
        nodes = [schemas.Node(**node._asdict()) for node in kept.nodes]
        edges = [
            schemas.Edge(source=s, target=t, value=v)
            for s, t, v in zip(
                kept.edge_source.tolist(),
                kept.edge_target.tolist(),
                kept.edge_value.tolist(),
                strict=True,
            )
        ]
        n_nodes, n_edges, dropped = graph.n_nodes, graph.n_edges, pruned.n_edges_dropped
    return schemas.PromptGraph(
        id=info.id,
        tokens=info.tokens,
        token_ids=info.token_ids,
        source=info.source,
        nodes=nodes,
        edges=edges,
        n_nodes_total=n_nodes,
        n_edges_total=n_edges,
        n_edges_dropped=dropped,
        normalize=normalize,
    )
