"""Interventions on the held model: one prompt, or every prompt a search returns (streamed)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

import orjson
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from sqlalchemy import Connection

from locattr.api import schemas
from locattr.api.deps import DatabaseDep, ModelDep
from locattr.api.errors import NotFoundError
from locattr.api.model import (
    INTERACTIVE_RESPONSES,
    ComputeBusyError,
    ComputeTimeoutError,
    client_gone,
)
from locattr.api.routers.graphs import NOT_BLANK, TokenId, prompt_kind
from locattr.api.routers.search import MAX_SEARCH_KEYS
from locattr.api.settings import MAX_PROMPT_TOKENS, MAX_SEARCH_PROMPTS, MAX_TEXT_CHARS
from locattr.storage import reads
from locattr.storage.keys import KEY_PATTERN, MAX_KEY_CHARS, parse_keys
from locattr.storage.queries import Rank
from locattr.storage.records import PromptInfo, SearchHit

if TYPE_CHECKING:
    from locattr.compute.interventions import (
        Distribution,
        EffectAggregate,
        EffectSummary,
        PromptEffects,
    )

router = APIRouter(tags=["interactive"], responses=INTERACTIVE_RESPONSES)

MAX_TOP_TOKENS = 50
SEARCH_BATCH = 8
"""Prompts of one length run as one batch (one forward per model) in a search."""

Key = Annotated[str, Field(max_length=MAX_KEY_CHARS, json_schema_extra={"pattern": KEY_PATTERN})]


class InterventionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intervention: schemas.InterventionSpec
    top_k: int = Field(
        5, ge=1, le=MAX_TOP_TOKENS, description="Top tokens per position and model (at most "
        "the vocabulary)."
    )  # fmt: skip


class InterventionOnText(InterventionOptions):
    text: str = Field(
        min_length=1, max_length=MAX_TEXT_CHARS, json_schema_extra={"pattern": NOT_BLANK}
    )


class InterventionOnTokens(InterventionOptions):
    token_ids: list[TokenId] = Field(min_length=1, max_length=MAX_PROMPT_TOKENS)


class InterventionOnPrompt(InterventionOptions):
    prompt_id: int = Field(ge=1, le=2**62, description="A stored prompt's id.")


InterventionRequest = Annotated[
    Annotated[InterventionOnText, Tag("text")]
    | Annotated[InterventionOnTokens, Tag("token_ids")]
    | Annotated[InterventionOnPrompt, Tag("prompt_id")],
    Discriminator(
        prompt_kind,
        custom_error_type="prompt_missing",
        custom_error_message="send the prompt as `text`, `token_ids` or `prompt_id`",
    ),
]


class SearchQuery(BaseModel):
    """The parameters of `/api/search`, keys as lists."""

    model_config = ConfigDict(extra="forbid")

    components: list[Key] = Field(min_length=1, max_length=MAX_SEARCH_KEYS)
    mode: Literal["all", "any"] = "all"
    min_ci: float = Field(0.0, ge=0, le=1)
    same_position: bool = False
    exclude: list[Key] = Field(default_factory=list, max_length=MAX_SEARCH_KEYS)
    rank: Rank = "specificity"


class InterventionSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search: SearchQuery
    intervention: schemas.InterventionSpec
    limit: int = Field(
        50, ge=1, le=MAX_SEARCH_PROMPTS, description="Run on the first this many results."
    )


@router.post("/interventions", response_model=schemas.InterventionResult)
async def run_intervention(
    request: Request,
    database: DatabaseDep,
    host: ModelDep,
    body: Annotated[InterventionRequest, Body()],
) -> schemas.InterventionResult:
    """Ablate components (or keep only them), optionally at some positions, on one prompt
    (`text`, `token_ids` or a stored `prompt_id`): per position the top tokens of the target
    model, the CI-masked component model and the intervened model, and the change (intervened
    minus CI-masked) in log-probability of the token that follows and of the target's top
    token. Ablating nothing reproduces the CI-masked model."""
    runtime = host.runtime
    prompt_id: int | None = None
    match body:
        case InterventionOnText(text=text):
            ids, unknown = runtime.encode(text)
        case InterventionOnTokens(token_ids=token_ids):
            ids = list(token_ids)
            runtime.check_token_ids(ids)
            unknown = runtime.unknown_count(ids)
        case InterventionOnPrompt(prompt_id=prompt_id):
            ids = (await stored_prompt(database, prompt_id)).token_ids
            runtime.check_token_ids(ids)
            unknown = runtime.unknown_count(ids)
    spec = body.intervention
    intervention = runtime.intervention(spec.mode, spec.components, spec.positions, len(ids))
    [effects] = await host.queue.run(
        lambda: runtime.effects([ids], intervention, body.top_k),
        deadline=host.queue.deadline(),
        gone=client_gone(request),
    )
    return schemas.InterventionResult(
        prompt_id=prompt_id,
        tokens=runtime.tokens(ids),
        token_ids=ids,
        unknown_tokens=unknown,
        intervention=applied(spec),
        positions=position_effects(effects, runtime.vocabulary),
    )


async def stored_prompt(database: DatabaseDep, prompt_id: int) -> PromptInfo:
    found = await database.run(lambda connection: reads.get_prompts(connection, [prompt_id]))
    if not found:
        raise NotFoundError(f"no prompt {prompt_id} in this database (see /api/prompts)")
    return found[0]


def applied(spec: schemas.InterventionSpec) -> schemas.InterventionSpec:
    """The intervention as run: keys normalised and de-duplicated, positions sorted."""
    return schemas.InterventionSpec(
        mode=spec.mode,
        components=[str(key) for key in parse_keys(spec.components)],
        positions=None if spec.positions is None else sorted(set(spec.positions)),
    )


def position_effects(effects: PromptEffects, vocabulary: list[str]) -> list[schemas.PositionEffect]:
    def top(ids: Sequence[int], probs: Sequence[float]) -> list[schemas.TokenProb]:
        return [
            schemas.TokenProb(token=vocabulary[i], token_id=i, prob=p)
            for i, p in zip(ids, probs, strict=True)
        ]

    tops = [
        (side.token_ids.tolist(), side.probs.tolist())
        for side in (effects.target, effects.spd, effects.intervened)
    ]
    nexts = effects.delta_logprob_next.tolist()
    return [
        schemas.PositionEffect(
            pos=pos,
            target=top(tops[0][0][pos], tops[0][1][pos]),
            spd=top(tops[1][0][pos], tops[1][1][pos]),
            intervened=top(tops[2][0][pos], tops[2][1][pos]),
            delta_logprob_next=nexts[pos] if pos < len(nexts) else None,
            delta_logprob_top=top_delta,
        )
        for pos, top_delta in enumerate(effects.delta_logprob_top.tolist())
    ]


class NDJSONResponse(JSONResponse):
    """Declares the search's stream in the OpenAPI document: each line one JSON value of the
    response model (the endpoint returns a `StreamingResponse` of this media type)."""

    media_type = "application/x-ndjson"


def json_errors(
    responses: dict[int | str, dict[str, object]],
) -> dict[int | str, dict[str, object]]:
    """Error responses that stay `application/json` on a route whose 200 is not."""
    return {
        status: {
            "description": response["description"],
            "content": {"application/json": {"schema": {"$ref": ERROR_BODY_REF}}},
        }
        for status, response in responses.items()
    }


ERROR_BODY_REF = "#/components/schemas/ErrorBody"


@router.post(
    "/interventions/search",
    response_class=NDJSONResponse,
    response_model=schemas.InterventionSearchEvent,
    responses={
        200: {
            "description": "Newline-delimited JSON, one `InterventionSearchEvent` per line: "
            "`start`, then one `prompt` line per prompt as it is done, then `done` (or `error` "
            "when the time limit stopped it) with the aggregate."
        },
        **json_errors(INTERACTIVE_RESPONSES),
    },
)
async def run_intervention_search(
    database: DatabaseDep,
    host: ModelDep,
    body: InterventionSearchRequest,
) -> StreamingResponse:
    """One intervention over the prompts a search returns (the first `limit`, best first):
    per prompt the mean and worst change in log-probability of the next token (and of the
    target's top token) at the positions where the searched components fire, and whether the
    top-1 token changed there, each as `/api/interventions` measures it; then the aggregate
    over prompts (mean and quantiles, share whose top-1 changed). Streamed as NDJSON with
    progress; a client that disconnects stops it."""
    from locattr.compute.interventions import aggregate, summarize

    runtime = host.runtime
    spec = body.intervention
    intervention = runtime.intervention(spec.mode, spec.components, spec.positions, None)
    query = body.search

    def read(connection: Connection) -> tuple[list[SearchHit], int, list[str], list[PromptInfo]]:
        page = reads.search(
            connection,
            database.layers,
            query.components,
            require_all=query.mode == "all",
            limit=body.limit,
            cursor=None,
            min_ci=query.min_ci,
            same_position=query.same_position,
            exclude=query.exclude,
            rank=query.rank,
        )
        prompts = reads.get_prompts(connection, [hit.prompt_id for hit in page.hits])
        return page.hits, page.total, page.unknown_keys, prompts

    hits, matching, unknown, prompts = await database.run(read)
    token_ids = {prompt.id: prompt.token_ids for prompt in prompts}
    for ids in token_ids.values():
        runtime.check_token_ids(ids)
    if hits and host.queue.waiting >= host.queue.max_waiting:
        raise ComputeBusyError(
            f"the model is busy: {host.queue.waiting} requests are waiting for it; retry shortly",
            host.queue.retry_after_s(),
        )
    deadline = host.queue.deadline()

    async def lines() -> AsyncIterator[bytes]:
        total = len(hits)
        yield line(schemas.SearchStarted(
            type="start", total=total, matching=matching, unknown_components=unknown
        ))  # fmt: skip
        summaries: list[EffectSummary] = []
        for batch in equal_length_runs(hits, token_ids):
            try:
                effects = await host.queue.run(
                    lambda batch=batch: runtime.effects(
                        [token_ids[hit.prompt_id] for hit in batch], intervention, 1
                    ),
                    deadline=deadline,
                    queued=True,
                )
            except ComputeTimeoutError as error:
                failed = schemas.SearchFailed(
                    type="error",
                    error="compute_timeout",
                    detail=f"{error} ({len(summaries)} of {total} prompts done)",
                    aggregate=aggregate_body(aggregate(summaries)),
                )
                yield line(failed)
                return
            for hit, found in zip(batch, effects, strict=True):
                positions = sorted({p for match in hit.matches.values() for p in match.positions})
                summary = summarize(found, positions)
                summaries.append(summary)
                yield line(summary_body(hit, summary, len(summaries), total, found))
            if time.monotonic() > deadline and len(summaries) < total:
                detail = (
                    f"the search ran past the server's time limit ({host.queue.timeout_s:g} s): "
                    f"{len(summaries)} of {total} prompts done; lower `limit`"
                )
                yield line(schemas.SearchFailed(
                    type="error", error="compute_timeout", detail=detail,
                    aggregate=aggregate_body(aggregate(summaries)),
                ))  # fmt: skip
                return
        yield line(
            schemas.SearchFinished(type="done", aggregate=aggregate_body(aggregate(summaries)))
        )

    return StreamingResponse(lines(), media_type=NDJSONResponse.media_type)


def equal_length_runs(
    hits: list[SearchHit], token_ids: dict[int, list[int]]
) -> list[list[SearchHit]]:
    """Consecutive hits (rank order kept) of one length, at most `SEARCH_BATCH` each."""
    runs: list[list[SearchHit]] = []
    for hit in hits:
        length = len(token_ids[hit.prompt_id])
        last = runs[-1] if runs else None
        if last and len(last) < SEARCH_BATCH and len(token_ids[last[0].prompt_id]) == length:
            last.append(hit)
        else:
            runs.append([hit])
    return runs


def line(event: BaseModel) -> bytes:
    return orjson.dumps(event.model_dump()) + b"\n"


def summary_body(
    hit: SearchHit, summary: EffectSummary, done: int, total: int, effects: PromptEffects
) -> schemas.PromptEffectSummary:
    return schemas.PromptEffectSummary(
        type="prompt",
        done=done,
        total=total,
        prompt_id=hit.prompt_id,
        preview=hit.preview,
        n_tokens=len(effects.delta_logprob_top),
        positions=list(summary.positions),
        mean_delta_logprob_next=summary.mean_delta_logprob_next,
        worst_delta_logprob_next=summary.worst_delta_logprob_next,
        mean_delta_logprob_top=summary.mean_delta_logprob_top,
        worst_delta_logprob_top=summary.worst_delta_logprob_top,
        top1_changed=summary.top1_changed,
    )


def aggregate_body(found: EffectAggregate) -> schemas.InterventionAggregate:
    return schemas.InterventionAggregate(
        n_prompts=found.n_prompts,
        mean_delta_logprob_next=distribution_body(found.mean_delta_logprob_next),
        worst_delta_logprob_next=distribution_body(found.worst_delta_logprob_next),
        mean_delta_logprob_top=distribution_body(found.mean_delta_logprob_top),
        share_top1_changed=found.share_top1_changed,
    )


def distribution_body(found: Distribution | None) -> schemas.EffectDistribution | None:
    if found is None:
        return None
    low, p05, p25, p50, p75, p95, high = found.quantiles
    return schemas.EffectDistribution(
        n=found.n, mean=found.mean, min=low, p05=p05, p25=p25, p50=p50, p75=p75, p95=p95, max=high
    )
