// Typed calls to the locattr API. Types come from `schema.d.ts`, generated from the app's
// OpenAPI document (`make frontend-types`); nothing here restates a response shape by hand.
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Meta = Schemas["Meta"];
export type PromptPage = Schemas["PromptPage"];
export type PromptSummary = Schemas["PromptSummary"];
export type PromptGraph = Schemas["PromptGraph"];
export type SearchResults = Schemas["SearchResults"];
export type SearchResult = Schemas["SearchResult"];
export type ComponentDetail = Schemas["ComponentDetail"];
export type ComponentDetails = Schemas["ComponentDetails"];
export type Component = Schemas["Component"];
export type ComponentList = Schemas["ComponentList"];
export type CofiringList = Schemas["CofiringList"];
export type PartnerList = Schemas["PartnerList"];
export type Partner = Schemas["Partner"];
export type EdgeSearchResults = Schemas["EdgeSearchResults"];
export type EdgeHit = Schemas["EdgeHit"];
export type Normalize = PromptGraph["normalize"];
export type ServerModel = Schemas["ServerModel"];
export type ModelInfo = Schemas["ModelInfo"];
export type ComputedGraph = Schemas["ComputedGraph"];
export type InterventionSpec = Schemas["InterventionSpec"];
export type InterventionMode = InterventionSpec["mode"];
export type InterventionResult = Schemas["InterventionResult"];
export type PositionEffect = Schemas["PositionEffect"];
export type TokenProb = Schemas["TokenProb"];
export type InterventionAggregate = Schemas["InterventionAggregate"];
export type EffectDistribution = Schemas["EffectDistribution"];
export type PromptEffectSummary = Schemas["PromptEffectSummary"];
export type InterventionSearchEvent = Schemas["InterventionSearchEvent"];

type Query<P extends keyof paths> = paths[P]["get"] extends { parameters: { query?: infer Q } }
  ? NonNullable<Q>
  : never;
export type GraphQuery = Query<"/api/prompt/{prompt_id}">;
export type SearchQuery = Query<"/api/search">;
export type PromptsQuery = Query<"/api/prompts">;
export type ComponentsQuery = Query<"/api/components">;
export type EdgeSearchQuery = Query<"/api/search/edges">;
export type PartnerDirection = PartnerList["direction"];

type Body<P extends keyof paths> = paths[P] extends { post: { requestBody: { content: { "application/json": infer B } } } } ? B : never;
export type GraphRequest = Body<"/api/graphs">;
export type InterventionRequest = Body<"/api/interventions">;
export type SearchInterventionRequest = Body<"/api/interventions/search">;

/** A 4xx/5xx answer: the API's `{error, detail}` body, or what the network said;
 * `retryAfter`: the seconds a 503 asks the client to wait, when it says. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
    readonly retryAfter: number | null = null,
  ) {
    super(detail);
    this.name = "ApiError";
  }
}

type Params = Record<string, string | number | boolean | null | undefined>;

function url(base: string, path: string, params?: Params): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== null) search.set(key, String(value));
  }
  const query = search.toString();
  return `${base}${path}${query ? `?${query}` : ""}`;
}

/** The response to `init` at `path`, or an ApiError (aborts are rethrown as they are). */
async function send(base: string, path: string, init: RequestInit, params?: Params): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url(base, path, params), init);
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, "network", `cannot reach the locattr server at ${base || location.origin}`);
  }
  if (!response.ok) {
    const body: unknown = await response.json().catch(() => null);
    const parsed = body as Partial<Schemas["ErrorBody"]> | null;
    const retry = Number(response.headers.get("retry-after"));
    throw new ApiError(
      response.status,
      parsed?.error ?? `http_${response.status}`,
      parsed?.detail ?? `${response.status} ${response.statusText} from ${path}`,
      response.headers.has("retry-after") && Number.isFinite(retry) ? retry : null,
    );
  }
  return response;
}

async function getJson<T>(base: string, path: string, params?: Params, signal?: AbortSignal): Promise<T> {
  const response = await send(base, path, { signal, headers: { accept: "application/json" } }, params);
  return (await response.json()) as T;
}

