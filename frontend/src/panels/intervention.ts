// The intervention dock below the graph: ablate the pinned components (or keep only them) in the
// shown prompt and read, per position, how the predictions change; or run the same intervention
// over the prompts of the current search (streamed) and read the summary.
import type { Api, InterventionMode, InterventionResult, PositionEffect, SearchInterventionRequest, TokenProb } from "../api/client";
import { SIZES } from "../limits";
import { h, replace, showToken } from "../ui/dom";
import { DELTA_LEGEND, deltaBackground, deltaText, percent, problemLine, tokenIds, top1Changed } from "../ui/effects";
import { SearchEffects, type SearchSpec } from "./searchIntervention";

/** The prompt an intervention runs on: a stored one or one's own text. */
export type InterventionTarget = { prompt: number } | { text: string };

export interface InterventionActions {
  /** Focus a position of the graph (a table row was clicked). */
  focus(pos: number): void;
  /** Open a stored prompt (a row of the search summary was clicked). */
  open(id: number): void;
  /** The intervention's mode changed (the search panel's button names it). */
  changed(): void;
}

interface PromptRun {
  target: InterventionTarget;
  label: string;
  mode: InterventionMode;
  keys: string[];
  topK: number;
}

type View = "prompt" | "search";

/** Heights in px the dock and the graph above it keep when the dock is resized. */
const DOCK_MIN = 120;
const GRAPH_MIN = 280;

const TOP_K = [1, 3, 5, 10];

function sameTarget(a: InterventionTarget | null, b: InterventionTarget | null): boolean {
  if (!a || !b) return a === b;
  return "prompt" in a ? "prompt" in b && a.prompt === b.prompt : "text" in b && a.text === b.text;
}

const MODE_TEXT: Record<InterventionMode, (n: number) => string> = {
  ablate: (n) => `ablated ${n} pinned component${n === 1 ? "" : "s"}`,
  keep_only: (n) => `kept only ${n} pinned component${n === 1 ? "" : "s"}`,
};

export class InterventionDock {
  readonly element: HTMLElement;
  private readonly buttons: Record<InterventionMode, HTMLButtonElement>;
  private readonly topK: HTMLSelectElement;
  private readonly searchButton: HTMLButtonElement;
  private readonly tabs: Record<View, HTMLButtonElement>;
  private readonly tabRow: HTMLElement;
  private readonly close: HTMLButtonElement;
  private readonly body: HTMLElement;
  private readonly promptView: HTMLElement;
  private readonly searchEffects: SearchEffects;
  private target: InterventionTarget | null = null;
  private targetLabel = "";
  private pins: string[] = [];
  private mode: InterventionMode = "ablate";
  private search: SearchSpec | null = null;
  private run: PromptRun | null = null;
  private result: InterventionResult | null = null;
  private request: AbortController | null = null;
  private view: View = "prompt";
  private focused: number | null = null;

  constructor(
    private readonly api: Api,
    private readonly actions: InterventionActions,
  ) {
    const modeButton = (mode: InterventionMode, label: string, title: string) =>
      h("button", { testid: mode === "ablate" ? "ablate-pinned" : "keep-only-pinned", title, onclick: () => void this.runPrompt(mode) }, label);
    this.buttons = {
      ablate: modeButton("ablate", "Ablate pinned", "Zero the pinned components' masks in the shown prompt and compare the predictions"),
      keep_only: modeButton("keep_only", "Keep only pinned", "Zero every other component's mask in the shown prompt and compare the predictions"),
    };
    this.topK = h("select", { testid: "intervention-top-k", title: "Top tokens listed per position and model" }, ...TOP_K.map((k) => h("option", { attrs: { value: String(k) } }, String(k))));
    this.topK.value = String(SIZES.interventionTopK);
    this.topK.addEventListener("change", () => {
      if (this.run && this.view === "prompt") void this.runPrompt(this.run.mode, this.run.keys);
    });
    this.searchButton = h("button", { testid: "intervene-search", onclick: () => void this.runSearch() }, "Over the search results");
    const tab = (view: View, label: string) => h("button", { class: "tab", testid: `intervention-tab-${view}`, onclick: () => this.show(view) }, label);
    this.tabs = { prompt: tab("prompt", "This prompt"), search: tab("search", "Search results") };
    this.close = h("button", { class: "close", testid: "intervention-close", title: "Hide the results", onclick: () => this.collapse() }, "✕");
    this.promptView = h("div", { class: "effects-view", testid: "intervention-result" });
    this.searchEffects = new SearchEffects(api, { open: (id) => actions.open(id) });
    this.tabRow = h("div", { class: "tabs dock-tabs", attrs: { role: "tablist" } }, this.tabs.prompt, this.tabs.search);
    this.body = h("div", { class: "dock-body" }, this.tabRow, this.promptView, this.searchEffects.element);
    const grip = h("div", { class: "dock-grip", testid: "intervention-resize", title: "Drag to resize", attrs: { role: "separator", "aria-orientation": "horizontal" } });
    grip.addEventListener("pointerdown", (event) => this.resize(grip, event));
    this.element = h(
      "section",
      { class: "dock intervention", testid: "intervention-dock", attrs: { "aria-label": "interventions" } },
      grip,
      h(
        "div",
        { class: "dock-head" },
        h("span", { class: "dock-title" }, "Intervene:"),
        this.buttons.ablate,
        this.buttons.keep_only,
        h("label", { class: "muted" }, "top ", this.topK),
        this.searchButton,
        h("span", { class: "spacer" }),
        this.close,
      ),
      this.body,
    );
    this.collapse();
    this.sync();
  }

