// What a node connects to: its strongest edges in the loaded graph (for its card) and the
// subgraph reached by following the strongest edges a few hops (a trace, as in circuit-tracer's
// subgraph view).
import type { GraphData } from "./data";
import type { Visible } from "./filter";

export interface NodeEdge {
  edge: number;
  /** The node at the other end. */
  other: number;
  value: number;
}

/** The `limit` strongest incoming and outgoing edges of node `node` among all loaded edges,
 * strongest |value| first. */
export function nodeEdges(graph: GraphData, node: number, limit: number): { incoming: NodeEdge[]; outgoing: NodeEdge[] } {
  const incoming: NodeEdge[] = [];
  const outgoing: NodeEdge[] = [];
  const { edgeSource, edgeTarget, edgeValue } = graph;
  for (let j = 0; j < edgeValue.length; j++) {
    if (edgeTarget[j] === node) incoming.push({ edge: j, other: edgeSource[j]!, value: edgeValue[j]! });
    else if (edgeSource[j] === node) outgoing.push({ edge: j, other: edgeTarget[j]!, value: edgeValue[j]! });
  }
  const strongest = (list: NodeEdge[]) => list.sort((a, b) => Math.abs(b.value) - Math.abs(a.value) || a.edge - b.edge).slice(0, limit);
  return { incoming: strongest(incoming), outgoing: strongest(outgoing) };
}

/** The part of `visible` reached from `start` by following, from each node reached, its
 * `fanout` strongest shown edges towards the inputs ("up"stream) or the outputs ("down"stream),
 * at most `hops` edges deep. The start node is always kept. */
export function traceGraph(
  graph: GraphData,
  visible: Visible,
  start: number,
  direction: "up" | "down",
  hops: number,
  fanout: number,
): Visible {
  const n = graph.nodeCi.length;
  const from = direction === "up" ? graph.edgeTarget : graph.edgeSource;
  const to = direction === "up" ? graph.edgeSource : graph.edgeTarget;
  // shown edges grouped by the node they leave in trace direction, keeping strongest-first order
  const offsets = new Int32Array(n + 1);
  for (const j of visible.edges) offsets[from[j]! + 1]! += 1;
  for (let i = 0; i < n; i++) offsets[i + 1]! += offsets[i]!;
  const grouped = new Int32Array(visible.edges.length);
  const fill = offsets.slice(0, n);
  for (const j of visible.edges) grouped[fill[from[j]!]!++] = j;

  const reached = new Uint8Array(n);
  const kept = new Uint8Array(graph.edgeValue.length);
  reached[start] = 1;
  let frontier = [start];
  for (let hop = 0; hop < hops && frontier.length; hop++) {
    const next: number[] = [];
    for (const i of frontier) {
      const end = Math.min(offsets[i + 1]!, offsets[i]! + fanout);
      for (let k = offsets[i]!; k < end; k++) {
        const j = grouped[k]!;
        kept[j] = 1;
        const other = to[j]!;
        if (!reached[other]) {
          reached[other] = 1;
          next.push(other);
        }
      }
    }
    frontier = next;
  }
  const edges = visible.edges.filter((j) => kept[j] === 1);
  let maxAbs = 0;
  for (const j of edges) maxAbs = Math.max(maxAbs, Math.abs(graph.edgeValue[j]!));
  const nodes: number[] = [];
  for (let i = 0; i < n; i++) if (reached[i]) nodes.push(i);
  return { nodes: Int32Array.from(nodes), edges, maxAbs };
}
