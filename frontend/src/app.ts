// The page: wires the panels to one view-state store, loads data (Database or File mode) and
// turns the loaded graph plus the state into the scene the graph view draws.
import { Api, type ComputedGraph, type EdgeHit, type Meta, type ModelInfo, type PromptGraph } from "./api/client";
import { ComponentStore } from "./components";
import { naturalLayerOrder } from "./graph/layout";
import { exportJson, exportPng, exportSvg, type Picture } from "./exports";
import { componentEdge, parseGraphFile, toGraphData, type GraphData } from "./graph/data";
import { filterGraph } from "./graph/filter";
import { fitLayout, orderRows } from "./graph/layout";
import type { Highlight, Scene } from "./graph/renderer";
import { traceGraph } from "./graph/trace";
import { LIMITS, SIZES } from "./limits";
import { Controls } from "./panels/controls";
import { GraphView } from "./panels/graphView";
import { ComponentBrowser } from "./panels/componentBrowser";
import { InterventionDock, type InterventionTarget } from "./panels/intervention";
import { OwnPrompt } from "./panels/ownPrompt";
import { PinsPanel } from "./panels/pins";
import { PromptList, isMissing } from "./panels/prompts";
import { PromptText } from "./panels/promptText";
import { SearchPanel } from "./panels/search";
import { SelectionPanel } from "./panels/selection";
import { record } from "./perf";
import { ViewStore } from "./state";
import { componentCard, type HereInfo } from "./ui/card";
import { h } from "./ui/dom";
import { problemLine } from "./ui/effects";
import { edgeCardContent, nodeEdgesSection, pseudoNodeCard } from "./ui/graphCards";
import { readUrl, sameEdge, type EdgeRef, type ViewState } from "./url";

type Mode = "db" | "file";

const NO_MODEL =
  "This server holds no model, so it computes no graphs for new text and runs no interventions: start it with `locattr serve --db DB --model RUN`.";

interface Loaded {
  raw: PromptGraph;
  data: GraphData;
  /** Node index by `key@pos`. */
  index: Map<string, number>;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}

export class App {
  private mode: Mode;
  private readonly api = new Api("");
  private readonly store: ViewStore;
  private readonly components = new ComponentStore();
  private meta: Meta | null = null;
  /** The model the server holds (null: none, or not known yet). */
  private model: ModelInfo | null = null;
  private layerOrder: string[] = [];
  private loaded: Loaded | null = null;
  private scene: Scene | null = null;
  private hover: { node: number; key: string } | { edge: number } | null = null;
  private promptRequest: AbortController | null = null;
  private fileName = "";
  private browserLoaded = false;
  private fileNPrompts = 0;
  private readonly root: HTMLElement;
  private readonly graph: GraphView;
  private readonly prompts: PromptList;
  private readonly search: SearchPanel;
  private readonly controls: Controls;
  private readonly pins: PinsPanel;
  private readonly selection: SelectionPanel;
  private readonly browser: ComponentBrowser;
  private readonly tabs: { prompts: HTMLButtonElement; components: HTMLButtonElement };
  private readonly promptText: PromptText;
  private readonly ownPrompt: OwnPrompt;
  private readonly dock: InterventionDock;
  private readonly top: { modeDb: HTMLButtonElement; modeFile: HTMLButtonElement; fileLabel: HTMLElement; dbStatus: HTMLElement; apiDocs: HTMLElement };
  private readonly dbPanels: HTMLElement;
  private readonly dbOnly: HTMLElement;