  /** Whether the server can intervene (it holds a model, and a database is shown). */
  setAvailable(available: boolean): void {
    this.element.hidden = !available;
    if (!available) {
      this.request?.abort();
      this.searchEffects.stop();
    }
  }

  /** The prompt now shown. A result for another prompt is recomputed for it when shown. */
  setTarget(target: InterventionTarget | null, label: string): void {
    const changed = !sameTarget(target, this.target);
    this.target = target;
    this.targetLabel = label;
    this.searchEffects.mark(target && "prompt" in target ? target.prompt : null);
    if (changed && this.run) {
      if (target && this.view === "prompt" && !this.body.hidden) void this.runPrompt(this.run.mode, this.run.keys);
      else this.clearPrompt();
    }
    this.sync();
  }

  setPins(pins: readonly string[]): void {
    this.pins = [...pins];
    this.sync();
  }

  /** The component search shown in the search panel (null: none, or an edge search). */
  setSearch(search: SearchSpec | null): void {
    this.search = search;
    this.sync();
  }

  /** The focused position (marked in the table). */
  setFocus(pos: number | null): void {
    this.focused = pos;
    for (const row of Array.from(this.promptView.querySelectorAll<HTMLElement>("tr[data-pos]"))) {
      row.classList.toggle("focused", Number(row.dataset.pos) === pos);
    }
  }

  /** What the search panel's button says and does: the current intervention over its results. */
  searchAction(): { label: string; title: string; disabled: boolean } {
    const n = this.pins.length;
    const count = this.search?.count ?? 0;
    const limit = Math.min(count, SIZES.interventionSearch);
    const verb = this.mode === "ablate" ? "Ablate" : "Keep only";
    const results = limit < count ? `the first ${limit} of ${count} results` : `these ${count} result${count === 1 ? "" : "s"}`;
    const label = !n ? "Intervene over the results (pin components first)" : `${verb} the ${n} pin${n === 1 ? "" : "s"} over ${results}`;
    const title =
      "Run the intervention on each prompt of this search and summarise the change where the searched components fire; Ablate pinned or Keep only pinned below the graph sets which intervention";
    return { label, title, disabled: !n || !this.search || this.search.count === 0 };
  }

  /** Run the current intervention (mode, pins) over the current search's prompts. */
  async runSearch(): Promise<void> {
    const search = this.search;
    if (!search || !this.pins.length) return;
    const body: SearchInterventionRequest = {
      search: search.query,
      intervention: { mode: this.mode, components: [...this.pins] },
      limit: Math.max(1, Math.min(search.count, SIZES.interventionSearch)),
    };
    this.show("search");
    const done = this.searchEffects.run(body, MODE_TEXT[this.mode](this.pins.length), search.label);
    this.sync();
    await done;
  }

  private async runPrompt(mode: InterventionMode, keys: string[] = this.pins): Promise<void> {
    const target = this.target;
    if (!target || !keys.length) return;
    if (mode !== this.mode) {
      this.mode = mode;
      this.actions.changed();
    }
    const run: PromptRun = { target, label: this.targetLabel, mode, keys: [...keys], topK: Number(this.topK.value) };
    this.run = run;
    this.request?.abort();
    const request = new AbortController();
    this.request = request;
    this.show("prompt");
    this.sync();
    const doing = `${mode === "ablate" ? "Ablating" : "Keeping only"} ${keys.length} pinned component${keys.length === 1 ? "" : "s"} in ${run.label}`;
    const status = h("div", { class: "status loading", testid: "intervention-status" }, doing);
    if (this.result) this.promptView.prepend(status);
    else replace(this.promptView, status);
    const prompt = "prompt" in target ? { prompt_id: target.prompt } : { text: target.text };
    let result: InterventionResult;
    try {
      result = await this.api.intervene({ ...prompt, intervention: { mode, components: run.keys }, top_k: run.topK }, request.signal);
    } catch (error) {
      if (error instanceof DOMException && error.name === "AbortError") return;
      if (this.request !== request) return;
      this.result = null;
      replace(this.promptView, h("div", { class: "status error", testid: "intervention-status" }, problemLine(error, "The intervention")));
      return;
    }
    if (this.request !== request) return;
    this.request = null;
    this.result = result;
    replace(this.promptView, ...effectsTable(result, run, (pos) => this.actions.focus(pos)));
    this.setFocus(this.focused);
  }

