"""Response models: every endpoint returns one of these (FastAPI serialises them fastest)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from locattr.api.settings import MAX_INTERVENTION_KEYS, MAX_POSITION
from locattr.storage.keys import KEY_PATTERN, MAX_KEY_CHARS


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: what was wrong and what is accepted."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "malformed_component_key",
                    "detail": "malformed component key 'x:abc': expected 'layer:index', "
                    "e.g. 'h.0.attn.q_proj:5'",
                }
            ]
        }
    )

    error: str = Field(description="A stable machine-readable error code.")
    detail: str = Field(description="A sentence for people: what was wrong, what to do.")


class Health(BaseModel):
    status: Literal["ok"]
    prompt_count: int


class LayerInfo(BaseModel):
    name: str
    n_components: int


class Meta(BaseModel):
    """The database's provenance (run, thresholds, versions, ...) and its shape."""

    prompt_count: int
    layers: list[LayerInfo]
    meta: dict[str, Any] = Field(description="Provenance written by locattr-generate.")
    schema_revision: str
    locattr_version: str


class PromptSummary(BaseModel):
    id: int
    preview: str = Field(description="The prompt's text, shortened.")
    n_tokens: int
    n_nodes: int
    n_edges: int
    has_graph: bool


class PromptPage(BaseModel):
    items: list[PromptSummary]
    count: int = Field(description="Number of prompts in the database.")
    next_cursor: str | None


class Node(BaseModel):
    layer: str
    pos: int
    component: int
    ci: float


class Edge(BaseModel):
    source: int = Field(description="Index into `nodes` of the source (earlier layer).")
    target: int = Field(description="Index into `nodes` of the target.")
    value: float = Field(description="Attribution (normalised when `normalize` is not none).")