  constructor(root: HTMLElement) {
    const parsed = readUrl(location.search);
    this.store = new ViewStore(parsed.state);
    this.mode = location.protocol === "file:" ? "file" : "db";
    this.root = root;
    this.graph = new GraphView({
      hover: (node, edge) => this.onHover(node, edge),
      click: (node, event) => this.onClick(node, event),
      clickEdge: (edge) => this.onEdgeClick(edge),
      column: (pos) => this.store.set({ focus: this.store.get().focus === pos ? null : pos }),
    });
    this.prompts = new PromptList(this.api, (id) => this.openPrompt(id));
    this.search = new SearchPanel(this.api, {
      open: (id, found) => this.openResult(id, found),
      componentSearch: () => {
        if (this.store.get().edgeSearch) this.store.set({ edgeSearch: null });
      },
      closeEdge: () => this.store.set({ edgeSearch: null }, "push"),
      changed: () => {
        this.dock.setSearch(this.search.spec());
        this.syncSearchIntervention();
      },
      intervene: () => void this.dock.runSearch(),
    });
    this.controls = new Controls(this.store, {
      fit: () => this.graph.renderer.fit(),
      exportJson: () => void this.exportJson(),
      exportSvg: () => {
        const picture = this.picture();
        if (picture) exportSvg(picture);
      },
      exportPng: () => {
        const picture = this.picture();
        if (picture) void exportPng(picture);
      },
    });
    const findPrompts = (key: string) => this.findPrompts(key);
    this.pins = new PinsPanel(
      this.components,
      {
        unpin: (key) => this.togglePin(key),
        toggleExcluded: (key) => {
          const excluded = this.store.get().excluded;
          this.store.set({ excluded: excluded.includes(key) ? excluded.filter((k) => k !== key) : [...excluded, key] });
        },
        findPrompts,
      },
      () => this.store.set({ pinned: [] }),
    );
    this.selection = new SelectionPanel(this.store, this.components, {
      go: (node) => this.selectNode(node),
      show: (key) => this.showComponent(key),
      togglePin: (key) => this.togglePin(key),
      findPrompts,
      searchEdge: (edge) => this.searchEdge(edge),
      changed: () => this.renderSide(),
    });
    this.browser = new ComponentBrowser(this.api, {
      pin: (key) => {
        if (!this.store.get().pinned.includes(key)) this.togglePin(key);
      },
      findPrompts,
    });
    this.promptText = new PromptText(this.store);
    this.ownPrompt = new OwnPrompt((text) => this.openText(text));
    this.dock = new InterventionDock(this.api, {
      focus: (pos) => this.store.set({ focus: pos }),
      open: (id) => this.openPrompt(id),
      changed: () => this.syncSearchIntervention(),
    });
    this.top = this.buildTopbar();
    const tab = (name: "prompts" | "components", label: string) =>
      h("button", { testid: `tab-${name}`, class: "tab", onclick: () => this.showTab(name) }, label);
    this.tabs = { prompts: tab("prompts", "Prompts"), components: tab("components", "Components") };
    this.dbPanels = h(
      "div",
      { class: "db-only" },
      this.ownPrompt.element,
      h("div", { class: "tabs", attrs: { role: "tablist" } }, this.tabs.prompts, this.tabs.components),
      this.prompts.element,
      this.browser.element,
      this.search.element,
    );
    this.dbOnly = h("div", { class: "status db-only-note" }, "Prompts and search need the locattr server: switch to Database mode.");
    this.layout();
    this.pins.setProblems(parsed.problems);
    this.showTab("prompts");
    this.store.subscribe((state, previous) => this.onState(state, previous));
    this.components.onChange((key) => this.onComponentLoaded(key));
    window.addEventListener("popstate", () => this.onPopState());
    document.addEventListener("keydown", (event) => this.onKey(event));
    this.renderPins();
    this.setMode(this.mode, true);
  }

  // ---- construction -------------------------------------------------------------------------

  private buildTopbar() {
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
    return { modeDb, modeFile, fileLabel, dbStatus, apiDocs };
  }

