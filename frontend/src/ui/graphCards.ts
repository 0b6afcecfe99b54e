// Card sections that read the loaded graph: a node's strongest edges, an edge's card, and the
// cards of the input and output pseudo-nodes.
import { OUTPUT_LAYER, WTE_LAYER, componentEdge, nodeLabel, outputToken, type GraphData } from "../graph/data";
import { nodeEdges, type NodeEdge } from "../graph/trace";
import type { EdgeRef } from "../url";
import { format, h, showToken, signed } from "./dom";

/** What a docked card's edge rows do: go to the node at the other end, and list the prompts
 * where the edge's two components are joined (edges between components only). */
export interface EdgeRowActions {
  pick(node: number): void;
  searchEdge: ((edge: EdgeRef) => void) | null;
}

function edgeItem(graph: GraphData, item: NodeEdge, actions: EdgeRowActions | null): HTMLElement {
  const label = nodeLabel(graph, item.other);
  const ends = actions?.searchEdge ? componentEdge(graph, item.edge) : null;
  const search = actions?.searchEdge;
  return h(
    "li",
    {
      class: actions ? "edge-item clickable" : "edge-item",
      attrs: { "data-node": String(item.other), "data-value": String(item.value) },
      title: actions ? `go to ${label}` : label,
      onclick: actions ? () => actions.pick(item.other) : undefined,
    },
    signed(item.value),
    h("span", { class: "other" }, label),
    ends && search
      ? h(
          "button",
          {
            class: "link edge-search",
            testid: "edge-search",
            attrs: { "data-source": ends.source, "data-target": ends.target },
            title: `prompts with this edge: where ${ends.source} drives ${ends.target} (any positions)`,
            onclick: (event) => {
              event.stopPropagation();
              search(ends);
            },
          },
          "prompts",
        )
      : null,
  );
}

/** The node's strongest incoming and outgoing edges in this graph, signed; `actions` (when
 * given) make each one a link to the node at its other end, with an edge search. */
export function nodeEdgesSection(graph: GraphData, node: number, limit: number, actions: EdgeRowActions | null): HTMLElement {
  const { incoming, outgoing } = nodeEdges(graph, node, limit);
  const list = (title: string, items: NodeEdge[]) =>
    h(
      "div",
      { class: "edge-list" },
      h("div", { class: "label" }, title),
      items.length ? h("ol", {}, ...items.map((item) => edgeItem(graph, item, actions))) : h("div", { class: "muted" }, "none in this graph"),
    );
  return h(
    "div",
    { class: "node-edges", testid: "node-edges" },
    list("Strongest inputs (from earlier layers)", incoming),
    list("Strongest outputs (to later layers)", outgoing),
  );
}

/** The card of edge j: which node drives which, by how much, and how it ranks; `searchable`:
 * a click on an edge between components lists the prompts with it. */
export function edgeCardContent(graph: GraphData, edge: number, shownRank: number, shown: number, searchable: boolean): HTMLElement[] {
  const source = graph.edgeSource[edge]!;
  const target = graph.edgeTarget[edge]!;
  const value = graph.edgeValue[edge]!;
  const card: HTMLElement[] = [
    h("div", { class: "card-title" }, h("strong", {}, "Edge "), signed(value)),
    h(
      "dl",
      { class: "edge-ends" },
      h("dt", {}, "from"),
      h("dd", { testid: "edge-source" }, nodeLabel(graph, source)),
      h("dt", {}, "to"),
      h("dd", { testid: "edge-target" }, nodeLabel(graph, target)),
    ),
    h(
      "div",
      { class: "muted" },
      `attribution ${format(value, 4)}${graph.normalize === "none" ? "" : ` (normalised: ${graph.normalize})`} · rank ${shownRank + 1} of ${shown.toLocaleString()} shown`,
    ),
  ];
  if (searchable && componentEdge(graph, edge)) card.push(h("div", { class: "hint" }, "click: prompts with this edge (across the corpus)"));
  return card;
}

/** The card of an input (`wte`) or output node; null for component nodes. */
export function pseudoNodeCard(graph: GraphData, node: number): HTMLElement[] | null {
  const layer = graph.layers[graph.nodeLayer[node]!];
  const pos = graph.nodePos[node]!;
  if (layer === WTE_LAYER) {
    return [
      h("div", { class: "card-title" }, h("strong", {}, "Input token "), h("code", {}, showToken(graph.tokens[pos] ?? "")), ` [${pos}]`),
      h("div", { class: "muted" }, "Its embedding; edges show how it drives the components above."),
    ];
  }
  if (layer === OUTPUT_LAYER) {
    const next = graph.tokens[pos + 1];
    const card: HTMLElement[] = [
      h("div", { class: "card-title" }, h("strong", {}, "Prediction "), h("code", {}, showToken(outputToken(graph, node))), ` after [${pos}]`),
      h("div", {}, `probability ${format(graph.nodeCi[node], 3)}`),
    ];
    if (next !== undefined) card.push(h("div", { class: "muted" }, "actual next token ", h("code", {}, showToken(next))));
    return card;
  }
  return null;
}
