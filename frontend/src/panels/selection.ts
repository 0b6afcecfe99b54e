// The selected node, docked in the side panel: its card, its strongest edges (each a link to the
// node at the other end), its partners across the corpus (attribution summed over every stored
// graph, and co-firing), pinning, and tracing its upstream or downstream subgraph.
import { ApiError, type Api, type CofiringList, type PartnerDirection, type PartnerList } from "../api/client";
import type { ComponentStore } from "../components";
import type { GraphData } from "../graph/data";
import { LIMITS, SIZES, clampTo } from "../limits";
import type { ViewStore } from "../state";
import { componentCard, type HereInfo } from "../ui/card";
import { format, h, replace, signed, valueDigits } from "../ui/dom";
import { nodeEdgesSection, pseudoNodeCard } from "../ui/graphCards";
import type { EdgeRef, TraceDirection } from "../url";

type Partners = { status: "loading" } | { status: "ready"; list: CofiringList } | { status: "error"; message: string };

type Corpus =
  | { status: "loading" }
  | { status: "ready"; upstream: PartnerList; downstream: PartnerList }
  | { status: "error"; message: string };

export interface SelectionActions {
  go(node: number): void;
  /** Show a component: select it in the shown graph, or find the prompts where it fires. */
  show(key: string): void;
  togglePin(key: string): void;
  findPrompts(key: string): void;
  /** List the prompts where `edge.source` drives `edge.target`. */
  searchEdge(edge: EdgeRef): void;
  /** Refresh the panel (co-firing or corpus partners arrived). */
  changed(): void;
}

const STALE = "corpus_tables_stale";

/** A component key that may wrap after each dot and before the index, not inside a word. */
function breakable(key: string): (string | HTMLElement)[] {
  return key.split(/(?<=\.)|(?=:)/).flatMap((part, i) => (i ? [h("wbr"), part] : [part]));
}

export class SelectionPanel {
  readonly element: HTMLElement;
  private readonly body: HTMLElement;
  private readonly partners = new Map<string, Partners>();
  private readonly corpus = new Map<string, Corpus>();
  /** Set once the server says its corpus tables are stale: every component's answer would be
   * the same refusal, so no more are asked for. */
  private corpusStale: string | null = null;
  private api: Api | null = null;

  constructor(
    private readonly store: ViewStore,
    private readonly components: ComponentStore,
    private readonly actions: SelectionActions,
  ) {
    this.body = h("div", { class: "selected-body" });
    this.element = h("section", { class: "panel selected", testid: "selected-card" }, this.body);
    this.element.hidden = true;
  }

  /** Where co-firing and corpus partners come from (null in File mode: none). */
  configure(api: Api | null): void {
    this.api = api;
    this.partners.clear();
    this.corpus.clear();
    this.corpusStale = null;
  }

  private corpusOf(key: string): Corpus | null {
    if (this.corpusStale !== null) return { status: "error", message: this.corpusStale };
    const known = this.corpus.get(key);
    if (known || !this.api) return known ?? null;
    const loading: Corpus = { status: "loading" };
    this.corpus.set(key, loading);
    const api = this.api;
    Promise.all([api.partners(key, "upstream", SIZES.corpusPartners), api.partners(key, "downstream", SIZES.corpusPartners)]).then(
      ([upstream, downstream]) => {
        this.corpus.set(key, { status: "ready", upstream, downstream });
        this.actions.changed();
      },
      (error: unknown) => {
        if (error instanceof ApiError && error.code === STALE) {
          this.corpusStale = "Not available: this database's corpus tables are out of date (run locattr db aggregate on it).";
        }
        this.corpus.set(key, { status: "error", message: `Could not load: ${(error as Error).message}` });
        this.actions.changed();
      },
    );
    return loading;
  }