  private layout(): void {
    const { modeDb, modeFile, fileLabel, dbStatus, apiDocs } = this.top;
    const toggle = (side: "left" | "right") =>
      h(
        "button",
        {
          testid: `toggle-${side}`,
          class: `toggle ${side}`,
          title: `Show or hide the ${side === "left" ? "prompts and search" : "selection and pins"} panel`,
          onclick: () => {
            this.root.classList.toggle(`${side}-collapsed`);
            this.syncToggles();
          },
        },
        "",
      );
    const left = h("aside", { class: "sidebar left" }, this.dbPanels, this.dbOnly);
    const right = h("aside", { class: "sidebar right" }, this.selection.element, this.pins.element);
    this.root.append(
      h(
        "header",
        { class: "topbar" },
        toggle("left"),
        h("h1", {}, "locattr"),
        h("div", { class: "mode-toggle", attrs: { role: "group", "aria-label": "data source" } }, modeDb, modeFile),
        fileLabel,
        dbStatus,
        apiDocs,
        toggle("right"),
      ),
      h("div", { class: "layout" }, left, h("main", { class: "center" }, this.controls.element, this.promptText.element, this.graph.element, this.graph.legend, this.dock.element), right),
    );
    if (window.innerWidth < 1100) this.root.classList.add("right-collapsed");
    this.syncToggles();
  }

  private syncToggles(): void {
    for (const side of ["left", "right"] as const) {
      const button = this.root.querySelector<HTMLButtonElement>(`[data-testid="toggle-${side}"]`)!;
      const collapsed = this.root.classList.contains(`${side}-collapsed`);
      button.textContent = side === "left" ? (collapsed ? "☰ ▸" : "☰ ◂") : collapsed ? "◂ ☰" : "▸ ☰";
      button.setAttribute("aria-expanded", String(!collapsed));
    }
  }

  private showTab(name: "prompts" | "components"): void {
    this.prompts.element.hidden = name !== "prompts";
    this.browser.element.hidden = name !== "components";
    for (const [key, button] of Object.entries(this.tabs)) button.setAttribute("aria-selected", String(key === name));
    if (name === "components" && this.mode === "db" && !this.browserLoaded) {
      this.browserLoaded = true;
      void this.browser.load(null);
    }
  }

  // ---- modes and loading ----------------------------------------------------------------------

  private setMode(mode: Mode, initial = false): void {
    if (mode === this.mode && !initial) return;
    this.mode = mode;
    const { modeDb, modeFile, fileLabel, apiDocs } = this.top;
    modeDb.setAttribute("aria-pressed", String(mode === "db"));
    modeFile.setAttribute("aria-pressed", String(mode === "file"));
    this.root.dataset.mode = mode;
    fileLabel.hidden = mode !== "file";
    apiDocs.hidden = mode !== "db";
    this.dbPanels.hidden = mode !== "db";
    this.dbOnly.hidden = mode === "db";
    this.controls.setFileMode(mode === "file");
    this.dock.setAvailable(mode === "db" && this.model !== null);
    this.promptRequest?.abort();
    this.showGraph(null);
    if (mode === "file") {
      this.components.configure(null, []);
      this.selection.configure(null);
      // the database's prompt, selection, focus and edge search mean nothing for a file
      if (!initial) this.store.set({ prompt: null, text: null, selected: null, trace: null, focus: null, edgeSearch: null });
      if (location.protocol !== "file:") window.history.replaceState(null, "", location.pathname);
      this.top.dbStatus.textContent = "File mode: no server needed";
      this.graph.setStatus("Open a graph JSON exported from this page (Export JSON).", "idle");
      return;
    }
    this.components.configure(this.api, this.layerOrder);
    this.selection.configure(this.api);
    void this.startDatabase();
  }

