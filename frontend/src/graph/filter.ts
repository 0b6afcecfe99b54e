// Client-side filters: which nodes and edges of a loaded graph are shown.
import { LIMITS } from "../limits";
import { OUTPUT_LAYER, WTE_LAYER, type GraphData } from "./data";

export interface FilterOptions {
  /** Keep at most this many edges, strongest |value| first. */
  topK: number;
  /** Drop edges with |value| below this. */
  minAbs: number;
  /** Hide nodes whose CI at this position is below this. */
  ciThreshold: number;
  /** Hide components whose dataset mean CI is above this (they fire everywhere); components
   * without a known mean CI are kept. */
  maxMeanCi: number;
  /** Hide components that fire in more than this share of the stored prompts (unspecific);
   * components whose prompt count is unknown are kept. */
  maxShare: number;
}

export const DEFAULT_FILTERS: Readonly<FilterOptions> = {
  topK: LIMITS.topK.default,
  minAbs: LIMITS.minAbs.default,
  ciThreshold: LIMITS.ciThreshold.default,
  maxMeanCi: LIMITS.maxMeanCi.default,
  maxShare: LIMITS.maxShare.default,
};

export interface Visible {
  /** Shown node indices, ascending. */
  nodes: Int32Array;
  /** Shown edge indices, strongest |value| first (ties: lower index first). */
  edges: Int32Array;
  /** Largest |value| among shown edges (0 when none). */
  maxAbs: number;
}

/** Which nodes the CI and mean-CI filters keep; input and output nodes always pass (an output's
 * "CI" is its probability, already cut at generation). */
export function nodePasses(graph: GraphData, options: FilterOptions): Uint8Array {
  const n = graph.nodeCi.length;
  const ok = new Uint8Array(n);
  const pseudo = graph.layers.map((layer) => layer === WTE_LAYER || layer === OUTPUT_LAYER);
  for (let i = 0; i < n; i++) {
    if (pseudo[graph.nodeLayer[i]!]) {
      ok[i] = 1;
      continue;
    }
    const mean = graph.meanCi.get(graph.nodeKey[i]!);
    const count = graph.promptCount.get(graph.nodeKey[i]!);
    const common = count !== undefined && graph.nPrompts > 0 && count / graph.nPrompts > options.maxShare;
    ok[i] = graph.nodeCi[i]! >= options.ciThreshold && !(mean !== undefined && mean > options.maxMeanCi) && !common ? 1 : 0;
  }
  return ok;
}

/** Edges between passing nodes with |value| >= minAbs, the topK strongest; nodes touched by them
 * (all passing nodes when the graph has no edges at all, so an edgeless graph still shows). */
export function filterGraph(graph: GraphData, options: FilterOptions): Visible {
  const ok = nodePasses(graph, options);
  const values = graph.edgeValue;
  const m = values.length;
  const candidates = new Int32Array(m);
  let count = 0;
  let sorted = true;
  let previous = Infinity;
  for (let j = 0; j < m; j++) {
    const magnitude = Math.abs(values[j]!);
    if (magnitude < options.minAbs || !ok[graph.edgeSource[j]!] || !ok[graph.edgeTarget[j]!]) continue;
    if (magnitude > previous) sorted = false;
    previous = magnitude;
    candidates[count++] = j;
  }
  let edges = candidates.subarray(0, count);
  if (!sorted) {
    edges = Int32Array.from(edges).sort((a, b) => Math.abs(values[b]!) - Math.abs(values[a]!) || a - b);
  }
  edges = Int32Array.from(edges.subarray(0, Math.max(0, Math.min(options.topK, edges.length))));
  const touched = new Uint8Array(ok.length);
  let maxAbs = 0;
  for (const j of edges) {
    touched[graph.edgeSource[j]!] = 1;
    touched[graph.edgeTarget[j]!] = 1;
    maxAbs = Math.max(maxAbs, Math.abs(values[j]!));
  }
  const shown = m === 0 ? ok : touched;
  const nodes: number[] = [];
  for (let i = 0; i < shown.length; i++) if (shown[i]) nodes.push(i);
  return { nodes: Int32Array.from(nodes), edges, maxAbs };
}