  /** The components `key` exchanges the most attribution with over every stored graph: its
   * sources ("driven by") and its targets ("drives"). */
  private corpusSection(key: string, inGraph: (key: string) => boolean): HTMLElement | null {
    const corpus = this.corpusOf(key);
    if (!corpus) return null;
    const label = (n: number | null) =>
      h("div", { class: "label", title: "attribution between two components summed over every stored graph (any positions)" }, `Across the corpus${n === null ? "" : ` · summed over ${n.toLocaleString()} prompts`}`);
    if (corpus.status !== "ready") {
      const text = corpus.status === "loading" ? "loading" : corpus.message;
      return h("div", { class: "corpus", testid: "corpus" }, label(null), h("div", { class: corpus.status === "loading" ? "muted loading" : "muted", testid: "corpus-status" }, text));
    }
    const pinned = this.store.get().pinned;
    const list = (direction: PartnerDirection, found: PartnerList) => {
      const title = direction === "upstream" ? "Driven by" : "Drives";
      const edgeOf = (other: string): EdgeRef => (direction === "upstream" ? { source: other, target: key } : { source: key, target: other });
      const rows = found.items.map((item) => {
        const here = inGraph(item.key);
        return h(
          "tr",
          {
            class: "corpus-item",
            testid: "corpus-item",
            attrs: { "data-key": item.key, "data-direction": direction, "data-total": String(item.total), "data-count": String(item.prompt_count) },
          },
          h(
            "td",
            {},
            h(
              "button",
              {
                class: here ? "link key" : "link key absent",
                testid: "corpus-show",
                title: here ? `${item.key}: select it in this graph` : `${item.key} is not in this graph: find the prompts where it fires`,
                onclick: () => this.actions.show(item.key),
              },
              ...breakable(item.key),
            ),
          ),
          h("td", { class: "total", title: `Σ value ${format(item.total, 4)} · Σ |value| ${format(item.total_abs, 4)}` }, signed(item.total, valueDigits(item.total))),
          h(
            "td",
            { class: "count" },
            h(
              "button",
              {
                class: "link",
                testid: "corpus-edge-search",
                title: `${item.prompt_count} prompts have an edge between the two: list those where it reaches the edge index's floor`,
                onclick: () => this.actions.searchEdge(edgeOf(item.key)),
              },
              String(item.prompt_count),
            ),
          ),
          h(
            "td",
            { class: "pin" },
            pinned.includes(item.key)
              ? h("span", { class: "muted" }, "pinned")
              : h("button", { class: "link", testid: "corpus-pin", title: `pin ${item.key}`, onclick: () => this.actions.togglePin(item.key) }, "pin"),
          ),
        );
      });
      const head = h(
        "tr",
        {},
        h("th", { title: direction === "upstream" ? "components whose edges end at this one" : "components this one's edges end at" }, title),
        h("th", { title: "sum of the edges' values over every stored graph" }, "Σ value"),
        h("th", { title: "prompts whose graph has such an edge" }, "prompts"),
        h("th", {}),
      );
      return h(
        "div",
        { class: "corpus-list", testid: `corpus-${direction}` },
        h("table", {}, h("thead", {}, head), h("tbody", {}, ...rows)),
        rows.length ? null : h("div", { class: "muted" }, "none"),
        found.n_partners > found.items.length ? h("div", { class: "muted more-note" }, `strongest ${found.items.length} of ${found.n_partners}`) : null,
      );
    };
    return h("div", { class: "corpus", testid: "corpus" }, label(corpus.upstream.n_prompts), list("upstream", corpus.upstream), list("downstream", corpus.downstream));
  }

  private partnersOf(key: string): Partners | null {
    const known = this.partners.get(key);
    if (known || !this.api) return known ?? null;
    const loading: Partners = { status: "loading" };
    this.partners.set(key, loading);
    this.api.cofiring(key, SIZES.cofiring).then(
      (list) => {
        this.partners.set(key, { status: "ready", list });
        this.actions.changed();
      },
      (error: unknown) => {
        this.partners.set(key, { status: "error", message: (error as Error).message });
        this.actions.changed();
      },
    );
    return loading;
  }