  private async startDatabase(): Promise<void> {
    this.graph.setStatus("Connecting to the server…", "loading");
    this.top.dbStatus.textContent = "connecting…";
    // a server without `/api/model` (older than the interactive endpoints) holds no model
    const model = this.api.model().then(
      (answer) => ({ model: answer.model, why: NO_MODEL }),
      (error: unknown) => ({ model: null, why: `Could not ask the server for its model: ${message(error)}.` }),
    );
    try {
      this.meta = await this.api.meta();
    } catch (error) {
      this.top.dbStatus.textContent = "no server";
      this.graph.setStatus(`${message(error)}. Start one with \`locattr serve --db PATH\`, or use File mode.`, "error", {
        label: "Retry",
        run: () => void this.startDatabase(),
      });
      return;
    }
    const held = await model;
    if (this.mode !== "db") return;
    this.model = held.model;
    this.ownPrompt.setModel(held.model, held.why);
    this.dock.setAvailable(held.model !== null);
    this.syncSearchIntervention();
    this.layerOrder = this.meta.layers.map((layer) => layer.name);
    this.components.configure(this.api, this.layerOrder);
    this.browser.setLayers(this.layerOrder);
    const edge = this.store.get().edgeSearch;
    if (edge) void this.search.runEdge(edge);
    const run = typeof this.meta.meta.run === "string" ? this.meta.meta.run : "database";
    const n = this.meta.prompt_count;
    this.top.dbStatus.textContent = `${run} · ${n.toLocaleString()} prompt${n === 1 ? "" : "s"}`;
    const { prompt: wanted, text } = this.store.get();
    if (text !== null) {
      void this.prompts.load(null);
      void this.loadText(text);
      return;
    }
    if (wanted !== null) {
      void this.prompts.load(null).then(() => this.prompts.reveal(wanted));
      void this.loadPrompt(wanted);
      return;
    }
    await this.prompts.load(null);
    const first = this.prompts.first();
    if (first) this.store.set({ prompt: first.id }, "replace");
    else this.graph.setStatus("This database has no prompts yet.", "idle");
  }

  /** Show the graph of a prompt of one's own (computed by the server's model). */
  private openText(text: string): void {
    if (text === this.store.get().text) void this.loadText(text);
    else this.store.set({ text, selected: null, trace: null, focus: null }, "push");
  }

  /** Open a prompt from a list: prompt-specific state (selection, trace, focus) is reset. */
  private openPrompt(id: number): void {
    this.store.set({ prompt: id, selected: null, trace: null, focus: null }, "push");
  }

  /** Open a search result. One of an edge search selects the edge's end there: the selected
   * component's (keeping the trace) when it is one of the two, else the target. */
  private openResult(id: number, found: { edge: EdgeRef; hit: EdgeHit } | null): void {
    if (!found) {
      this.openPrompt(id);
      return;
    }
    const { edge, hit } = found;
    const { selected, trace } = this.store.get();
    const atSource = selected?.key === edge.source;
    const kept = atSource || selected?.key === edge.target;
    const next = atSource ? { key: edge.source, pos: hit.source_position } : { key: edge.target, pos: hit.target_position };
    this.store.set({ prompt: id, selected: next, trace: kept ? trace : null, focus: null }, "push");
  }

  private findPrompts(key: string): void {
    this.showTab("prompts");
    void this.search.run([key]);
  }

  /** List the prompts with an edge from `edge.source` to `edge.target` (recorded in the URL). */
  private searchEdge(edge: EdgeRef): void {
    if (this.mode !== "db") return;
    if (this.root.classList.contains("left-collapsed")) {
      this.root.classList.remove("left-collapsed");
      this.syncToggles();
    }
    if (sameEdge(this.store.get().edgeSearch, edge)) void this.search.runEdge(edge);
    else this.store.set({ edgeSearch: { ...edge } }, "push");
  }

  private async loadPrompt(id: number, keepView = false): Promise<void> {
    this.promptRequest?.abort();
    const request = new AbortController();
    this.promptRequest = request;
    this.prompts.mark(id);
    this.search.mark(id);
    this.graph.setStatus(`Loading prompt #${id}…`, "loading");
    const { filters, normalize } = this.store.get();
    let raw: PromptGraph;
    try {
      raw = await this.api.prompt(id, { top_k: filters.topK, min_abs: filters.minAbs, normalize }, request.signal);
    } catch (error) {
      if (isAbort(error)) return;
      this.showGraph(null);
      if (isMissing(error)) {
        this.graph.setStatus(`Prompt ${id} is not in this database.`, "error", {
          label: "Open the first prompt",
          run: () => {
            const first = this.prompts.first();
            if (first) this.openPrompt(first.id);
          },
        });
      } else {
        this.graph.setStatus(`Could not load prompt #${id}: ${message(error)}`, "error", { label: "Retry", run: () => void this.loadPrompt(id) });
      }
      return;
    }
    if (request.signal.aborted || this.mode !== "db") return;
    this.promptRequest = null;
    this.showGraph(raw, performance.now(), keepView);
  }

