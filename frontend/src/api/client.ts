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

type Query<P extends keyof paths> = paths[P]["get"] extends { parameters: { query?: infer Q } }
  ? NonNullable<Q>
  : never;
export type GraphQuery = Query<"/api/prompt/{prompt_id}">;
export type SearchQuery = Query<"/api/search">;
export type PromptsQuery = Query<"/api/prompts">;
export type ComponentsQuery = Query<"/api/components">;
export type EdgeSearchQuery = Query<"/api/search/edges">;
export type PartnerDirection = PartnerList["direction"];

/** A 4xx/5xx answer: the API's `{error, detail}` body, or what the network said. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
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

async function getJson<T>(base: string, path: string, params?: Params, signal?: AbortSignal): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url(base, path, params), { signal, headers: { accept: "application/json" } });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, "network", `cannot reach the locattr server at ${base || location.origin}`);
  }
  if (!response.ok) {
    const body: unknown = await response.json().catch(() => null);
    const parsed = body as Partial<Schemas["ErrorBody"]> | null;
    throw new ApiError(
      response.status,
      parsed?.error ?? `http_${response.status}`,
      parsed?.detail ?? `${response.status} ${response.statusText} from ${path}`,
    );
  }
  return (await response.json()) as T;
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
}
