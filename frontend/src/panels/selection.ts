// The selected node, docked in the side panel: its card, its strongest edges (each a link to the
// node at the other end), pinning, and tracing its upstream or downstream subgraph.
import type { ComponentStore } from "../components";
import type { GraphData } from "../graph/data";
import { LIMITS, SIZES, clampTo } from "../limits";
import type { ViewStore } from "../state";
import { componentCard, type HereInfo } from "../ui/card";
import { h, replace } from "../ui/dom";
import { nodeEdgesSection, pseudoNodeCard } from "../ui/graphCards";
import type { TraceDirection } from "../url";

export class SelectionPanel {
  readonly element: HTMLElement;
  private readonly body: HTMLElement;

  constructor(
    private readonly store: ViewStore,
    private readonly components: ComponentStore,
    private readonly go: (node: number) => void,
    private readonly togglePin: (key: string) => void,
  ) {
    this.body = h("div", { class: "selected-body" });
    this.element = h("section", { class: "panel selected", testid: "selected-card" }, this.body);
    this.element.hidden = true;
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
        pseudo ? null : h("button", { testid: "pin-selected", onclick: () => this.togglePin(selected.key) }, isPinned ? "Unpin" : "Pin component"),
        traceButton("up", "Trace upstream"),
        traceButton("down", "Trace downstream"),
        h("label", { class: "hops" }, "hops ", hops),
      ),
      nodeEdgesSection(graph, node, SIZES.nodeEdges, this.go),
    );
  }
}