  private async loadText(text: string, keepView = false): Promise<void> {
    this.promptRequest?.abort();
    const request = new AbortController();
    this.promptRequest = request;
    this.prompts.mark(null);
    this.search.mark(null);
    this.ownPrompt.setText(text);
    if (!this.model) {
      this.showGraph(null);
      this.graph.setStatus(NO_MODEL, "error");
      this.ownPrompt.setStatus(NO_MODEL, "error");
      return;
    }
    this.graph.setStatus("Computing the graph of your prompt…", "loading");
    this.ownPrompt.setStatus("Computing its graph…", "loading");
    const { filters, normalize } = this.store.get();
    let raw: ComputedGraph;
    try {
      raw = await this.api.graph({ text, top_k: filters.topK, min_abs: filters.minAbs, normalize }, request.signal);
    } catch (error) {
      if (isAbort(error) || request.signal.aborted) return;
      const line = problemLine(error, "Computing the graph of your prompt");
      this.showGraph(null);
      this.graph.setStatus(line, "error", { label: "Retry", run: () => void this.loadText(text) });
      this.ownPrompt.setStatus(line, "error");
      return;
    }
    if (request.signal.aborted || this.mode !== "db") return;
    this.promptRequest = null;
    const n = raw.tokens.length;
    const unknown = raw.unknown_tokens ? `, ${raw.unknown_tokens} unknown to the tokenizer` : "";
    this.ownPrompt.setStatus(`${n} token${n === 1 ? "" : "s"}${unknown} · ${raw.n_nodes_total.toLocaleString()} nodes, ${raw.n_edges_total.toLocaleString()} edges${raw.cached ? " (cached)" : ""}`, "ready");
    this.showGraph(raw, performance.now(), keepView);
  }

  private async openFile(file: File): Promise<void> {
    this.graph.setStatus(`Opening ${file.name}…`, "loading");
    try {
      const opened = parseGraphFile(await file.text());
      const started = performance.now();
      this.layerOrder = opened.layerOrder.length ? opened.layerOrder : naturalLayerOrder(opened.graph.nodes.map((n) => n.layer));
      this.components.configure(null, []);
      this.components.seed(opened.components);
      this.fileName = file.name;
      this.fileNPrompts = opened.nPrompts;
      this.showGraph(opened.graph, started);
      this.top.dbStatus.textContent = `File: ${file.name}`;
    } catch (error) {
      this.showGraph(null);
      this.graph.setStatus(`${file.name}: ${message(error)}`, "error");
    }
  }

  // ---- the graph ------------------------------------------------------------------------------

  /** Show a graph (null: none); `started` = when its data arrived, for the render timing. */
  private showGraph(raw: PromptGraph | null, started?: number, keepView = false): void {
    this.hover = null;
    this.graph.showCard(null);
    const t0 = performance.now();
    let loaded: Loaded | null = null;
    if (raw) {
      const data = toGraphData(raw, this.mode === "db" ? (this.meta?.prompt_count ?? 0) : this.fileNPrompts);
      const index = new Map<string, number>();
      data.nodeKey.forEach((key, i) => index.set(`${key}@${data.nodePos[i]}`, i));
      loaded = { raw, data, index };
    }
    this.loaded = loaded;
    record("render:columns", performance.now() - t0);
    this.promptText.render(raw ? raw.tokens : null, this.graphTitle());
    this.dock.setTarget(this.interventionTarget(), this.graphTitle().trim());
    this.rebuild(keepView, started);
  }

  /** How the shown graph is named above it: the file, the stored prompt, or "your prompt". */
  private graphTitle(): string {
    const raw = this.loaded?.raw;
    if (!raw) return "";
    if (this.mode === "file") return `${this.fileName} `;
    return raw.id === 0 ? "your prompt " : `#${raw.id} `;
  }

  /** What an intervention runs on: the shown stored prompt or one's own text (null: none). */
  private interventionTarget(): InterventionTarget | null {
    const raw = this.loaded?.raw;
    if (!raw || this.mode !== "db") return null;
    if (raw.id > 0) return { prompt: raw.id };
    const text = this.store.get().text;
    return text !== null ? { text } : null;
  }

