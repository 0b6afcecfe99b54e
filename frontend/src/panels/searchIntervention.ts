// One intervention over a search's prompts, streamed: progress as prompts finish, one row per
// prompt (the change where the searched components fire), then the aggregate over all of them.
import type { Api, EffectDistribution, InterventionAggregate, PromptEffectSummary, SearchInterventionRequest } from "../api/client";
import { format, h, replace } from "../ui/dom";
import { DELTA_LEGEND, deltaBackground, deltaText, problemLine } from "../ui/effects";

/** A component search as `/api/interventions/search` takes it, with its size and a label. */
export interface SearchSpec {
  query: SearchInterventionRequest["search"];
  /** Prompts the search matches. */
  count: number;
  label: string;
}

type Order = "rank" | "worst";

interface Running {
  body: SearchInterventionRequest;
  what: string;
  searchLabel: string;
  total: number;
  matching: number;
  unknown: string[];
  rows: PromptEffectSummary[];
  aggregate: InterventionAggregate | null;
  state: "running" | "done" | "stopped" | "error";
  error: string;
  controller: AbortController;
}

const DISTRIBUTIONS: { name: "mean_delta_logprob_next" | "worst_delta_logprob_next" | "mean_delta_logprob_top"; label: string; title: string }[] = [
  { name: "mean_delta_logprob_next", label: "mean Δ next", title: "per prompt: the mean over the positions where the searched components fire" },
  { name: "worst_delta_logprob_next", label: "worst Δ next", title: "per prompt: the most negative change over those positions" },
  { name: "mean_delta_logprob_top", label: "mean Δ top", title: "per prompt: the mean change of the target model's top token over those positions" },
];

const QUANTILES: { key: keyof EffectDistribution; label: string }[] = [
  { key: "mean", label: "mean" },
  { key: "min", label: "min" },
  { key: "p05", label: "5%" },
  { key: "p25", label: "25%" },
  { key: "p50", label: "median" },
  { key: "p75", label: "75%" },
  { key: "p95", label: "95%" },
  { key: "max", label: "max" },
];

export class SearchEffects {
  readonly element: HTMLElement;
  private readonly head: HTMLElement;
  private readonly progress: HTMLProgressElement;
  private readonly progressText: HTMLElement;
  private readonly stopButton: HTMLButtonElement;
  private readonly aggregate: HTMLElement;
  private readonly order: HTMLSelectElement;
  private readonly rows: HTMLElement;
  private running: Running | null = null;
  private current: number | null = null;

