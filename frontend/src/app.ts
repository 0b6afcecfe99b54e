// The page: mode toggle, prompt browser, controls, the graph, hover card, pins and search.
import { Api, ApiError, type Meta, type PromptGraph, type PromptSummary, type SearchResult } from "./api/client";
import { ComponentStore } from "./components";
import { parseGraphFile, toGraphData, toGraphFile, type GraphData } from "./graph/data";
import { filterGraph, type FilterOptions } from "./graph/filter";
import { fitLayout, naturalLayerOrder } from "./graph/layout";
import { GraphRenderer, type Scene } from "./graph/renderer";
import { record } from "./perf";
import { componentCard, type HereInfo } from "./ui/card";
import { append, format, h, replace, showToken } from "./ui/dom";
import { readUrl, writeUrl, type ViewState } from "./url";

type Mode = "db" | "file";
type SearchMode = "all" | "any" | "same";

const PROMPT_PAGE = 50;
const SEARCH_PAGE = 20;

interface Loaded {
  raw: PromptGraph;
  data: GraphData;
}

interface SearchState {
  keys: string[];
  mode: SearchMode;
  results: SearchResult[];
  count: number;
  next: string | null;
  active: number;
  unknown: string[];
}

function message(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  return error instanceof Error ? error.message : String(error);
}

function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}