  private syncSearchIntervention(): void {
    this.search.setIntervention(this.model && this.mode === "db" ? this.dock.searchAction() : null);
  }

  private selectedIndex(): number {
    const selected = this.store.get().selected;
    return selected && this.loaded ? (this.loaded.index.get(`${selected.key}@${selected.pos}`) ?? -1) : -1;
  }

  private rebuild(keepView: boolean, started?: number): void {
    const loaded = this.loaded;
    if (!loaded) {
      this.scene = null;
      this.graph.show(null, false);
      this.controls.setEdgeCount(null, 0, false);
      this.renderSide();
      return;
    }
    const { filters, trace } = this.store.get();
    const t0 = performance.now();
    let visible = filterGraph(loaded.data, filters);
    const root = this.selectedIndex();
    const traced = trace !== null && root >= 0;
    if (traced) visible = traceGraph(loaded.data, visible, root, trace.direction, trace.hops, LIMITS.traceFanout.default);
    const t1 = performance.now();
    const renderer = this.graph.renderer;
    renderer.planGutters(loaded.data, orderRows(this.layerOrder, loaded.data.layers).map((row) => row.label));
    const layout = fitLayout(loaded.data, visible, this.layerOrder, renderer.plotAspect());
    record("render:filter", t1 - t0);
    record("render:layout", performance.now() - t1);
    this.scene = { graph: loaded.data, visible, layout };
    this.graph.show(this.scene, keepView);
    this.graph.highlight(this.highlightState());
    if (started !== undefined) {
      record("render", performance.now() - started);
      requestAnimationFrame(() => requestAnimationFrame(() => record("render_painted", performance.now() - started)));
    }
    const total = loaded.data.nEdgesTotal;
    this.controls.setEdgeCount(visible.edges.length, total, traced);
    if (visible.nodes.length === 0) {
      this.graph.setStatus(total === 0 ? "This prompt's graph has no edges." : "Every edge is filtered out: loosen the controls.", "idle");
    } else {
      this.graph.setStatus("", "ready");
    }
    this.renderSide();
  }

  private highlightState(): Highlight {
    const { pinned, focus } = this.store.get();
    const hover = this.hover;
    return {
      hoverKey: hover && "key" in hover ? hover.key : null,
      hoverEdge: hover && "edge" in hover ? hover.edge : -1,
      pinned: new Set(pinned),
      selected: this.selectedIndex(),
      focus,
    };
  }

  // ---- state changes --------------------------------------------------------------------------

  private onState(state: Readonly<ViewState>, previous: Readonly<ViewState>): void {
    this.controls.sync();
    if (!sameEdge(state.edgeSearch, previous.edgeSearch)) {
      if (state.edgeSearch && this.mode === "db") void this.search.runEdge(state.edgeSearch);
      else if (!state.edgeSearch) this.search.clearEdge();
    }
    const serverSide =
      state.filters.topK !== previous.filters.topK || state.filters.minAbs !== previous.filters.minAbs || state.normalize !== previous.normalize;
    if (this.mode === "db" && state.text !== null && (state.text !== previous.text || serverSide)) {
      void this.loadText(state.text, state.text === previous.text);
    } else if (this.mode === "db" && state.prompt !== null && (state.prompt !== previous.prompt || serverSide)) {
      void this.loadPrompt(state.prompt, state.prompt === previous.prompt);
      if (state.prompt !== previous.prompt) void this.prompts.reveal(state.prompt);
    } else if (
      serverSide ||
      state.filters !== previous.filters ||
      state.trace !== previous.trace ||
      (state.trace !== null && state.selected !== previous.selected)
    ) {
      this.rebuild(true);
    } else {
      this.graph.highlight(this.highlightState());
      this.renderSide();
    }
    if (state.focus !== previous.focus && this.loaded) {
      this.promptText.render(this.loaded.raw.tokens, this.graphTitle());
    }
    if (state.focus !== previous.focus) this.dock.setFocus(state.focus);
  }

  private onPopState(): void {
    const next = readUrl(location.search).state;
    this.store.set(next, "none");
  }