class PromptGraph(BaseModel):
    """One prompt with its pruned graph: nodes touched by the kept edges, strongest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "tokens": ["Once", " upon"],
                    "token_ids": [5, 6],
                    "source": {"dataset": "demo", "index": 0},
                    "nodes": [
                        {"layer": "h.0.mlp.c_fc", "pos": 1, "component": 3, "ci": 0.75},
                        {"layer": "h.0.mlp.down_proj", "pos": 1, "component": 5, "ci": 0.5},
                    ],
                    "edges": [{"source": 0, "target": 1, "value": -0.125}],
                    "n_nodes_total": 2,
                    "n_edges_total": 1,
                    "n_edges_dropped": 0,
                    "normalize": "none",
                }
            ]
        }
    )

    id: int
    tokens: list[str]
    token_ids: list[int]
    source: dict[str, Any]
    nodes: list[Node]
    edges: list[Edge]
    n_nodes_total: int = Field(description="Alive nodes in the stored graph.")
    n_edges_total: int = Field(description="Edges in the stored graph.")
    n_edges_dropped: int = Field(description="Stored edges left out by the pruning parameters.")
    normalize: Literal["none", "l1_target", "l2_target"]
    mean_ci: dict[str, float] = Field(
        default_factory=dict,
        description="Dataset mean CI of the graph's components by key `layer:index`, for those "
        "that have one (from their activation contexts).",
    )
    prompt_counts: dict[str, int] = Field(
        default_factory=dict,
        description="How many stored prompts each of the graph's components fires in, by key "
        "(with `/api/meta`'s prompt_count: the share of prompts; rare components are specific).",
    )
    output_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="Text of the tokens the `output` nodes predict, by token id (their "
        "`component`), when the database stores the vocabulary.",
    )


class ComponentMatch(BaseModel):
    max_ci: float = Field(description="The component's largest CI in the prompt.")
    positions: list[int] = Field(description="Token positions where it fires.")
    ci_sum: float = Field(
        description="Its CI summed over those positions: its CI mass, which `specificity` "
        "weighs by the component's `idf`."
    )


class SearchResult(BaseModel):
    id: int
    score: float = Field(
        description="With `rank=specificity`: the sum over the queried components present of "
        "`ci_sum × idf`; with `rank=max_ci`: the sum of their `max_ci`."
    )
    preview: str
    tokens: list[str] = Field(description="The prompt's tokens; `matches` positions index them.")
    matches: dict[str, ComponentMatch]


class SearchResults(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "query": ["h.0.mlp.c_fc:3", "h.1.attn.o_proj:7"],
                    "mode": "all",
                    "count": 1,
                    "results": [
                        {
                            "id": 12,
                            "score": 2.5,
                            "preview": "Once upon a time",
                            "tokens": ["Once", " upon", " a", " time", "."],
                            "matches": {
                                "h.0.mlp.c_fc:3": {
                                    "max_ci": 0.75,
                                    "positions": [1, 4],
                                    "ci_sum": 1.0,
                                },
                                "h.1.attn.o_proj:7": {
                                    "max_ci": 0.5,
                                    "positions": [4],
                                    "ci_sum": 0.5,
                                },
                            },
                        }
                    ],
                    "next_cursor": None,
                    "unknown_components": [],
                    "rank": "specificity",
                    "exclude": [],
                    "idf": {"h.0.mlp.c_fc:3": 1.5, "h.1.attn.o_proj:7": 2.0},
                }
            ]
        }
    )

    query: list[str]
    mode: Literal["all", "any"]
    count: int = Field(description="Matching prompts over all pages.")
    results: list[SearchResult]
    next_cursor: str | None
    unknown_components: list[str] = Field(
        description="Well-formed keys naming no component of this database (queried or "
        "excluded: an unknown excluded key excludes nothing)."
    )
    rank: Literal["specificity", "max_ci"] = Field(description="The ranking that scored them.")
    exclude: list[str] = Field(description="The excluded keys, as asked (de-duplicated).")
    idf: dict[str, float] = Field(
        description="`ln(1 + N / n)` of each known queried component (N prompts in the "
        "database, n where it fires): its weight under `specificity`; empty for `max_ci`."
    )


class Component(BaseModel):
    key: str
    layer: str
    index: int
    prompt_count: int
    mean_max_ci: float
    max_max_ci: float
    mean_ci: float | None


class ComponentList(BaseModel):
    items: list[Component]
    count: int = Field(description="Components that fire in at least one prompt (this layer).")
    next_cursor: str | None


class Cofiring(BaseModel):
    key: str
    prompts: int = Field(description="How many of the sampled prompts it also fires in.")


class CofiringPartner(BaseModel):
    key: str
    count: int = Field(description="Prompts where both components fire.")
    prompt_count: int = Field(description="n_B: prompts where this partner fires.")
    lift: float = Field(
        description="`count × N / (n_A × n_B)`: how many times more often they fire together "
        "than if they fired independently (1)."
    )
    jaccard: float = Field(
        description="`count / (n_A + n_B − count)`: 1 when they fire in exactly the same prompts."
    )


class CofiringList(BaseModel):
    """The components firing in the same prompts as one component, over every stored prompt."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "h.0.mlp.c_fc:3",
                    "prompt_count": 40,
                    "n_prompts": 200,
                    "order": "lift",
                    "min_count": 3,
                    "n_partners": 1,
                    "items": [
                        {
                            "key": "h.1.attn.o_proj:7",
                            "count": 30,
                            "prompt_count": 50,
                            "lift": 3.0,
                            "jaccard": 0.5,
                        }
                    ],
                }
            ]
        }
    )

    key: str
    prompt_count: int = Field(description="n_A: prompts where the component fires.")
    n_prompts: int = Field(description="N: prompts in the database.")
    order: Literal["lift", "jaccard", "count"]
    min_count: int
    n_partners: int = Field(
        description="Components firing with it in at least `min_count` prompts (not only the "
        "`limit` listed)."
    )
    items: list[CofiringPartner] = Field(
        description="Best first by `order`; ties: larger `count`, then model order."
    )


class ComponentDetail(BaseModel):
    key: str
    prompt_count: int
    mean_max_ci: float
    max_max_ci: float
    mean_ci: float | None
    top_prompt_ids: list[int]
    activation_context: dict[str, Any] | None
    cofiring: list[Cofiring] = Field(
        description="Components firing most often in this one's strongest prompts; empty in "
        "/api/component_details, which leaves it out (it costs a query per component)."
    )
    cofiring_sample: int = Field(
        description="How many of its strongest prompts were counted (0 where it was left out)."
    )


class ComponentDetails(BaseModel):
    """Many components as `/api/components/{key}` answers, for exports: activation contexts
    cut to their first examples, co-firing left out (`cofiring` empty, `cofiring_sample` 0)."""

    items: list[ComponentDetail] = Field(description="The known components, in the order asked.")
    unknown_components: list[str] = Field(
        description="Well-formed keys naming no component of this database."
    )


