// The selected node, docked in the side panel: its card, its strongest edges (each a link to the
// node at the other end), pinning, and tracing its upstream or downstream subgraph.
import type { Api, CofiringList } from "../api/client";
import type { ComponentStore } from "../components";
import type { GraphData } from "../graph/data";
import { LIMITS, SIZES, clampTo } from "../limits";
import type { ViewStore } from "../state";
import { componentCard, type HereInfo } from "../ui/card";
import { format, h, replace } from "../ui/dom";
import { nodeEdgesSection, pseudoNodeCard } from "../ui/graphCards";
import type { TraceDirection } from "../url";

type Partners = { status: "loading" } | { status: "ready"; list: CofiringList } | { status: "error"; message: string };

export interface SelectionActions {
  go(node: number): void;
  togglePin(key: string): void;
  findPrompts(key: string): void;
  /** Refresh the panel (co-firing partners arrived). */
  changed(): void;
}

export class SelectionPanel {
  readonly element: HTMLElement;
  private readonly body: HTMLElement;
  private readonly partners = new Map<string, Partners>();
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

  /** Where co-firing partners come from (null in File mode: none). */
  configure(api: Api | null): void {
    this.api = api;
    this.partners.clear();
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
      nodeEdgesSection(graph, node, SIZES.nodeEdges, (other) => this.actions.go(other)),
      pseudo ? null : this.partnersSection(selected.key),
    );
  }
}
