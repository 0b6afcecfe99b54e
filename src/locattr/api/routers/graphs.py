"""Graphs for prompts that need not be stored, computed by the model the server holds; and what
that model is (`GET /api/model`)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from sqlalchemy import Connection

from locattr.api import schemas
from locattr.api.deps import DatabaseDep, ModelDep
from locattr.api.errors import ERROR_RESPONSES
from locattr.api.model import INTERACTIVE_RESPONSES, client_gone
from locattr.api.routers.prompts import MAX_TOP_K, prompt_graph
from locattr.api.settings import (
    MAX_INTERVENTION_KEYS,
    MAX_PROMPT_TOKENS,
    MAX_QUERY_CHARS,
    MAX_TEXT_CHARS,
)
from locattr.pruning import Normalize, prune_graph
from locattr.storage import reads
from locattr.storage.records import GraphComponentStats, PromptInfo

router = APIRouter(tags=["interactive"], responses=INTERACTIVE_RESPONSES)
model_router = APIRouter(tags=["interactive"], responses=ERROR_RESPONSES)

TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
NOT_BLANK = r"\S"  # declared for clients; a blank text is refused with a sentence of our own


class GraphOptions(BaseModel):
    """The pruning parameters of `/api/prompt/{id}`, and the thresholds to compute with."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(1000, ge=1, le=MAX_TOP_K, description="Keep this many strongest edges.")
    min_abs: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Drop edges weaker than this (normalised)."
    )
    normalize: Normalize = Field(
        "none", description="Divide by the norm of each target's incoming edges."
    )
    layers: list[Annotated[str, Field(max_length=MAX_QUERY_CHARS)]] | None = Field(
        None, max_length=1000, description="Layers to keep (default all)."
    )
    ci_threshold: float | None = Field(
        None,
        ge=1e-6,
        le=1,
        description="Nodes are the components with CI at least this (default: the database's).",
    )
    attr_threshold: float | None = Field(
        None,
        ge=1e-6,
        allow_inf_nan=False,
        description="Edges are kept with |value| at least this (default: the database's).",
    )


class GraphOfText(GraphOptions):
    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="The prompt, tokenized as locattr-generate tokenizes text prompts.",
        json_schema_extra={"pattern": NOT_BLANK},
    )


class GraphOfTokens(GraphOptions):
    token_ids: list[TokenId] = Field(min_length=1, max_length=MAX_PROMPT_TOKENS)


def prompt_kind(body: Any) -> str | None:
    """Which prompt field a body sends, so only that variant is validated (and its errors
    alone reported)."""
    if isinstance(body, dict):
        return next((k for k in ("text", "token_ids", "prompt_id") if k in body), None)
    return None


PROMPT_MISSING = "send the prompt as `text` or `token_ids`"
GraphRequest = Annotated[
    Annotated[GraphOfText, Tag("text")] | Annotated[GraphOfTokens, Tag("token_ids")],
    Discriminator(
        prompt_kind, custom_error_type="prompt_missing", custom_error_message=PROMPT_MISSING
    ),
]


@model_router.get("/model", response_model=schemas.ServerModel)
async def get_model_info(request: Request) -> schemas.ServerModel:
    """The model this server holds for `POST /api/graphs` and `/api/interventions` (null when
    it was started without `--model`), with its limits and load."""
    host = request.app.state.model
    if host is None:
        return schemas.ServerModel(model=None)
    runtime = host.runtime
    defaults = runtime.graph_settings(host.meta, None, None)
    return schemas.ServerModel(
        model=schemas.ModelInfo(
            run=runtime.model,
            device=runtime.device,
            n_ctx=runtime.n_ctx,
            vocab_size=runtime.vocab_size,
            layers=[
                schemas.LayerInfo(name=name, n_components=size)
                for name, size in runtime.layer_sizes.items()
            ],
            ci_threshold=defaults.ci_threshold,
            attr_threshold=defaults.attr_threshold,
            max_keys=MAX_INTERVENTION_KEYS,
            max_text_chars=MAX_TEXT_CHARS,
            waiting=host.queue.waiting,
            queue_limit=host.queue.max_waiting,
            cache_entries=len(host.cache),
            cache_bytes=host.cache.size_bytes,
            cache_max_bytes=host.cache.max_bytes,
        )
    )


@router.post("/graphs", response_model=schemas.ComputedGraph)
async def post_graph(
    request: Request,
    database: DatabaseDep,
    host: ModelDep,
    body: Annotated[GraphRequest, Body()],
) -> Response:
    """The graph of a prompt of your own (`text` or `token_ids`), computed by the held model
    with the database's recorded thresholds and nodes (unless given), pruned as
    `/api/prompt/{id}` prunes: the same response, with `id` 0. Nothing is stored; recent graphs
    are kept in a cache bounded in bytes, keyed by tokens and thresholds."""
    runtime = host.runtime
    if isinstance(body, GraphOfText):
        ids, unknown = runtime.encode(body.text)
        source: dict[str, Any] = {"kind": "text", "text": body.text}
    else:
        ids = list(body.token_ids)
        runtime.check_token_ids(ids)
        unknown = runtime.unknown_count(ids)
        source = {"kind": "token_ids"}
    settings = runtime.graph_settings(host.meta, body.ci_threshold, body.attr_threshold)
    key = (tuple(ids), settings)
    graph = host.cache.get(key)
    cached = graph is not None
    if graph is None:
        graph = await host.queue.run(
            lambda: runtime.graph(ids, settings),
            deadline=host.queue.deadline(),
            gone=client_gone(request),
        )
        host.cache.put(key, graph)
    info = PromptInfo(
        id=0,
        identity="",
        token_ids=ids,
        tokens=runtime.tokens(ids),
        source=source,
        n_nodes=graph.n_nodes,
        n_edges=graph.n_edges,
        has_graph=True,
    )
    layer_filter = set(body.layers) if body.layers is not None else None

    def read(sync_connection: Connection) -> Response:
        pruned = prune_graph(
            graph, top_k=body.top_k, min_abs=body.min_abs, normalize=body.normalize,
            layers=layer_filter,
        )  # fmt: skip
        stats = (
            reads.graph_component_stats(sync_connection, database.layers, pruned.graph)
            if pruned.graph.n_nodes
            else GraphComponentStats({}, {})
        )
        return prompt_graph(info, graph, pruned, body.normalize, stats, runtime.vocabulary)

    response = await database.run(read)  # pruning too, off the event loop
    extra = {
        "unknown_tokens": unknown,
        "ci_threshold": settings.ci_threshold,
        "attr_threshold": settings.attr_threshold,
        "cached": cached,
    }
    return with_fields(response, extra)


def with_fields(response: Response, extra: dict[str, Any]) -> Response:
    """`response`'s JSON object with more fields: `prompt_graph` builds the body as orjson
    bytes, `{...}`, so the new fields are spliced in before its closing brace rather than the
    whole body parsed and written again."""
    body = bytes(response.body)
    assert body.startswith(b"{") and body.endswith(b"}") and extra
    joiner = b"," if body != b"{}" else b""
    spliced = body[:-1] + joiner + orjson.dumps(extra)[1:]
    return Response(spliced, media_type="application/json")
