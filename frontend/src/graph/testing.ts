// Small graphs for the unit tests.
import type { PromptGraph } from "../api/client";

type NodeTuple = [layer: string, pos: number, component: number, ci: number];
type EdgeTuple = [source: number, target: number, value: number];

export function promptGraph(tokens: string[], nodes: NodeTuple[], edges: EdgeTuple[], meanCi: Record<string, number> = {}): PromptGraph {
  return {
    id: 7,
    tokens,
    token_ids: tokens.map((_, i) => i),
    source: {},
    nodes: nodes.map(([layer, pos, component, ci]) => ({ layer, pos, component, ci })),
    edges: edges.map(([source, target, value]) => ({ source, target, value })),
    n_nodes_total: nodes.length,
    n_edges_total: edges.length,
    n_edges_dropped: 0,
    normalize: "none",
    mean_ci: meanCi,
    output_tokens: {},
    prompt_counts: {},
  };
}