class ActivationContextItem(BaseModel):
    key: str
    context: dict[str, Any]


class ActivationContextPage(BaseModel):
    items: list[ActivationContextItem]
    count: int = Field(description="Components with stored activation contexts.")
    next_cursor: str | None


class Partner(BaseModel):
    key: str
    total: float = Field(
        description="Sum over every stored graph of the values of the edges between the two "
        "components (signed: positive when one raises the other on balance)."
    )
    total_abs: float = Field(description="Sum over every stored graph of those edges' |value|.")
    prompt_count: int = Field(description="Prompts whose graph has an edge between the two.")


class PartnerList(BaseModel):
    """A component's strongest sources (upstream) or targets (downstream), summed over every
    stored graph."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "h.0.mlp.down_proj:5",
                    "direction": "upstream",
                    "n_prompts": 200,
                    "n_partners": 1,
                    "items": [
                        {
                            "key": "h.0.mlp.c_fc:3",
                            "total": -12.5,
                            "total_abs": 14.25,
                            "prompt_count": 40,
                        }
                    ],
                }
            ]
        }
    )

    key: str
    direction: Literal["upstream", "downstream"] = Field(
        description="`upstream`: components whose edges end at this one; `downstream`: "
        "components its edges end at."
    )
    n_prompts: int = Field(description="Prompts in the database.")
    n_partners: int = Field(
        description="Components with at least one edge to (or from) it, not only the `limit` "
        "listed."
    )
    items: list[Partner] = Field(description="Largest `total_abs` first; ties: model order.")


class EdgeHit(BaseModel):
    id: int = Field(description="The prompt's id.")
    max_abs: float = Field(description="|value| of the strongest edge between the two there.")
    value: float = Field(description="That edge's signed value.")
    source_position: int = Field(description="Token position of that edge's source node.")
    target_position: int = Field(description="Token position of that edge's target node.")
    preview: str
    tokens: list[str] = Field(description="The prompt's tokens, which the positions index.")


class EdgeSearchResults(BaseModel):
    """Prompts where one component drives another, strongest edge first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source": "h.0.mlp.c_fc:3",
                    "target": "h.0.mlp.down_proj:5",
                    "min_abs": 0.3,
                    "total": 1,
                    "next_cursor": None,
                    "results": [
                        {
                            "id": 12,
                            "max_abs": 0.75,
                            "value": -0.75,
                            "source_position": 2,
                            "target_position": 2,
                            "preview": "Once upon a time",
                            "tokens": ["Once", " upon", " a", " time"],
                        }
                    ],
                }
            ]
        }
    )

    source: str
    target: str
    min_abs: float = Field(description="The |value| the strongest edge reaches in every result.")
    total: int = Field(description="Matching prompts over all pages.")
    next_cursor: str | None
    results: list[EdgeHit] = Field(
        description="Largest `max_abs` first; ties: lower prompt id first."
    )


# ---- interactive: the held model (`locattr serve --model`) ----------------------------------


class ModelInfo(BaseModel):
    """The model a server holds for computing graphs and interventions."""

    run: str = Field(description="The run as given to --model (`demo`, a path, `wandb:...`).")
    device: str
    n_ctx: int | None = Field(description="Longest prompt in tokens (null: the model sets none).")
    vocab_size: int
    layers: list[LayerInfo] = Field(description="Decomposed layers that keys may name.")
    ci_threshold: float = Field(description="Default for computed graphs (the database's).")
    attr_threshold: float = Field(description="Default for computed graphs (the database's).")
    max_keys: int = Field(description="Most component keys an intervention may list.")
    max_text_chars: int
    waiting: int = Field(description="Requests waiting for the model now.")
    queue_limit: int = Field(description="Requests that may wait; beyond them: 503.")
    cache_entries: int = Field(description="Graphs in the cache of recent graphs.")
    cache_bytes: int
    cache_max_bytes: int


class ServerModel(BaseModel):
    """Whether the server holds a model (the prompt box and interventions need one)."""

    model: ModelInfo | None = Field(description="Null: started without --model.")


class ComputedGraph(PromptGraph):
    """A graph computed now for a prompt that need not be stored: `PromptGraph`'s fields, with
    `id` 0 (no stored prompt) and `source` saying what was sent, and how it was computed."""

    unknown_tokens: int = Field(description="Tokens the tokenizer did not know ([UNK]).")
    ci_threshold: float
    attr_threshold: float
    cached: bool = Field(description="Whether the graph came from the cache of recent graphs.")


