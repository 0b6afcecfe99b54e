// Search for prompts: where the pinned components fire, or where one component drives another
// (an edge search, read from the corpus edge index); ←/→ step through the results.
import type { Api, EdgeHit, SearchResult } from "../api/client";
import { SIZES } from "../limits";
import { format, h, replace, signed } from "../ui/dom";
import { EDGE_COLOURS, edgeMarks, tokenPreview, type Mark } from "../ui/preview";
import type { EdgeRef } from "../url";
import type { SearchSpec } from "./searchIntervention";

type SearchMode = "all" | "any" | "same";
type Rank = "specificity" | "max_ci";

/** Colours of the queried components in result previews, in query order. */
export const MATCH_COLOURS = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa", "#99f6e4", "#e5e7eb"];

interface ComponentSearch {
  kind: "components";
  keys: string[];
  excluded: string[];
  mode: SearchMode;
  rank: Rank;
  minCi: number;
  unknown: string[];
  results: SearchResult[];
}

interface EdgeSearch {
  kind: "edge";
  edge: EdgeRef;
  /** The |value| every result reaches, as the server answered (the index floor by default). */
  minAbs: number | null;
  results: EdgeHit[];
}

type Search = (ComponentSearch | EdgeSearch) & { count: number; next: string | null; active: number };

export interface SearchActions {
  /** Open a result's prompt; an edge search's result comes with the edge it found there. */
  open(id: number, found: { edge: EdgeRef; hit: EdgeHit } | null): void;
  /** A component search started: the edge search is no longer what the panel shows. */
  componentSearch(): void;
  /** The edge search was closed from the panel. */
  closeEdge(): void;
  /** The search shown changed (a new one, more results, or none). */
  changed(): void;
  /** Run the intervention over the shown component search's results. */
  intervene(): void;
}

export class SearchPanel {
  readonly element: HTMLElement;
  private readonly mode: HTMLSelectElement;
  private readonly rank: HTMLSelectElement;
  private readonly minCi: HTMLInputElement;
  private readonly button: HTMLButtonElement;
  private readonly colours: HTMLElement;
  private readonly status: HTMLElement;
  private readonly results: HTMLElement;
  private readonly more: HTMLButtonElement;
  private readonly intervene: HTMLButtonElement;
  private search: Search | null = null;
  private current: number | null = null;

  constructor(
    private readonly api: Api,
    private readonly actions: SearchActions,
  ) {
    this.mode = h(
      "select",
      { testid: "search-mode", title: "all: every pinned component fires; any: at least one; same position: all at one token" },
      h("option", { attrs: { value: "all" } }, "all"),
      h("option", { attrs: { value: "any" } }, "any"),
      h("option", { attrs: { value: "same" } }, "same position"),
    );
    this.rank = h(
      "select",
      {
        testid: "search-rank",
        title:
          "specificity: each component's CI mass at its positions times log(N / prompts it fires in), summed; max CI: the sum of the components' largest CI",
      },
      h("option", { attrs: { value: "specificity" } }, "specificity"),
      h("option", { attrs: { value: "max_ci" } }, "max CI"),
    );
    this.minCi = h("input", {
      testid: "search-min-ci",
      title: "Count a component only where its largest CI in the prompt reaches this",
      attrs: { type: "number", min: "0", max: "1", step: "0.05", value: "0" },
    });
    this.button = h("button", { testid: "search-button" }, "Find prompts");
    this.colours = h("div", { class: "match-colours", testid: "match-colours" });
    this.status = h("div", { class: "status", testid: "search-status" });
    this.results = h("ol", { class: "list", testid: "search-results" });
    this.more = h("button", { class: "more", testid: "search-more", onclick: () => void this.page(this.search?.next ?? null) }, "More results");
    this.more.hidden = true;
    this.intervene = h("button", { class: "intervene", testid: "search-intervene", onclick: () => this.actions.intervene() });
    this.intervene.hidden = true;
    this.element = h(
      "section",
      { class: "panel search" },
      h("h2", {}, "Search"),
      h("div", { class: "row" }, h("label", {}, "mode ", this.mode), h("label", {}, " rank ", this.rank)),
      h("div", { class: "row" }, h("label", {}, "min CI ", this.minCi)),
      this.button,
      this.status,
      this.intervene,
      this.colours,
      this.results,
      this.more,
      h("div", { class: "hint" }, "← / → step through the results, keeping the pins."),
    );
  }