  private partnersSection(key: string): HTMLElement | null {
    const partners = this.partnersOf(key);
    if (!partners) return null;
    const pinned = this.store.get().pinned;
    let body: HTMLElement;
    if (partners.status === "loading") body = h("div", { class: "muted loading" }, "loading");
    else if (partners.status === "error") body = h("div", { class: "error" }, partners.message);
    else if (!partners.list.items.length) body = h("div", { class: "muted" }, "none");
    else
      body = h(
        "ol",
        {},
        ...partners.list.items.map((item) =>
          h(
            "li",
            { class: "partner", testid: "cofiring-item", attrs: { "data-key": item.key } },
            h("code", {}, item.key),
            h("small", { title: "prompts where both fire · lift = observed / expected if independent · Jaccard" }, `${item.count} · lift ${format(item.lift, 2)} · J ${format(item.jaccard, 2)}`),
            pinned.includes(item.key)
              ? h("span", { class: "muted" }, "pinned")
              : h("button", { testid: "cofiring-pin", class: "link", onclick: () => this.actions.togglePin(item.key) }, "pin"),
          ),
        ),
      );
    return h("div", { class: "cofiring", testid: "cofiring" }, h("div", { class: "label" }, "Fires with (across the corpus, by lift)"), body);
  }

  /** `node`: the selected node's index in `graph` (-1 when it is not in this graph). */
  render(graph: GraphData | null, node: number, here: (key: string) => HereInfo | null): void {
    const { selected, trace, pinned } = this.store.get();
    this.element.hidden = selected === null;
    if (!selected) return;
    const close = h("button", { class: "unpin", testid: "close-selected", title: "close (Esc)", onclick: () => this.store.set({ selected: null }) }, "✕");
    if (!graph || node < 0) {
      replace(this.body, close, h("h2", {}, "Selected"), h("div", { class: "muted" }, `${selected.key} at position ${selected.pos} is not in this graph.`));
      return;
    }
    const pseudo = pseudoNodeCard(graph, node);
    const card = pseudo ?? componentCard(selected.key, here(selected.key), this.components.get(selected.key), SIZES.cardExamples);
    const isPinned = pinned.includes(selected.key);
    const traceButton = (direction: TraceDirection, label: string) =>
      h(
        "button",
        {
          testid: `trace-${direction}`,
          class: trace?.direction === direction ? "active" : "",
          title: `Show only what this node ${direction === "up" ? "is driven by" : "drives"}, following the ${LIMITS.traceFanout.default} strongest edges of each node`,
          onclick: () => this.store.set({ trace: trace?.direction === direction ? null : { direction, hops: trace?.hops ?? LIMITS.traceHops.default } }),
        },
        label,
      );
    const hops = h("input", {
      testid: "trace-hops",
      title: "hops to follow",
      attrs: { type: "number", min: String(LIMITS.traceHops.min), max: String(LIMITS.traceHops.max), value: String(trace?.hops ?? LIMITS.traceHops.default) },
    });
    hops.addEventListener("change", () => {
      const current = this.store.get().trace;
      if (current) this.store.set({ trace: { ...current, hops: clampTo("traceHops", Number(hops.value)) } });
    });
    replace(
      this.body,
      close,
      h("h2", {}, "Selected"),
      ...card,
      h(
        "div",
        { class: "actions" },
        pseudo ? null : h("button", { testid: "pin-selected", onclick: () => this.actions.togglePin(selected.key) }, isPinned ? "Unpin" : "Pin component"),
        pseudo ? null : h("button", { testid: "find-prompts", onclick: () => this.actions.findPrompts(selected.key) }, "Prompts where it fires"),
        traceButton("up", "Trace upstream"),
        traceButton("down", "Trace downstream"),
        h("label", { class: "hops" }, "hops ", hops),
      ),
      nodeEdgesSection(graph, node, SIZES.nodeEdges, {
        pick: (other) => this.actions.go(other),
        searchEdge: this.api ? (edge) => this.actions.searchEdge(edge) : null,
      }),
      pseudo ? null : this.corpusSection(selected.key, (key) => (here(key)?.positions.length ?? 0) > 0),
      pseudo ? null : this.partnersSection(selected.key),
    );
  }
}