function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = h("a", { attrs: { href: url, download: name } });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export class App {
  private mode: Mode;
  private readonly api = new Api("");
  private meta: Meta | null = null;
  private layerOrder: string[] = [];
  private view: ViewState;
  private pinned: ReadonlySet<string>;
  private loaded: Loaded | null = null;
  private scene: Scene | null = null;
  private keyNodes = new Map<string, number[]>();
  private hover: { node: number; key: string } | null = null;
  private promptRequest: AbortController | null = null;
  private prompts: PromptSummary[] = [];
  private promptsNext: string | null = null;
  private promptCount = 0;
  private search: SearchState | null = null;
  private readonly components = new ComponentStore();
  private readonly renderer: GraphRenderer;
  private readonly el;

  constructor(root: HTMLElement) {
    this.view = readUrl(location.search);
    this.pinned = new Set(this.view.pinned);
    this.mode = location.protocol === "file:" ? "file" : "db";
    this.el = this.build(root);
    this.renderer = new GraphRenderer(this.el.canvas, {
      hover: (node, event) => this.onHover(node, event),
      click: (node) => this.togglePin(this.loaded!.data.nodeKey[node]!),
    });
    this.components.onChange((key) => this.onComponentLoaded(key));
    window.addEventListener("popstate", () => this.onPopState());
    document.addEventListener("keydown", (event) => this.onKey(event));
    this.renderPinned();
    this.syncControls();
    this.setMode(this.mode, true);
  }

  // ---- construction -------------------------------------------------------------------------

  private build(root: HTMLElement) {
    const modeDb = h("button", { testid: "mode-db", onclick: () => this.setMode("db") }, "Database");
    const modeFile = h("button", { testid: "mode-file", onclick: () => this.setMode("file") }, "File");
    const fileInput = h("input", { testid: "file-input", attrs: { type: "file", accept: ".json,application/json" } });
    fileInput.addEventListener("change", () => {
      const file = fileInput.files?.[0];
      if (file) void this.openFile(file);
      fileInput.value = "";
    });
    const fileLabel = h("label", { class: "file-open", title: "Open a graph JSON exported from this page" }, "Open graph file… ", fileInput);
    const dbStatus = h("span", { class: "db-status", testid: "db-status" });
    const apiDocs = h("a", { class: "api-docs", attrs: { href: "/docs", target: "_blank" } }, "API docs");

    const promptList = h("ul", { class: "list", testid: "prompt-list" });
    const promptStatus = h("div", { class: "status", testid: "prompt-status" });
    const promptMore = h("button", { class: "more", onclick: () => void this.loadPrompts(true) }, "Load more");
    const promptCount = h("span", { class: "count" });

    const searchMode = h(
      "select",
      { testid: "search-mode", title: "all: every pinned component fires; any: at least one; same position: all at one token" },
      h("option", { attrs: { value: "all" } }, "all"),
      h("option", { attrs: { value: "any" } }, "any"),
      h("option", { attrs: { value: "same" } }, "same position"),
    );
    const searchButton = h("button", { testid: "search-button", onclick: () => void this.runSearch() }, "Find prompts");
    const searchStatus = h("div", { class: "status", testid: "search-status" });
    const searchResults = h("ol", { class: "list", testid: "search-results" });
    const searchMore = h("button", { class: "more", onclick: () => void this.searchMore() }, "More results");

    const number = (testid: string, attrs: Record<string, string>, title: string) =>
      h("input", { testid, title, attrs: { type: "number", ...attrs } });
    const topK = number("top-k", { min: "1", max: "100000", step: "100" }, "Keep the K strongest edges (server-side)");
    const minAbs = number("min-abs", { min: "0", step: "0.001" }, "Drop edges with |attribution| below this (server-side)");
    const normalize = h(
      "select",
      { testid: "normalize", title: "Divide each edge by the norm of its target's incoming edges (server-side)" },
      h("option", { attrs: { value: "none" } }, "none"),
      h("option", { attrs: { value: "l1_target" } }, "L1 per target"),
      h("option", { attrs: { value: "l2_target" } }, "L2 per target"),
    );
    const ciThreshold = number("ci-threshold", { min: "0", max: "1", step: "0.01" }, "Hide nodes whose CI here is below this");
    const maxMeanCi = number("max-mean-ci", { min: "0", max: "1", step: "0.01" }, "Hide components whose dataset mean CI is above this");
    const edgeCount = h("span", { class: "edge-count", testid: "edge-count" });
    for (const input of [topK, minAbs, normalize, ciThreshold, maxMeanCi]) {
      input.addEventListener("change", () => this.onControls());
    }

    const canvas = h("canvas", { testid: "graph-canvas", class: "graph-canvas" });
    const graphStatus = h("div", { class: "graph-status", testid: "graph-status" });
    const card = h("div", { class: "node-card", testid: "node-card" });
    card.hidden = true;
    const pinnedList = h("div", { class: "pinned-list", testid: "pinned-list" });
    const pinnedCount = h("span", { class: "count" });
    const clearPins = h("button", { testid: "clear-pins", class: "link", onclick: () => this.setPins([]) }, "Clear all");
    const dbOnly = h("div", { class: "status db-only-note" }, "Prompts and search need the locattr server: switch to Database mode.");

    const leftDb = h(
      "div",
      { class: "db-only" },
      h(
        "section",
        { class: "panel prompts" },
        h("h2", {}, "Prompts ", promptCount),
        promptStatus,
        promptList,
        promptMore,
      ),
      h(
        "section",
        { class: "panel search" },
        h("h2", {}, "Search"),
        h("div", { class: "row" }, h("label", {}, "mode ", searchMode)),
        searchButton,
        searchStatus,
        searchResults,
        searchMore,
        h("div", { class: "hint" }, "← / → step through the results, keeping the pins."),
      ),
    );

    append(
      root,
      h(
        "header",
        { class: "topbar" },
        h("h1", {}, "locattr"),
        h("div", { class: "mode-toggle", attrs: { role: "group", "aria-label": "data source" } }, modeDb, modeFile),
        fileLabel,
        dbStatus,
        apiDocs,
      ),
      h(
        "div",
        { class: "layout" },
        h("aside", { class: "sidebar left" }, leftDb, dbOnly),
        h(
          "main",
          { class: "center" },
          h(
            "div",
            { class: "controls" },
            h("label", {}, "top-K ", topK),
            h("label", {}, "min |attr| ", minAbs),
            h("label", {}, "normalize ", normalize),
            h("label", {}, "CI ≥ ", ciThreshold),
            h("label", {}, "mean CI ≤ ", maxMeanCi),
            edgeCount,
            h("span", { class: "spacer" }),
            h("button", { testid: "reset-view", onclick: () => this.renderer.fit() }, "Fit"),
            h("button", { testid: "export-json", onclick: () => this.exportJson() }, "Export JSON"),
            h("button", { testid: "export-png", onclick: () => void this.exportPng() }, "Export PNG"),
          ),
          h("div", { class: "graph-wrap" }, canvas, graphStatus, card),
        ),
        h(
          "aside",
          { class: "sidebar right" },
          h("section", { class: "panel pinned" }, h("h2", {}, "Pinned ", pinnedCount, clearPins), pinnedList),
        ),
      ),
    );
    return {
      root, modeDb, modeFile, fileLabel, fileInput, dbStatus, apiDocs, promptList, promptStatus, promptMore, promptCount,
      searchMode, searchButton, searchStatus, searchResults, searchMore, topK, minAbs, normalize, ciThreshold,
      maxMeanCi, edgeCount, canvas, graphStatus, card, pinnedList, pinnedCount, clearPins, leftDb, dbOnly,
    };
  }

  // ---- modes and loading ----------------------------------------------------------------------

  private setMode(mode: Mode, initial = false): void {
    if (mode === this.mode && !initial) return;
    this.mode = mode;
    this.el.modeDb.setAttribute("aria-pressed", String(mode === "db"));
    this.el.modeFile.setAttribute("aria-pressed", String(mode === "file"));
    this.el.root.dataset.mode = mode;
    this.el.fileLabel.hidden = mode !== "file";
    this.el.apiDocs.hidden = mode !== "db";
    this.el.leftDb.hidden = mode !== "db";
    this.el.dbOnly.hidden = mode === "db";
    this.el.normalize.disabled = mode === "file";
    this.promptRequest?.abort();
    this.showGraph(null);
    if (mode === "file") {
      this.components.configure(null, []);
      this.el.dbStatus.textContent = "File mode: no server needed";
      this.setGraphStatus("Open a graph JSON exported from this page (Export JSON).", "idle");
      return;
    }
    this.components.configure(this.api, this.layerOrder);
    void this.startDatabase();
  }

  private async startDatabase(): Promise<void> {
    this.setGraphStatus("Connecting to the server…", "loading");
    this.el.dbStatus.textContent = "connecting…";
    try {
      this.meta = await this.api.meta();
    } catch (error) {
      this.el.dbStatus.textContent = "no server";
      this.setGraphStatus(`${message(error)}. Start one with \`locattr serve --db PATH\`, or use File mode.`, "error", () => void this.startDatabase());
      return;
    }
    if (this.mode !== "db") return;
    this.layerOrder = this.meta.layers.map((layer) => layer.name);
    this.components.configure(this.api, this.layerOrder);
    const run = typeof this.meta.meta.run === "string" ? this.meta.meta.run : "database";
    this.el.dbStatus.textContent = `${run} · ${this.meta.prompt_count.toLocaleString()} prompts`;
    const listed = this.loadPrompts(false);
    if (this.view.prompt !== null) {
      void this.loadPrompt(this.view.prompt, "none");
    } else {
      await listed;
      const first = this.prompts[0];
      if (first) void this.loadPrompt(first.id, "replace");
      else this.setGraphStatus("This database has no prompts yet.", "idle");
    }
  }

  private async loadPrompts(more: boolean): Promise<void> {
    if (!more) {
      this.prompts = [];
      this.promptsNext = null;
    }
    this.el.promptMore.hidden = true;
    this.el.promptStatus.textContent = "Loading prompts…";
    this.el.promptStatus.className = "status loading";
    try {
      const page = await this.api.prompts({ limit: PROMPT_PAGE, cursor: more ? this.promptsNext : null });
      this.prompts.push(...page.items);
      this.promptsNext = page.next_cursor;
      this.promptCount = page.count;
      this.el.promptStatus.textContent = page.count === 0 ? "No prompts in this database." : "";
      this.el.promptStatus.className = "status";
    } catch (error) {
      this.el.promptStatus.textContent = `Could not load prompts: ${message(error)}`;
      this.el.promptStatus.className = "status error";
      append(this.el.promptStatus, " ", h("button", { class: "link", onclick: () => void this.loadPrompts(more) }, "Retry"));
    }
    this.renderPrompts();
  }

  private renderPrompts(): void {
    this.el.promptCount.textContent = this.promptCount ? `(${this.promptCount.toLocaleString()})` : "";
    replace(
      this.el.promptList,
      ...this.prompts.map((prompt) =>
        h(
          "li",
          {
            testid: "prompt-item",
            class: prompt.id === this.view.prompt ? "item active" : "item",
            attrs: { "data-prompt-id": String(prompt.id) },
            onclick: () => void this.loadPrompt(prompt.id, "push"),
          },
          h("span", { class: "id" }, `#${prompt.id}`),
          h("span", { class: "preview" }, prompt.preview),
          h("small", {}, `${prompt.n_tokens} tokens · ${prompt.n_edges.toLocaleString()} edges`),
        ),
      ),
    );
    this.el.promptMore.hidden = this.promptsNext === null;
  }

  private async loadPrompt(id: number, history: "push" | "replace" | "none"): Promise<void> {
    this.promptRequest?.abort();
    const request = new AbortController();
    this.promptRequest = request;
    this.view.prompt = id;
    this.updateUrl(history);
    this.markActive();
    this.setGraphStatus(`Loading prompt #${id}…`, "loading");
    const { filters, normalize } = this.view;
    let raw: PromptGraph;
    try {
      raw = await this.api.prompt(id, { top_k: filters.topK, min_abs: filters.minAbs, normalize }, request.signal);
    } catch (error) {
      if (isAbort(error)) return;
      this.showGraph(null);
      this.setGraphStatus(`Could not load prompt #${id}: ${message(error)}`, "error", () => void this.loadPrompt(id, "none"));
      return;
    }
    if (request.signal.aborted || this.mode !== "db") return;
    this.promptRequest = null;
    this.showGraph(raw, performance.now());
  }

  private async openFile(file: File): Promise<void> {
    this.setGraphStatus(`Opening ${file.name}…`, "loading");
    try {
      const opened = parseGraphFile(await file.text());
      const started = performance.now();
      this.layerOrder = opened.layerOrder.length
        ? opened.layerOrder
        : naturalLayerOrder(opened.graph.nodes.map((n) => n.layer));
      this.components.configure(null, []);
      this.components.seed(opened.components);
      this.view.prompt = opened.graph.id || null;
      this.showGraph(opened.graph, started);
      this.el.dbStatus.textContent = `File: ${file.name}`;
    } catch (error) {
      this.showGraph(null);
      this.setGraphStatus(`${file.name}: ${message(error)}`, "error");
    }
  }

  // ---- the graph ------------------------------------------------------------------------------

  /** Show a graph (null: none); `started` = when its data arrived, for the render timing. */
  private showGraph(raw: PromptGraph | null, started?: number): void {
    this.hover = null;
    this.el.card.hidden = true;
    const t0 = performance.now();
    this.loaded = raw ? { raw, data: toGraphData(raw) } : null;
    record("render:columns", performance.now() - t0);
    this.rebuild(false, started);
  }

  private rebuild(keepView: boolean, started?: number): void {
    const loaded = this.loaded;
    if (!loaded) {
      this.scene = null;
      this.keyNodes = new Map();
      this.renderer.setScene(null);
      this.el.edgeCount.textContent = "";
      return;
    }
    const t0 = performance.now();
    const visible = filterGraph(loaded.data, this.view.filters);
    const t1 = performance.now();
    const layout = fitLayout(loaded.data, visible, this.layerOrder, this.renderer.plotAspect());
    record("render:filter", t1 - t0);
    record("render:layout", performance.now() - t1);
    this.scene = { graph: loaded.data, visible, layout };
    this.keyNodes = new Map();
    for (const i of visible.nodes) {
      const key = loaded.data.nodeKey[i]!;
      const list = this.keyNodes.get(key);
      if (list) list.push(i);
      else this.keyNodes.set(key, [i]);
    }
    this.renderer.setHighlight(null, this.pinned);
    this.renderer.setScene(this.scene, keepView);
    if (started !== undefined) {
      record("render", performance.now() - started);
      requestAnimationFrame(() => requestAnimationFrame(() => record("render_painted", performance.now() - started)));
    }
    const shown = visible.edges.length;
    const total = loaded.data.nEdgesTotal;
    this.el.edgeCount.textContent = `Showing ${shown.toLocaleString()} of ${total.toLocaleString()} edges`;
    this.el.edgeCount.dataset.shown = String(shown);
    if (visible.nodes.length === 0) {
      this.setGraphStatus(total === 0 ? "This prompt's graph has no edges." : "Every edge is filtered out: loosen the controls.", "idle");
    } else {
      this.setGraphStatus("", "ready");
    }
    this.renderPinned();
    this.renderSearch();
  }

  private setGraphStatus(text: string, state: "idle" | "loading" | "error" | "ready", retry?: () => void): void {
    const status = this.el.graphStatus;
    status.dataset.state = state;
    replace(status, text, retry ? h("button", { class: "link", onclick: retry }, " Retry") : null);
    status.hidden = text === "";
  }

  private onControls(): void {
    const { topK, minAbs, normalize, ciThreshold, maxMeanCi } = this.el;
    const read = (input: HTMLInputElement, fallback: number, low: number, high: number): number => {
      const value = Number(input.value);
      return input.value !== "" && Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback;
    };
    const before = this.view;
    const filters: FilterOptions = {
      topK: Math.round(read(topK, before.filters.topK, 1, 100_000)),
      minAbs: read(minAbs, before.filters.minAbs, 0, Infinity),
      ciThreshold: read(ciThreshold, before.filters.ciThreshold, 0, 1),
      maxMeanCi: read(maxMeanCi, before.filters.maxMeanCi, 0, 1),
    };
    const norm = normalize.value as ViewState["normalize"];
    const serverSide =
      filters.topK !== before.filters.topK || filters.minAbs !== before.filters.minAbs || norm !== before.normalize;
    this.view = { ...before, filters, normalize: norm };
    this.syncControls();
    this.updateUrl("replace");
    if (serverSide && this.mode === "db" && this.view.prompt !== null) void this.loadPrompt(this.view.prompt, "none");
    else this.rebuild(true);
  }

  private syncControls(): void {
    const { filters, normalize } = this.view;
    this.el.topK.value = String(filters.topK);
    this.el.minAbs.value = String(filters.minAbs);
    this.el.normalize.value = normalize;
    this.el.ciThreshold.value = String(filters.ciThreshold);
    this.el.maxMeanCi.value = String(filters.maxMeanCi);
  }

  // ---- hover and pins -------------------------------------------------------------------------

  private hereInfo(key: string, current: number | null): HereInfo {
    const data = this.loaded!.data;
    const positions = (this.keyNodes.get(key) ?? [])
      .map((i) => ({ pos: data.nodePos[i]!, ci: data.nodeCi[i]!, token: data.tokens[data.nodePos[i]!] ?? "" }))
      .sort((a, b) => a.pos - b.pos);
    return { positions, current, meanCi: data.meanCi.get(key) };
  }

  private onHover(node: number | null, event: PointerEvent): void {
    const data = this.loaded?.data;
    if (node === null || !data) {
      if (this.hover) {
        this.hover = null;
        this.el.card.hidden = true;
        this.renderer.setHighlight(null, this.pinned);
      }
      return;
    }
    const key = data.nodeKey[node]!;
    if (this.hover?.node !== node) {
      this.hover = { node, key };
      this.renderer.setHighlight(key, this.pinned);
      this.renderCard();
    }
    this.placeCard(event.clientX, event.clientY);
  }

  private renderCard(): void {
    const hover = this.hover;
    if (!hover || !this.loaded) return;
    const pos = this.loaded.data.nodePos[hover.node]!;
    replace(
      this.el.card,
      ...componentCard(hover.key, this.hereInfo(hover.key, pos), this.components.get(hover.key), 6),
      h("div", { class: "hint" }, this.pinned.has(hover.key) ? "click to unpin" : "click to pin"),
    );
    this.el.card.dataset.key = hover.key;
    this.el.card.hidden = false;
  }

  private placeCard(clientX: number, clientY: number): void {
    const wrap = this.el.card.parentElement!.getBoundingClientRect();
    const card = this.el.card;
    const width = card.offsetWidth;
    const height = card.offsetHeight;
    let x = clientX - wrap.left + 16;
    let y = clientY - wrap.top + 16;
    if (x + width > wrap.width - 4) x = Math.max(4, clientX - wrap.left - width - 16);
    if (y + height > wrap.height - 4) y = Math.max(4, wrap.height - height - 4);
    card.style.transform = `translate(${Math.round(x)}px, ${Math.round(y)}px)`;
  }

  private onComponentLoaded(key: string): void {
    if (this.hover?.key === key) this.renderCard();
    if (this.pinned.has(key)) this.renderPinned();
  }

  private togglePin(key: string): void {
    const pins = [...this.pinned];
    this.setPins(this.pinned.has(key) ? pins.filter((k) => k !== key) : [...pins, key]);
  }

  private setPins(keys: string[]): void {
    this.pinned = new Set(keys);
    this.view.pinned = [...this.pinned];
    this.updateUrl("replace");
    this.renderer.setHighlight(this.hover?.key ?? null, this.pinned);
    this.renderPinned();
    this.renderCard();
  }

  private renderPinned(): void {
    const keys = [...this.pinned];
    this.el.pinnedCount.textContent = keys.length ? `(${keys.length})` : "";
    this.el.clearPins.hidden = keys.length === 0;
    this.el.searchButton.textContent = keys.length
      ? `Find prompts with the ${keys.length} pinned component${keys.length > 1 ? "s" : ""}`
      : "Find prompts (pin components first)";
    this.el.searchButton.disabled = keys.length === 0;
    if (!keys.length) {
      replace(this.el.pinnedList, h("div", { class: "status" }, "Click a node to pin its component; pins stay when you switch prompts."));
      return;
    }
    replace(
      this.el.pinnedList,
      ...keys.map((key) => {
        const here = this.loaded ? this.hereInfo(key, null) : null;
        return h(
          "div",
          { class: "pinned-item", testid: "pinned-item", attrs: { "data-key": key } },
          h("button", { class: "unpin", testid: "unpin", title: "unpin", onclick: () => this.togglePin(key) }, "✕"),
          ...componentCard(key, here, this.components.get(key), 4),
          here && here.positions.length === 0 ? h("div", { class: "muted" }, "not in the shown graph") : null,
        );
      }),
    );
  }

  // ---- search ---------------------------------------------------------------------------------

  private async runSearch(): Promise<void> {
    const keys = [...this.pinned];
    if (!keys.length) return;
    const mode = this.el.searchMode.value as SearchMode;
    this.search = { keys, mode, results: [], count: 0, next: null, active: -1, unknown: [] };
    await this.searchPage(null);
  }

  private async searchMore(): Promise<void> {
    if (this.search?.next) await this.searchPage(this.search.next);
  }

  private async searchPage(cursor: string | null): Promise<void> {
    const search = this.search!;
    this.el.searchStatus.textContent = "Searching…";
    this.el.searchStatus.className = "status loading";
    this.el.searchMore.hidden = true;
    try {
      const page = await this.api.search({
        components: search.keys.join(","),
        mode: search.mode === "any" ? "any" : "all",
        same_position: search.mode === "same",
        limit: SEARCH_PAGE,
        cursor,
      });
      if (this.search !== search) return;
      search.results.push(...page.results);
      search.count = page.count;
      search.next = page.next_cursor;
      search.unknown = page.unknown_components;
      this.el.searchStatus.className = "status";
    } catch (error) {
      if (this.search !== search) return;
      this.el.searchStatus.className = "status error";
      replace(this.el.searchStatus, `Search failed: ${message(error)} `, h("button", { class: "link", onclick: () => void this.searchPage(cursor) }, "Retry"));
      return;
    }
    this.renderSearch();
  }

  private renderSearch(): void {
    const search = this.search;
    if (!search) {
      this.el.searchMore.hidden = true;
      return;
    }
    if (this.el.searchStatus.className === "status") {
      const how = { all: "all", any: "any", same: "all (at one position)" }[search.mode];
      this.el.searchStatus.textContent =
        `${search.count.toLocaleString()} prompt${search.count === 1 ? "" : "s"} with ${how} of ${search.keys.length} component${search.keys.length === 1 ? "" : "s"}` +
        (search.unknown.length ? ` (unknown here: ${search.unknown.join(", ")})` : "");
    }
    replace(
      this.el.searchResults,
      ...search.results.map((result, i) => {
        const marked = new Set(Object.values(result.matches).flatMap((m) => m.positions));
        return h(
          "li",
          {
            testid: "search-result",
            class: result.id === this.view.prompt ? "item active" : "item",
            attrs: { "data-prompt-id": String(result.id) },
            onclick: () => this.openResult(i),
          },
          h("span", { class: "id" }, `#${result.id}`),
          h("span", { class: "score", title: "sum of the components' max CI" }, format(result.score, 2)),
          this.preview(result, marked),
        );
      }),
    );
    this.el.searchMore.hidden = search.next === null;
  }

  /** The prompt's tokens around the matching positions, which are marked. */
  private preview(result: SearchResult, marked: Set<number>): HTMLElement {
    const tokens = result.tokens;
    const positions = [...marked].sort((a, b) => a - b);
    const start = Math.max(0, (positions[0] ?? 0) - 6);
    const end = Math.min(tokens.length, Math.max(start + 24, (positions[positions.length - 1] ?? 0) + 7));
    return h(
      "div",
      { class: "preview tokens" },
      start > 0 ? "…" : null,
      ...tokens.slice(start, end).map((token, k) =>
        marked.has(start + k) ? h("mark", { attrs: { "data-pos": String(start + k) } }, showToken(token)) : showToken(token),
      ),
      end < tokens.length ? "…" : null,
    );
  }

  private openResult(index: number): void {
    const search = this.search;
    const result = search?.results[index];
    if (!search || !result) return;
    search.active = index;
    void this.loadPrompt(result.id, "push");
    this.renderSearch();
    this.el.searchResults.children[index]?.scrollIntoView({ block: "nearest" });
  }

  private onKey(event: KeyboardEvent): void {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const target = event.target as HTMLElement | null;
    if (target && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) return;
    const search = this.search;
    if (!search || !search.results.length || this.mode !== "db") return;
    event.preventDefault();
    let at = search.active;
    if (at < 0 || search.results[at]?.id !== this.view.prompt) {
      at = search.results.findIndex((r) => r.id === this.view.prompt);
    }
    if (event.key === "ArrowRight") {
      if (at + 1 < search.results.length) this.openResult(at + 1);
      else if (search.next) void this.searchMore().then(() => this.openResult(at + 1));
    } else if (at > 0) {
      this.openResult(at - 1);
    }
  }

  private markActive(): void {
    for (const list of [this.el.promptList, this.el.searchResults]) {
      for (const item of Array.from(list.children) as HTMLElement[]) {
        item.classList.toggle("active", Number(item.dataset.promptId) === this.view.prompt);
      }
    }
  }

  // ---- URL, export ----------------------------------------------------------------------------

  private updateUrl(history: "push" | "replace" | "none"): void {
    if (history === "none") return;
    const url = `${location.pathname}${writeUrl(this.view)}${location.hash}`;
    if (url === `${location.pathname}${location.search}${location.hash}`) return;
    if (history === "push") window.history.pushState(null, "", url);
    else window.history.replaceState(null, "", url);
  }

  private onPopState(): void {
    const next = readUrl(location.search);
    const promptChanged = next.prompt !== this.view.prompt;
    this.view = next;
    this.pinned = new Set(next.pinned);
    this.syncControls();
    this.renderPinned();
    if (this.mode === "db" && next.prompt !== null && promptChanged) void this.loadPrompt(next.prompt, "none");
    else this.rebuild(true);
  }

  private exportJson(): void {
    const loaded = this.loaded;
    if (!loaded) return;
    const inGraph = new Set(loaded.data.nodeKey);
    const details = Object.fromEntries(Object.entries(this.components.ready()).filter(([key]) => inGraph.has(key)));
    const file = toGraphFile(loaded.raw, this.layerOrder, details);
    download(new Blob([JSON.stringify(file)], { type: "application/json" }), `locattr-prompt-${loaded.raw.id}.json`);
  }

  private async exportPng(): Promise<void> {
    if (!this.loaded) return;
    download(await this.renderer.toBlob(), `locattr-prompt-${this.loaded.raw.id}.png`);
  }

  // ---- for tests and benchmarks ---------------------------------------------------------------

  /** Shown nodes with their component key and viewport position (centre of the square). */
  shownNodes(): { key: string; pos: number; x: number; y: number }[] {
    const scene = this.scene;
    if (!scene) return [];
    return Array.from(scene.visible.nodes, (i) => {
      const at = this.renderer.clientPosition(i)!;
      return { key: scene.graph.nodeKey[i]!, pos: scene.graph.nodePos[i]!, x: at.x, y: at.y };
    });
  }
}