  /** The button searches for the pins: those in `pinned` but not `excluded` must fire, the
   * excluded ones must not. */
  setKeys(pinned: readonly string[], excluded: readonly string[]): void {
    const keys = pinned.filter((key) => !excluded.includes(key));
    const plural = (n: number) => `${n} pinned component${n === 1 ? "" : "s"}`;
    this.button.textContent = keys.length
      ? `Find prompts with the ${plural(keys.length)}${excluded.length ? `, without ${excluded.length}` : ""}`
      : "Find prompts (pin components first)";
    this.button.disabled = keys.length === 0;
    this.button.onclick = () => void this.run(keys, [...excluded]);
  }

  /** The component search shown, as an intervention over a search takes it (null: none, or an
   * edge search, which the intervention cannot run over). */
  spec(): SearchSpec | null {
    const search = this.search;
    if (!search || search.kind !== "components") return null;
    return {
      query: {
        components: search.keys,
        exclude: search.excluded,
        mode: search.mode === "any" ? "any" : "all",
        same_position: search.mode === "same",
        min_ci: search.minCi,
        rank: search.rank,
      },
      count: search.count,
      label: summary(search),
    };
  }

  /** The button that runs the intervention over the results (null: hidden, e.g. no model). */
  setIntervention(action: { label: string; title: string; disabled: boolean } | null): void {
    const show = action !== null && this.search?.kind === "components" && this.search.count > 0;
    this.intervene.hidden = !show;
    if (!action) return;
    this.intervene.textContent = action.label;
    this.intervene.title = action.title;
    this.intervene.disabled = action.disabled;
  }

  /** Mark the prompt now shown among the results. */
  mark(id: number | null): void {
    this.current = id;
    for (const item of Array.from(this.results.children) as HTMLElement[]) {
      item.classList.toggle("active", Number(item.dataset.promptId) === id);
    }
  }

  /** Open the next (+1) or previous (-1) result; false when there is no search to step in. */
  step(direction: 1 | -1): boolean {
    const search = this.search;
    if (!search || !search.results.length) return false;
    let at = search.active;
    if (at < 0 || search.results[at]?.id !== this.current) at = search.results.findIndex((r) => r.id === this.current);
    if (direction > 0) {
      if (at + 1 < search.results.length) this.openResult(at + 1);
      else if (search.next) void this.page(search.next).then(() => this.openResult(at + 1));
    } else if (at > 0) {
      this.openResult(at - 1);
    }
    return true;
  }

  /** Search for prompts where every (or any) of `keys` fires and none of `excluded` does. */
  async run(keys: string[], excluded: string[] = []): Promise<void> {
    if (!keys.length) return;
    const minCi = Number(this.minCi.value);
    this.search = {
      kind: "components",
      keys,
      excluded,
      mode: this.mode.value as SearchMode,
      rank: this.rank.value as Rank,
      minCi: Number.isFinite(minCi) ? Math.min(1, Math.max(0, minCi)) : 0,
      unknown: [],
      results: [],
      count: 0,
      next: null,
      active: -1,
    };
    this.actions.componentSearch();
    await this.page(null);
  }

  /** Search for prompts where component `edge.source` drives `edge.target` (the strongest edge
   * between them reaches the edge index's floor). */
  async runEdge(edge: EdgeRef): Promise<void> {
    this.search = { kind: "edge", edge: { ...edge }, minAbs: null, results: [], count: 0, next: null, active: -1 };
    await this.page(null);
  }

  /** Forget the edge search, if that is what the panel shows. */
  clearEdge(): void {
    if (this.search?.kind !== "edge") return;
    this.search = null;
    this.status.textContent = "";
    this.status.className = "status";
    replace(this.colours);
    replace(this.results);
    this.more.hidden = true;
    this.actions.changed();
  }

  private async page(cursor: string | null): Promise<void> {
    const search = this.search;
    if (!search) return;
    this.status.textContent = "Searching…";
    this.status.className = "status loading";
    this.more.hidden = true;
    if (cursor === null) {
      replace(this.colours);
      replace(this.results);
      this.intervene.hidden = true;
    }
    try {
      if (search.kind === "components") await this.pageComponents(search, cursor);
      else await this.pageEdge(search, cursor);
    } catch (error) {
      if (this.search !== search) return;
      this.status.className = "status error";
      replace(this.status, `Search failed: ${(error as Error).message} `, h("button", { class: "link", onclick: () => void this.page(cursor) }, "Retry"));
      return;
    }
    if (this.search !== search) return;
    this.status.className = "status";
    this.status.textContent = summary(search);
    this.render();
    this.actions.changed();
    // a new search: its status and first results brought into view below the prompt list
    if (cursor === null) this.element.scrollIntoView({ block: "start" });
  }

