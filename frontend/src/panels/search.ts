// Search for prompts where the pinned components fire; ←/→ step through the results.
import type { Api, SearchResult } from "../api/client";
import { SIZES } from "../limits";
import { format, h, replace, showToken } from "../ui/dom";

type SearchMode = "all" | "any" | "same";
type Rank = "specificity" | "max_ci";

/** Colours of the queried components in result previews, in query order. */
export const MATCH_COLOURS = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa", "#99f6e4", "#e5e7eb"];

interface SearchState {
  keys: string[];
  excluded: string[];
  mode: SearchMode;
  rank: Rank;
  minCi: number;
  results: SearchResult[];
  count: number;
  next: string | null;
  active: number;
  unknown: string[];
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
  private search: SearchState | null = null;
  private current: number | null = null;

  constructor(
    private readonly api: Api,
    private readonly open: (id: number) => void,
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
    this.element = h(
      "section",
      { class: "panel search" },
      h("h2", {}, "Search"),
      h("div", { class: "row" }, h("label", {}, "mode ", this.mode), h("label", {}, " rank ", this.rank)),
      h("div", { class: "row" }, h("label", {}, "min CI ", this.minCi)),
      this.button,
      this.status,
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
      keys,
      excluded,
      mode: this.mode.value as SearchMode,
      rank: this.rank.value as Rank,
      minCi: Number.isFinite(minCi) ? Math.min(1, Math.max(0, minCi)) : 0,
      results: [],
      count: 0,
      next: null,
      active: -1,
      unknown: [],
    };
    this.element.scrollIntoView({ block: "nearest" });
    await this.page(null);
  }

  private async page(cursor: string | null): Promise<void> {
    const search = this.search;
    if (!search) return;
    this.status.textContent = "Searching…";
    this.status.className = "status loading";
    this.more.hidden = true;
    try {
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
      this.status.className = "status";
      const how = { all: "all", any: "any", same: "all (at one position)" }[search.mode];
      const n = search.keys.length;
      this.status.textContent =
        `${search.count.toLocaleString()} prompt${search.count === 1 ? "" : "s"} with ${how} of ${n} component${n === 1 ? "" : "s"}` +
        (search.excluded.length ? `, none of ${search.excluded.length} excluded` : "") +
        (search.unknown.length ? ` (unknown here: ${search.unknown.join(", ")})` : "");
    } catch (error) {
      if (this.search !== search) return;
      this.status.className = "status error";
      replace(this.status, `Search failed: ${(error as Error).message} `, h("button", { class: "link", onclick: () => void this.page(cursor) }, "Retry"));
      return;
    }
    this.render();
  }

  private render(): void {
    const search = this.search;
    if (!search) return;
    replace(
      this.colours,
      ...search.keys.map((key, k) => h("span", { class: "chip", style: { background: colourOf(k) }, title: `positions where ${key} fires` }, key)),
    );
    replace(
      this.results,
      ...search.results.map((result, i) =>
        h(
          "li",
          {
            testid: "search-result",
            class: result.id === this.current ? "item active" : "item",
            attrs: { "data-prompt-id": String(result.id) },
            onclick: () => this.openResult(i),
          },
          h("span", { class: "id" }, `#${result.id}`),
          h("span", { class: "score", title: search.rank === "max_ci" ? "sum of the components' max CI" : "specificity score" }, format(result.score, 2)),
          preview(result, search.keys),
        ),
      ),
    );
    this.more.hidden = search.next === null;
  }

  private openResult(index: number): void {
    const search = this.search;
    const result = search?.results[index];
    if (!search || !result) return;
    search.active = index;
    this.open(result.id);
    this.mark(result.id);
    this.results.children[index]?.scrollIntoView({ block: "nearest" });
  }
}

function colourOf(k: number): string {
  return MATCH_COLOURS[k % MATCH_COLOURS.length]!;
}

/** The prompt's tokens around the matching positions, each marked in the colour of the first
 * queried component that fires there (all of them in its title). */
function preview(result: SearchResult, keys: readonly string[]): HTMLElement {
  const firing = new Map<number, string[]>();
  for (const key of keys) {
    for (const pos of result.matches[key]?.positions ?? []) firing.set(pos, [...(firing.get(pos) ?? []), key]);
  }
  const marked = new Set(firing.keys());
  const tokens = result.tokens;
  const positions = [...marked].sort((a, b) => a - b);
  const start = Math.max(0, (positions[0] ?? 0) - 6);
  const end = Math.min(tokens.length, Math.max(start + 24, (positions[positions.length - 1] ?? 0) + 7));
  return h(
    "div",
    { class: "preview tokens" },
    start > 0 ? "…" : null,
    ...tokens.slice(start, end).map((token, k) =>
      marked.has(start + k)
        ? h(
            "mark",
            {
              attrs: { "data-pos": String(start + k), "data-key": firing.get(start + k)![0]! },
              style: { background: colourOf(keys.indexOf(firing.get(start + k)![0]!)) },
              title: firing.get(start + k)!.join(", "),
            },
            showToken(token),
          )
        : showToken(token),
    ),
    end < tokens.length ? "…" : null,
  );
}