class InterventionSpec(BaseModel):
    """Components to ablate, or to keep alone, on top of the CI-masked model."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["ablate", "keep_only"] = Field(
        description="`ablate`: zero the listed components' masks; `keep_only`: zero every "
        "other component's (in every decomposed layer)."
    )
    components: list[
        Annotated[str, Field(max_length=MAX_KEY_CHARS, json_schema_extra={"pattern": KEY_PATTERN})]
    ] = Field(
        default_factory=list,
        max_length=MAX_INTERVENTION_KEYS,
        description="Component keys `layer:index` of decomposed layers (none: `ablate` "
        "changes nothing and reproduces the CI-masked model).",
    )
    positions: list[Annotated[int, Field(ge=0, le=MAX_POSITION)]] | None = Field(
        default=None,
        max_length=MAX_INTERVENTION_KEYS,
        description="Token positions where the intervention applies (from 0); null: all. A "
        "search skips those past a prompt's end.",
    )


class TokenProb(BaseModel):
    token: str
    token_id: int
    prob: float


class PositionEffect(BaseModel):
    """The prediction at `pos` (of the token at `pos + 1`) under the three models."""

    pos: int
    target: list[TokenProb] = Field(description="The target model's top tokens.")
    spd: list[TokenProb] = Field(description="The CI-masked component model's top tokens.")
    intervened: list[TokenProb] = Field(description="The intervened model's top tokens.")
    delta_logprob_next: float | None = Field(
        description="Intervened minus CI-masked log-probability of the token that follows "
        "(null at the last position)."
    )
    delta_logprob_top: float = Field(
        description="Intervened minus CI-masked log-probability of the target's top token."
    )


class InterventionResult(BaseModel):
    prompt_id: int | None = Field(description="The stored prompt, when one was named.")
    tokens: list[str]
    token_ids: list[int]
    unknown_tokens: int
    intervention: InterventionSpec = Field(description="As applied (keys normalised).")
    positions: list[PositionEffect]


class EffectDistribution(BaseModel):
    """Mean and quantiles of one per-prompt value over prompts."""

    n: int = Field(description="Prompts that have the value.")
    mean: float
    min: float
    p05: float
    p25: float
    p50: float
    p75: float
    p95: float
    max: float


class InterventionAggregate(BaseModel):
    n_prompts: int
    mean_delta_logprob_next: EffectDistribution | None
    worst_delta_logprob_next: EffectDistribution | None
    mean_delta_logprob_top: EffectDistribution | None
    share_top1_changed: float = Field(description="Share of prompts whose top-1 token changed.")


class SearchStarted(BaseModel):
    """First line: how many prompts will be run."""

    type: Literal["start"]
    total: int = Field(description="Prompts to run (at most `limit`).")
    matching: int = Field(description="Prompts the search matches over all pages.")
    unknown_components: list[str]


class PromptEffectSummary(BaseModel):
    """One line per prompt, as it is done: the effect at the positions where the searched
    components fire (`positions`), measured as `/api/interventions` does."""

    type: Literal["prompt"]
    done: int = Field(description="Prompts done so far, this one included.")
    total: int
    prompt_id: int
    preview: str
    n_tokens: int
    positions: list[int] = Field(description="Where the searched components fire.")
    mean_delta_logprob_next: float | None = Field(
        description="Mean over `positions` with a next token of `delta_logprob_next`."
    )
    worst_delta_logprob_next: float | None = Field(description="Its minimum (most negative).")
    mean_delta_logprob_top: float | None
    worst_delta_logprob_top: float | None
    top1_changed: bool = Field(
        description="Whether the intervened model's top token differs from the CI-masked "
        "model's at any of `positions`."
    )


class SearchFinished(BaseModel):
    type: Literal["done"]
    aggregate: InterventionAggregate


class SearchFailed(BaseModel):
    """Last line when the search stopped early (time limit): the aggregate of the prompts done."""

    type: Literal["error"]
    error: str
    detail: str
    aggregate: InterventionAggregate


class InterventionSearchEvent(
    RootModel[
        Annotated[
            SearchStarted | PromptEffectSummary | SearchFinished | SearchFailed,
            Field(discriminator="type"),
        ]
    ]
):
    """One line of the NDJSON stream of `/api/interventions/search`."""