  constructor(
    private readonly api: Api,
    private readonly actions: { open(id: number): void },
  ) {
    this.head = h("div", { class: "effects-summary", testid: "search-intervention-head" });
    this.progress = h("progress", { testid: "search-intervention-progress" });
    this.progressText = h("span", { class: "muted", testid: "search-intervention-progress-text" });
    this.stopButton = h("button", { testid: "search-intervention-stop", onclick: () => this.stop() }, "Stop");
    this.aggregate = h("div", { class: "aggregate", testid: "search-intervention-aggregate" });
    this.order = h(
      "select",
      { testid: "search-intervention-order", title: "Order of the prompts" },
      h("option", { attrs: { value: "rank" } }, "search order"),
      h("option", { attrs: { value: "worst" } }, "most affected first"),
    );
    this.order.addEventListener("change", () => this.renderRows());
    this.rows = h("tbody", {});
    this.element = h(
      "div",
      { class: "effects-view search-effects", testid: "search-intervention" },
      this.head,
      h("div", { class: "progress-row" }, this.progress, this.progressText, this.stopButton),
      this.aggregate,
      h(
        "div",
        { class: "effects-scroll" },
        h(
          "table",
          { class: "effects prompts", testid: "search-intervention-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", {}, "prompt"),
              h("th", { class: "left" }, h("span", {}, "text "), this.order),
              h("th", { title: "Positions where the searched components fire (where the change is measured)" }, "positions"),
              h("th", { title: "Mean over those positions of the change in log-probability of the token that follows" }, "mean Δ next"),
              h("th", { title: "The most negative of those changes" }, "worst Δ next"),
              h("th", { title: "Mean change in log-probability of the target model's top token" }, "mean Δ top"),
              h("th", { title: "Whether the intervened model's top token differs from the CI-masked model's at any of those positions" }, "top-1 changed"),
            ),
          ),
          this.rows,
        ),
      ),
      h("div", { class: "muted legend-line" }, DELTA_LEGEND),
    );
    this.element.hidden = true;
  }

  started(): boolean {
    return this.running !== null;
  }

  /** Mark the prompt now shown among the rows. */
  mark(id: number | null): void {
    this.current = id;
    for (const row of Array.from(this.rows.children) as HTMLElement[]) row.classList.toggle("active", Number(row.dataset.promptId) === id);
  }

  stop(): void {
    const running = this.running;
    if (!running || running.state !== "running") return;
    running.controller.abort();
    running.state = "stopped";
    this.render();
  }

  async run(body: SearchInterventionRequest, what: string, searchLabel: string): Promise<void> {
    this.stop();
    const running: Running = {
      body,
      what,
      searchLabel,
      total: body.limit ?? 0,
      matching: 0,
      unknown: [],
      rows: [],
      aggregate: null,
      state: "running",
      error: "",
      controller: new AbortController(),
    };
    this.running = running;
    this.render();
    try {
      await this.api.interveneSearch(
        body,
        (event) => {
          if (this.running !== running) return;
          switch (event.type) {
            case "start":
              running.total = event.total;
              running.matching = event.matching;
              running.unknown = event.unknown_components;
              break;
            case "prompt":
              running.rows.push(event);
              running.total = event.total;
              break;
            case "done":
              running.aggregate = event.aggregate;
              running.state = "done";
              break;
            case "error":
              running.aggregate = event.aggregate;
              running.state = "error";
              running.error = `Stopped early: ${event.detail}.`;
              break;
          }
          this.render();
        },
        running.controller.signal,
      );
      if (this.running === running && running.state === "running") {
        running.state = "error";
        running.error = "The server ended the stream before the summary: run it again.";
      }
    } catch (error) {
      if (error instanceof DOMException && error.name === "AbortError") return;
      if (this.running !== running) return;
      running.state = "error";
      running.error = problemLine(error, "The intervention over the search");
    }
    if (this.running === running) this.render();
  }

  private render(): void {
    const running = this.running;
    if (!running) return;
    const { total, rows, state } = running;
    const unknown = running.unknown.length ? ` (unknown here: ${running.unknown.join(", ")})` : "";
    replace(
      this.head,
      h("strong", {}, `${running.searchLabel}: ${running.what}`),
      h("span", { class: "keys" }, ` (${running.body.intervention.components?.join(", ") ?? ""})`),
    );
    this.progress.max = Math.max(1, total);
    this.progress.value = rows.length;
    this.progress.hidden = state !== "running";
    this.stopButton.hidden = state !== "running";
    const progress = `${rows.length.toLocaleString()} of ${total.toLocaleString()} prompts`;
    const matching = ` (${running.matching.toLocaleString()} match the search${unknown}); changes measured where the searched components fire`;
    this.progressText.className = state === "error" ? "status error" : state === "running" ? "loading" : "";
    this.progressText.dataset.state = state;
    this.progressText.textContent =
      state === "running" ? `${progress}${matching}` : state === "stopped" ? `Stopped after ${progress}.` : state === "error" ? running.error : `Done: ${progress}${matching}.`;
    this.renderAggregate(running);
    this.renderRows();
  }

  private renderAggregate(running: Running): void {
    const aggregate = running.aggregate;
    if (!aggregate) {
      // while streaming: the share so far, from the rows that arrived
      const n = running.rows.length;
      const changed = running.rows.filter((r) => r.top1_changed).length;
      replace(this.aggregate, n ? h("div", { class: "share" }, `So far: top-1 changed in ${changed} of ${n} prompts.`) : null);
      return;
    }
    const share = aggregate.share_top1_changed;
    const head = h("tr", {}, h("th", { class: "left" }, "over prompts"), h("th", {}, "n"), ...QUANTILES.map((q) => h("th", {}, q.label)));
    const lines = DISTRIBUTIONS.map(({ name, label, title }) => {
      const d = aggregate[name];
      return h(
        "tr",
        { testid: "aggregate-row", attrs: { "data-name": name } },
        h("th", { class: "left", title }, label),
        h("td", {}, d ? String(d.n) : "0"),
        ...QUANTILES.map((q) => {
          const value = d ? (d[q.key] as number) : null;
          return h("td", { class: "delta", style: { background: deltaBackground(value) } }, deltaText(value));
        }),
      );
    });
    replace(
      this.aggregate,
      h(
        "div",
        { class: "share", testid: "aggregate-share" },
        h("strong", {}, `Top-1 changed in ${format(share * 100, 0)}% of ${aggregate.n_prompts.toLocaleString()} prompts`),
        h("span", { class: "bar", attrs: { "aria-hidden": "true" } }, h("span", { style: { width: `${Math.round(share * 100)}%` } })),
      ),
      h("table", { class: "effects quantiles", testid: "aggregate-table" }, h("thead", {}, head), h("tbody", {}, ...lines)),
    );
  }

  private renderRows(): void {
    const running = this.running;
    if (!running) return;
    const rows = [...running.rows];
    if (this.order.value === ("worst" satisfies Order)) {
      const worst = (r: PromptEffectSummary) => r.worst_delta_logprob_next ?? r.worst_delta_logprob_top ?? 0;
      rows.sort((a, b) => worst(a) - worst(b));
    }
    const delta = (value: number | null) => h("td", { class: "delta", style: { background: deltaBackground(value) } }, deltaText(value));
    replace(
      this.rows,
      ...rows.map((row) =>
        h(
          "tr",
          {
            testid: "search-intervention-row",
            class: row.prompt_id === this.current ? "active" : "",
            attrs: { "data-prompt-id": String(row.prompt_id), "data-top1-changed": String(row.top1_changed) },
            title: "click to open this prompt",
            onclick: () => this.actions.open(row.prompt_id),
          },
          h("td", { class: "id" }, `#${row.prompt_id}`),
          h("td", { class: "left preview" }, row.preview),
          h("td", { title: row.positions.join(", ") }, String(row.positions.length)),
          delta(row.mean_delta_logprob_next),
          delta(row.worst_delta_logprob_next),
          delta(row.mean_delta_logprob_top),
          h("td", { class: row.top1_changed ? "changed-mark" : "muted" }, row.top1_changed ? "changed" : "–"),
        ),
      ),
    );
  }
}