  /** Drag the grip above the dock: the dock takes the height below the pointer, the graph the
   * rest (each keeps a usable minimum). */
  private resize(grip: HTMLElement, down: PointerEvent): void {
    if (this.body.hidden) return;
    grip.setPointerCapture(down.pointerId);
    const startY = down.clientY;
    const startHeight = this.element.getBoundingClientRect().height;
    // the dock grows only while the graph above keeps GRAPH_MIN
    const graph = this.element.parentElement?.querySelector(".graph-wrap")?.getBoundingClientRect().height ?? GRAPH_MIN;
    const most = Math.max(DOCK_MIN, startHeight + graph - GRAPH_MIN);
    const move = (event: PointerEvent) => {
      const height = Math.max(DOCK_MIN, Math.min(most, startHeight + startY - event.clientY));
      this.element.style.flexBasis = `${Math.round(height)}px`;
    };
    const up = () => {
      grip.removeEventListener("pointermove", move);
      grip.removeEventListener("pointerup", up);
    };
    grip.addEventListener("pointermove", move);
    grip.addEventListener("pointerup", up);
  }

  private clearPrompt(): void {
    this.request?.abort();
    this.run = null;
    this.result = null;
    replace(this.promptView, h("div", { class: "status" }, "Pin components, then Ablate pinned or Keep only pinned to see how the shown prompt's predictions change."));
  }

  private show(view: View): void {
    this.view = view;
    this.body.hidden = false;
    this.element.classList.add("open");
    this.promptView.hidden = view !== "prompt";
    this.searchEffects.element.hidden = view !== "search";
    if (view === "prompt" && !this.run) this.clearPrompt();
    this.sync();
  }

  private collapse(): void {
    this.body.hidden = true;
    this.element.classList.remove("open");
    this.sync();
  }

  private sync(): void {
    const n = this.pins.length;
    for (const [mode, button] of Object.entries(this.buttons) as [InterventionMode, HTMLButtonElement][]) {
      button.disabled = !n || !this.target;
      button.setAttribute("aria-pressed", String(this.mode === mode && this.run !== null));
      button.textContent = `${mode === "ablate" ? "Ablate" : "Keep only"} pinned${n ? ` (${n})` : ""}`;
    }
    if (!n) this.buttons.ablate.title = "Pin components first (shift-click a node)";
    const action = this.searchAction();
    this.searchButton.disabled = action.disabled;
    this.searchButton.title = this.search ? action.title : "Search for prompts first (the Search panel): this runs the intervention over its results";
    this.searchButton.textContent = this.search ? `Over ${Math.min(this.search.count, SIZES.interventionSearch)} search results` : "Over search results";
    // the two views' tabs, once there is a search run to switch to
    const open = !this.body.hidden;
    this.tabRow.hidden = !this.searchEffects.started();
    for (const [view, button] of Object.entries(this.tabs) as [View, HTMLButtonElement][]) {
      button.setAttribute("aria-selected", String(open && this.view === view));
    }
    this.close.hidden = !open;
  }
}