  private renderSide(): void {
    this.renderPins();
    this.selection.render(this.loaded?.data ?? null, this.selectedIndex(), (key) => this.hereInfo(key, null));
  }

  private renderPins(): void {
    const { pinned, excluded } = this.store.get();
    this.pins.render(pinned, excluded, (key) => (this.loaded ? this.hereInfo(key, null) : null));
    this.search.setKeys(pinned, excluded);
    this.dock.setPins(pinned);
    this.syncSearchIntervention();
  }

  // ---- hover, click, pins ---------------------------------------------------------------------

  private hereInfo(key: string, current: number | null): HereInfo {
    const data = this.loaded!.data;
    const positions = this.graph.renderer
      .nodesOf(key)
      .map((i) => ({ pos: data.nodePos[i]!, ci: data.nodeCi[i]!, token: data.tokens[data.nodePos[i]!] ?? "" }))
      .sort((a, b) => a.pos - b.pos);
    return { positions, current, meanCi: data.meanCi.get(key) };
  }

  private onHover(node: number | null, edge: number | null): void {
    const data = this.loaded?.data;
    if (!data || (node === null && edge === null)) {
      if (this.hover) {
        this.hover = null;
        this.graph.showCard(null);
        this.graph.highlight(this.highlightState());
      }
      return;
    }
    if (node !== null) {
      if (!this.hover || !("node" in this.hover) || this.hover.node !== node) {
        this.hover = { node, key: data.nodeKey[node]! };
        this.graph.highlight(this.highlightState());
        this.renderNodeCard();
      } else {
        this.graph.place(this.graph.nodeCard);
      }
      return;
    }
    if (!this.hover || !("edge" in this.hover) || this.hover.edge !== edge) {
      this.hover = { edge: edge! };
      this.graph.highlight(this.highlightState());
      const visible = this.scene!.visible;
      this.graph.showCard(this.graph.edgeCard, edgeCardContent(data, edge!, this.graph.renderer.rankOf(edge!), visible.edges.length, this.mode === "db"));
    } else {
      this.graph.place(this.graph.edgeCard);
    }
  }

  private renderNodeCard(): void {
    const hover = this.hover;
    if (!hover || !("node" in hover) || !this.loaded) return;
    const data = this.loaded.data;
    const pos = data.nodePos[hover.node]!;
    const pinned = this.store.get().pinned.includes(hover.key);
    const card = pseudoNodeCard(data, hover.node) ?? componentCard(hover.key, this.hereInfo(hover.key, pos), this.components.get(hover.key), SIZES.cardExamples);
    this.graph.showCard(this.graph.nodeCard, [
      ...card,
      nodeEdgesSection(data, hover.node, SIZES.hoverNodeEdges, null),
      h("div", { class: "hint" }, `click to select (edges, trace) · shift-click to ${pinned ? "unpin" : "pin"}`),
    ]);
    this.graph.nodeCard.dataset.key = hover.key;
  }

  private onClick(node: number, event: PointerEvent): void {
    const data = this.loaded!.data;
    const key = data.nodeKey[node]!;
    const isComponent = this.layerOrder.includes(data.layers[data.nodeLayer[node]!]!);
    if ((event.shiftKey || event.ctrlKey || event.metaKey) && isComponent) {
      this.togglePin(key);
      return;
    }
    this.selectNode(node);
  }

  /** An edge between two components lists the prompts with it; other edges do nothing. */
  private onEdgeClick(edge: number): void {
    const ends = this.loaded ? componentEdge(this.loaded.data, edge) : null;
    if (ends) this.searchEdge(ends);
  }

  /** Select `key` where it has the largest CI in the shown graph, else find prompts with it. */
  private showComponent(key: string): void {
    const data = this.loaded?.data;
    const nodes = data ? this.graph.renderer.nodesOf(key) : [];
    if (!data || !nodes.length) {
      this.findPrompts(key);
      return;
    }
    this.selectNode(nodes.reduce((best, i) => (data.nodeCi[i]! > data.nodeCi[best]! ? i : best)));
  }