  private async pageComponents(search: ComponentSearch & { count: number; next: string | null }, cursor: string | null): Promise<void> {
    const page = await this.api.search({
      components: search.keys.join(","),
      exclude: search.excluded.length ? search.excluded.join(",") : undefined,
      mode: search.mode === "any" ? "any" : "all",
      same_position: search.mode === "same",
      rank: search.rank,
      min_ci: search.minCi,
      limit: SIZES.searchPage,
      cursor,
    });
    if (this.search !== search) return;
    search.results.push(...page.results);
    search.count = page.count;
    search.next = page.next_cursor;
    search.unknown = page.unknown_components;
  }

  private async pageEdge(search: EdgeSearch & { count: number; next: string | null }, cursor: string | null): Promise<void> {
    const page = await this.api.searchEdges({ source: search.edge.source, target: search.edge.target, limit: SIZES.searchPage, cursor });
    if (this.search !== search) return;
    search.results.push(...page.results);
    search.count = page.total;
    search.next = page.next_cursor;
    search.minAbs = page.min_abs;
  }

  private render(): void {
    const search = this.search;
    if (!search) return;
    if (search.kind === "components") {
      replace(
        this.colours,
        ...search.keys.map((key, k) => h("span", { class: "chip", style: { background: colourOf(k) }, title: `positions where ${key} fires` }, key)),
      );
      replace(
        this.results,
        ...search.results.map((result, i) =>
          this.item(
            result.id,
            i,
            h("span", { class: "score", title: search.rank === "max_ci" ? "sum of the components' max CI" : "specificity score" }, format(result.score, 2)),
            tokenPreview(result.tokens, componentMarks(result, search.keys)),
          ),
        ),
      );
    } else {
      const { source, target } = search.edge;
      replace(
        this.colours,
        h("span", { class: "chip", testid: "edge-source-chip", style: { background: EDGE_COLOURS.source }, title: "the edge's source: marked where it sends the edge" }, `from ${source}`),
        h("span", { class: "chip", testid: "edge-target-chip", style: { background: EDGE_COLOURS.target }, title: "the edge's target: marked where it receives it" }, `to ${target}`),
        h("button", { class: "link", testid: "edge-search-clear", title: "close this edge search", onclick: () => this.actions.closeEdge() }, "clear"),
      );
      replace(
        this.results,
        ...search.results.map((hit, i) =>
          this.item(
            hit.id,
            i,
            h("span", { class: "edge-hit", title: "the strongest edge between the two in this prompt: its value and positions" }, signed(hit.value), ` [${hit.source_position}] → [${hit.target_position}]`),
            tokenPreview(hit.tokens, edgeMarks(hit.source_position, hit.target_position, source, target)),
          ),
        ),
      );
    }
    this.more.hidden = search.next === null;
  }

  private item(id: number, index: number, score: HTMLElement, preview: HTMLElement): HTMLElement {
    return h(
      "li",
      { testid: "search-result", class: id === this.current ? "item active" : "item", attrs: { "data-prompt-id": String(id) }, onclick: () => this.openResult(index) },
      h("span", { class: "id" }, `#${id}`),
      score,
      preview,
    );
  }

  private openResult(index: number): void {
    const search = this.search;
    const result = search?.results[index];
    if (!search || !result) return;
    search.active = index;
    this.actions.open(result.id, search.kind === "edge" ? { edge: search.edge, hit: search.results[index]! } : null);
    this.mark(result.id);
    this.results.children[index]?.scrollIntoView({ block: "nearest" });
  }
}

function colourOf(k: number): string {
  return MATCH_COLOURS[k % MATCH_COLOURS.length]!;
}

function summary(search: Search): string {
  const prompts = `${search.count.toLocaleString()} prompt${search.count === 1 ? "" : "s"}`;
  if (search.kind === "edge") {
    return `${prompts} with this edge at |value| ≥ ${format(search.minAbs, 2)}, strongest first`;
  }
  const how = { all: "all", any: "any", same: "all (at one position)" }[search.mode];
  const n = search.keys.length;
  return (
    `${prompts} with ${how} of ${n} component${n === 1 ? "" : "s"}` +
    (search.excluded.length ? `, none of ${search.excluded.length} excluded` : "") +
    (search.unknown.length ? ` (unknown here: ${search.unknown.join(", ")})` : "")
  );
}

/** Each position where a queried component fires, in the colour of the first one there (all of
 * them in its title). */
function componentMarks(result: SearchResult, keys: readonly string[]): Map<number, Mark> {
  const firing = new Map<number, string[]>();
  for (const key of keys) {
    for (const pos of result.matches[key]?.positions ?? []) firing.set(pos, [...(firing.get(pos) ?? []), key]);
  }
  const marks = new Map<number, Mark>();
  for (const [pos, here] of firing) {
    marks.set(pos, { background: colourOf(keys.indexOf(here[0]!)), title: here.join(", "), data: { pos: String(pos), key: here[0]! } });
  }
  return marks;
}
