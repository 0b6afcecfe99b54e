"""Prompts: the list, and one prompt with its pruned graph."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import Connection

from locattr.api import schemas
from locattr.api.deps import DatabaseDep, IdCursorParam, LimitParam
from locattr.api.errors import ERROR_RESPONSES, NotFoundError
from locattr.api.settings import MAX_QUERY_CHARS
from locattr.graph import OUTPUT_LAYER, Graph
from locattr.pruning import Normalize, PrunedGraph, prune_graph
from locattr.storage import decode_graph, reads
from locattr.storage.records import GraphComponentStats, PromptInfo

router = APIRouter(tags=["prompts"], responses=ERROR_RESPONSES)

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
    limit: LimitParam = 100,
    cursor: IdCursorParam = None,
    start: Annotated[
        int | None,
        Query(ge=1, le=2**62, description="Start at this prompt id (ignored with a cursor)."),
    ] = None,
) -> schemas.PromptPage:
    """Prompts in id order, a page at a time (from the first, or from `start`)."""

    def read(sync_connection: Connection) -> schemas.PromptPage:
        page = reads.list_prompts(
            sync_connection, limit=limit, cursor=cursor, after_id=start - 1 if start else 0
        )
        return schemas.PromptPage(
            items=[summary(info) for info in page.items],
            count=reads.prompt_count(sync_connection),
            next_cursor=page.next_cursor,
        )

    return await database.run(read)


@router.get("/prompt/{prompt_id}", response_model=schemas.PromptGraph)
async def get_prompt_graph(
    database: DatabaseDep,
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
) -> Response:
    """A prompt's tokens and its graph, pruned on the server."""
    layer_filter = {name.strip() for name in layers.split(",") if name.strip()} if layers else None

    def read(sync_connection: Connection) -> Response | None:
        found = reads.get_prompt_with_graph(sync_connection, prompt_id)
        if found is None:
            return None
        info, blob = found
        graph = decode_graph(blob) if blob is not None else Graph.empty()
        pruned = prune_graph(
            graph, top_k=top_k, min_abs=min_abs, normalize=normalize, layers=layer_filter
        )
        stats = (
            reads.graph_component_stats(sync_connection, database.layers, pruned.graph)
            if pruned.graph.n_nodes
            else GraphComponentStats({}, {})
        )
        vocabulary = database.vocabulary(sync_connection)
        return prompt_graph(info, graph, pruned, normalize, stats, vocabulary)

    response = await database.run(read)  # decoding and pruning too (SQLite: off the event loop)
    if response is None:
        raise NotFoundError(f"no prompt {prompt_id} in this database (see /api/prompts)")
    return response


def output_tokens(graph: Graph, vocabulary: list[str] | None) -> dict[str, str]:
    """Token id -> text for the graph's `output` nodes (empty without a stored vocabulary)."""
    if vocabulary is None or OUTPUT_LAYER not in graph.layers:
        return {}
    ids = graph.node_component[graph.node_layer == graph.layers.index(OUTPUT_LAYER)]
    return {str(i): vocabulary[i] for i in sorted(set(ids.tolist())) if 0 <= i < len(vocabulary)}


def prompt_graph(
    info: PromptInfo,
    graph: Graph,
    pruned: PrunedGraph,
    normalize: Normalize,
    stats: GraphComponentStats,
    vocabulary: list[str] | None,
) -> Response:
    """The `schemas.PromptGraph` body, built as plain lists and dicts and serialised by orjson:
    a model object per node and edge costs several times more than the rest of the request.
    The tests check that this body validates as `schemas.PromptGraph` field for field."""
    kept = pruned.graph
    body = {
        "output_tokens": output_tokens(kept, vocabulary),
        "id": info.id,
        "tokens": info.tokens,
        "token_ids": info.token_ids,
        "source": info.source,
        "nodes": [
            {"layer": kept.layers[layer], "pos": pos, "component": component, "ci": ci}
            for layer, pos, component, ci in zip(
                kept.node_layer.tolist(),
                kept.node_pos.tolist(),
                kept.node_component.tolist(),
                kept.node_ci.tolist(),
                strict=True,
            )
        ],
        "edges": [
            {"source": source, "target": target, "value": value}
            for source, target, value in zip(
                kept.edge_source.tolist(),
                kept.edge_target.tolist(),
                kept.edge_value.tolist(),
                strict=True,
            )
        ],
        "n_nodes_total": graph.n_nodes,
        "n_edges_total": graph.n_edges,
        "n_edges_dropped": pruned.n_edges_dropped,
        "normalize": normalize,
        "mean_ci": stats.mean_ci,
        "prompt_counts": stats.prompt_count,
    }
    return Response(orjson.dumps(body), media_type="application/json")