  private selectNode(node: number): void {
    const data = this.loaded!.data;
    const selected = { key: data.nodeKey[node]!, pos: data.nodePos[node]! };
    const current = this.store.get().selected;
    if (current && current.key === selected.key && current.pos === selected.pos) return;
    this.store.set({ selected });
    this.graph.renderer.reveal(node);
    if (this.root.classList.contains("right-collapsed")) {
      this.root.classList.remove("right-collapsed");
      this.syncToggles();
    }
  }

  private onComponentLoaded(key: string): void {
    if (this.hover && "key" in this.hover && this.hover.key === key) this.renderNodeCard();
    if (this.store.get().pinned.includes(key) || this.store.get().selected?.key === key) this.renderSide();
  }

  private togglePin(key: string): void {
    const pins = this.store.get().pinned;
    this.store.set({ pinned: pins.includes(key) ? pins.filter((k) => k !== key) : [...pins, key] });
    if (this.hover && "key" in this.hover) this.renderNodeCard();
  }

  private onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    if (target && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) return;
    if (event.key === "Escape") {
      const { selected, focus } = this.store.get();
      if (selected) this.store.set({ selected: null });
      else if (focus !== null) this.store.set({ focus: null });
      return;
    }
    if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && this.mode === "db") {
      if (this.search.step(event.key === "ArrowRight" ? 1 : -1)) event.preventDefault();
    }
  }

  // ---- exports --------------------------------------------------------------------------------

  private async exportJson(): Promise<void> {
    const loaded = this.loaded;
    if (!loaded) return;
    const api = this.mode === "db" ? this.api : null;
    this.graph.setStatus("Collecting the components' details…", "loading");
    try {
      await exportJson(loaded.raw, this.layerOrder, this.components, api, loaded.data.nPrompts);
      this.graph.setStatus("", "ready");
    } catch (error) {
      this.graph.setStatus(`Export failed: ${message(error)}`, "error", { label: "Retry", run: () => void this.exportJson() });
    }
  }

  private picture(): Picture | null {
    const { scene, loaded } = this;
    if (!scene || !loaded) return null;
    const run = this.meta && typeof this.meta.meta.run === "string" ? this.meta.meta.run : this.fileName;
    return { scene, promptId: loaded.raw.id, tokens: loaded.raw.tokens, run };
  }

  // ---- for tests and benchmarks ---------------------------------------------------------------

  /** Shown nodes with their component key and viewport position (centre of the square). */
  shownNodes(): { key: string; layer: string; pos: number; x: number; y: number }[] {
    const scene = this.scene;
    if (!scene) return [];
    return Array.from(scene.visible.nodes, (i) => {
      const at = this.graph.renderer.clientPosition(i)!;
      return { key: scene.graph.nodeKey[i]!, layer: scene.graph.layers[scene.graph.nodeLayer[i]!]!, pos: scene.graph.nodePos[i]!, x: at.x, y: at.y };
    });
  }

  /** Shown edges with their value, the keys at their ends (`components`: both are components of
   * decomposed layers) and a point on them where the pointer finds this edge (and no node);
   * edges with no such point are left out. */
  shownEdges(limit = 200): { edge: number; value: number; source: string; target: string; components: boolean; x: number; y: number }[] {
    const scene = this.scene;
    if (!scene) return [];
    const renderer = this.graph.renderer;
    const graph = scene.graph;
    const out: ReturnType<App["shownEdges"]> = [];
    for (const j of Array.from(scene.visible.edges).slice(0, limit)) {
      for (const at of [0.5, 0.35, 0.65, 0.2, 0.8]) {
        const p = renderer.edgeClientPoint(j, at);
        if (p && renderer.nodeAt(p.x, p.y) < 0 && renderer.edgeAt(p.x, p.y) === j) {
          const source = graph.nodeKey[graph.edgeSource[j]!]!;
          const target = graph.nodeKey[graph.edgeTarget[j]!]!;
          out.push({ edge: j, value: graph.edgeValue[j]!, source, target, components: componentEdge(graph, j) !== null, x: p.x, y: p.y });
          break;
        }
      }
    }
    return out;
  }

  axisLabels() {
    return this.graph.renderer.axisLabels();
  }
}