/** The summary line and the per-position table of one intervention's result. */
function effectsTable(result: InterventionResult, run: PromptRun, focus: (pos: number) => void): HTMLElement[] {
  const changed = result.positions.filter(top1Changed);
  const nexts = result.positions.map((p) => p.delta_logprob_next).filter((d): d is number => d !== null);
  const mean = nexts.length ? nexts.reduce((a, b) => a + b, 0) / nexts.length : null;
  const worst = nexts.length ? Math.min(...nexts) : null;
  const worstPos = worst === null ? -1 : result.positions.findIndex((p) => p.delta_logprob_next === worst);
  const unknown = result.unknown_tokens ? ` · ${result.unknown_tokens} token${result.unknown_tokens === 1 ? "" : "s"} unknown to the tokenizer` : "";
  const summary = h(
    "div",
    { class: "effects-summary", testid: "intervention-summary" },
    h("strong", {}, `${run.label}: ${MODE_TEXT[run.mode](run.keys.length)}`),
    h("span", { class: "keys", title: run.keys.join("\n") }, ` (${run.keys.join(", ")})`),
    h("br"),
    `Top-1 token changed at ${changed.length} of ${result.positions.length} positions`,
    mean !== null ? ` · Δ log p(next token): mean ${deltaText(mean)}, worst ${deltaText(worst)} at ${worstPos}` : "",
    unknown,
    h("div", { class: "muted legend-line" }, `${DELTA_LEGEND} Underlined: the token that follows; outlined: a changed top-1.`),
  );
  const head = h(
    "tr",
    {},
    h("th", { title: "position (from 0)" }, "pos"),
    h("th", { class: "left" }, "token → next"),
    h("th", { class: "left", title: "The target model's top tokens" }, "target"),
    h("th", { class: "left", title: "The CI-masked component model's top tokens (the baseline of the changes)" }, "SPD"),
    h("th", { class: "left", title: "The intervened model's top tokens; a changed top-1 is outlined" }, "intervened"),
    h("th", { title: "Intervened minus CI-masked log-probability of the token that follows" }, "Δ next"),
    h("th", { title: "Intervened minus CI-masked log-probability of the target model's top token" }, "Δ top"),
  );
  const rows = result.positions.map((effect) => effectRow(effect, result, focus));
  const table = h("table", { class: "effects", testid: "intervention-table" }, h("thead", {}, head), h("tbody", {}, ...rows));
  const quiet = rows.filter((row) => row.classList.contains("quiet")).length;
  const onlyChanged = h("input", { testid: "intervention-changed-only", attrs: { type: "checkbox" } });
  onlyChanged.addEventListener("change", () => table.classList.toggle("only-changed", onlyChanged.checked));
  summary.append(h("label", { class: "only-changed-toggle", title: "Hide the positions where neither Δ reaches 0.01 and the top-1 token stays" }, onlyChanged, ` hide the ${quiet} unchanged position${quiet === 1 ? "" : "s"}`));
  return [summary, h("div", { class: "effects-scroll" }, table)];
}

/** A position where nothing visible changed: same top-1 and both Δ round to 0.00. */
function quiet(effect: PositionEffect): boolean {
  const small = (d: number | null) => d === null || Math.abs(d) < 0.005;
  return !top1Changed(effect) && small(effect.delta_logprob_next) && small(effect.delta_logprob_top);
}

function effectRow(effect: PositionEffect, result: InterventionResult, focus: (pos: number) => void): HTMLElement {
  const pos = effect.pos;
  const next = result.token_ids[pos + 1];
  const changed = top1Changed(effect);
  const spdIds = tokenIds(effect.spd);
  const topK = (list: readonly TokenProb[], intervened: boolean) =>
    h(
      "ol",
      { class: "topk" },
      ...list.map((t, rank) => {
        const classes = ["tp"];
        if (t.token_id === next) classes.push("next");
        if (intervened && rank === 0 && changed) classes.push("top1-changed");
        else if (intervened && !spdIds.has(t.token_id)) classes.push("new");
        return h(
          "li",
          { class: classes.join(" "), title: `${JSON.stringify(t.token)} (id ${t.token_id}): p = ${t.prob.toPrecision(3)}${t.token_id === next ? " · the token that follows" : ""}` },
          h("span", { class: "t" }, showToken(t.token)),
          h("span", { class: "p" }, percent(t.prob)),
        );
      }),
    );
  const delta = (value: number | null, title: string) =>
    h("td", { class: "delta", style: { background: deltaBackground(value) }, title }, deltaText(value));
  return h(
    "tr",
    {
      testid: "intervention-row",
      class: changed ? "changed" : quiet(effect) ? "quiet" : "",
      attrs: { "data-pos": String(pos), "data-top1-changed": String(changed) },
      title: "click to focus this position in the graph",
      onclick: () => focus(pos),
    },
    h("td", { class: "pos" }, String(pos)),
    h(
      "td",
      { class: "left token" },
      h("span", { class: "t" }, showToken(result.tokens[pos] ?? "")),
      h("span", { class: "arrow" }, " → "),
      next === undefined ? h("span", { class: "muted" }, "end") : h("span", { class: "t next" }, showToken(result.tokens[pos + 1] ?? "")),
      changed ? h("div", { class: "badge", testid: "top1-changed" }, "top-1 changed") : null,
    ),
    h("td", { class: "left" }, topK(effect.target, false)),
    h("td", { class: "left" }, topK(effect.spd, false)),
    h("td", { class: "left" }, topK(effect.intervened, true)),
    delta(effect.delta_logprob_next, "intervened minus CI-masked log p of the token that follows"),
    delta(effect.delta_logprob_top, `intervened minus CI-masked log p of ${JSON.stringify(effect.target[0]?.token ?? "")}, the target model's top token`),
  );
}