function post(base: string, path: string, body: unknown, signal?: AbortSignal, accept = "application/json"): Promise<Response> {
  return send(base, path, { method: "POST", signal, body: JSON.stringify(body), headers: { accept, "content-type": "application/json" } });
}

async function postJson<T>(base: string, path: string, body: unknown, signal?: AbortSignal): Promise<T> {
  return (await (await post(base, path, body, signal)).json()) as T;
}

/** The API at `base` ("" = the page's own origin, as when the server serves this page). */
export class Api {
  constructor(readonly base: string = "") {}

  meta(): Promise<Meta> {
    return getJson(this.base, "/api/meta");
  }

  prompts(query: PromptsQuery): Promise<PromptPage> {
    return getJson(this.base, "/api/prompts", query);
  }

  prompt(id: number, query: GraphQuery, signal?: AbortSignal): Promise<PromptGraph> {
    return getJson(this.base, `/api/prompt/${id}`, query, signal);
  }

  search(query: SearchQuery): Promise<SearchResults> {
    return getJson(this.base, "/api/search", query);
  }

  component(key: string): Promise<ComponentDetail> {
    return getJson(this.base, `/api/components/${encodeURIComponent(key)}`);
  }

  components(query: ComponentsQuery): Promise<ComponentList> {
    return getJson(this.base, "/api/components", query);
  }

  /** Components firing with `key` by association over every stored prompt. */
  cofiring(key: string, limit: number): Promise<CofiringList> {
    return getJson(this.base, `/api/components/${encodeURIComponent(key)}/cofiring`, { limit });
  }

  /** The components `key` exchanges the most attribution with, summed over every stored graph:
   * its sources (`upstream`) or its targets (`downstream`). */
  partners(key: string, direction: PartnerDirection, limit: number): Promise<PartnerList> {
    return getJson(this.base, `/api/components/${encodeURIComponent(key)}/partners`, { direction, limit });
  }

  /** Prompts where an edge from component `source` to component `target` is strong. */
  searchEdges(query: EdgeSearchQuery): Promise<EdgeSearchResults> {
    return getJson(this.base, "/api/search/edges", query);
  }

  /** Several components' details in one request, activation contexts cut to `examples`. */
  componentDetails(keys: string[], examples: number): Promise<ComponentDetails> {
    return getJson(this.base, "/api/component_details", { keys: keys.join(","), examples });
  }

  /** The model the server holds for computing graphs and interventions (`model` null: none). */
  model(): Promise<ServerModel> {
    return getJson(this.base, "/api/model");
  }

  /** The graph of a prompt of one's own, computed now (nothing is stored). */
  graph(body: GraphRequest, signal?: AbortSignal): Promise<ComputedGraph> {
    return postJson(this.base, "/api/graphs", body, signal);
  }

  /** Per-position predictions of one prompt with components ablated or kept alone. */
  intervene(body: InterventionRequest, signal?: AbortSignal): Promise<InterventionResult> {
    return postJson(this.base, "/api/interventions", body, signal);
  }

  /** One intervention over a search's prompts: `onEvent` hears each line of the stream (start,
   * one per prompt, then done or error) as it arrives. */
  async interveneSearch(body: SearchInterventionRequest, onEvent: (event: InterventionSearchEvent) => void, signal?: AbortSignal): Promise<void> {
    const response = await post(this.base, "/api/interventions/search", body, signal, "application/x-ndjson");
    await readLines(response, (line) => onEvent(JSON.parse(line) as InterventionSearchEvent));
  }
}

/** Each non-empty line of a streamed body, as it arrives (the last may lack its newline). */
export async function readLines(response: Response, onLine: (line: string) => void): Promise<void> {
  if (!response.body) throw new ApiError(0, "stream", "the server's answer has no body");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    rest = splitLines(rest + value, onLine);
  }
  if (rest.trim()) onLine(rest);
}

/** Hands every complete line of `text` to `onLine`; returns the incomplete tail. */
export function splitLines(text: string, onLine: (line: string) => void): string {
  let start = 0;
  for (let end = text.indexOf("\n"); end >= 0; end = text.indexOf("\n", start)) {
    const line = text.slice(start, end);
    if (line.trim()) onLine(line);
    start = end + 1;
  }
  return text.slice(start);
}
