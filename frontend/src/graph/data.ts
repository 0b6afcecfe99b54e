// The graph the view draws, in columnar form, and the JSON file format of an exported graph.
import type { ComponentDetail, Normalize, PromptGraph } from "../api/client";

export const WTE_LAYER = "wte";
export const OUTPUT_LAYER = "output";

/** Node i is (layers[nodeLayer[i]], nodePos[i], nodeComponent[i]) with CI nodeCi[i]; edge j goes
 * from node edgeSource[j] (earlier layer) to edgeTarget[j]; edges arrive strongest first. */
export interface GraphData {
  promptId: number;
  tokens: string[];
  layers: string[];
  nodeLayer: Int32Array;
  nodePos: Int32Array;
  nodeComponent: Int32Array;
  nodeCi: Float32Array;
  nodeKey: string[];
  edgeSource: Int32Array;
  edgeTarget: Int32Array;
  edgeValue: Float32Array;
  meanCi: ReadonlyMap<string, number>;
  /** Stored prompts each component fires in, and how many prompts are stored (0: unknown). */
  promptCount: ReadonlyMap<string, number>;
  nPrompts: number;
  /** Text of the tokens that `output` nodes stand for, by token id (component), when known. */
  outputTokens: ReadonlyMap<number, string>;
  normalize: Normalize;
  nEdgesTotal: number;
  nEdgesDropped: number;
}

export function componentKey(layer: string, component: number): string {
  return `${layer}:${component}`;
}

/** What node i is, for people: the input token, the predicted token, or the component key. */
export function nodeLabel(graph: GraphData, i: number): string {
  const layer = graph.layers[graph.nodeLayer[i]!];
  const pos = graph.nodePos[i]!;
  if (layer === WTE_LAYER) return `input ${JSON.stringify(graph.tokens[pos] ?? "")} @${pos}`;
  if (layer === OUTPUT_LAYER) return `output ${JSON.stringify(outputToken(graph, i))} @${pos}`;
  return `${graph.nodeKey[i]} @${pos}`;
}

/** Whether node i is a component of a decomposed layer (not an input or output node). */
export function isComponentNode(graph: GraphData, i: number): boolean {
  const layer = graph.layers[graph.nodeLayer[i]!];
  return layer !== WTE_LAYER && layer !== OUTPUT_LAYER;
}

/** The component keys at the ends of edge j, or null when an end is an input or output node
 * (only edges between components are summed and indexed across the corpus). */
export function componentEdge(graph: GraphData, j: number): { source: string; target: string } | null {
  const source = graph.edgeSource[j]!;
  const target = graph.edgeTarget[j]!;
  if (!isComponentNode(graph, source) || !isComponentNode(graph, target)) return null;
  return { source: graph.nodeKey[source]!, target: graph.nodeKey[target]! };
}

/** The predicted token an `output` node stands for (its id when the text is unknown). */
export function outputToken(graph: GraphData, i: number): string {
  const id = graph.nodeComponent[i]!;
  return graph.outputTokens.get(id) ?? `#${id}`;
}

/** `nPrompts`: prompts in the database the graph comes from (0 when unknown). */
export function toGraphData(graph: PromptGraph, nPrompts = 0): GraphData {
  const layerIndex = new Map<string, number>();
  const layers: string[] = [];
  const n = graph.nodes.length;
  const nodeLayer = new Int32Array(n);
  const nodePos = new Int32Array(n);
  const nodeComponent = new Int32Array(n);
  const nodeCi = new Float32Array(n);
  const nodeKey = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const node = graph.nodes[i]!;
    let li = layerIndex.get(node.layer);
    if (li === undefined) {
      li = layers.length;
      layers.push(node.layer);
      layerIndex.set(node.layer, li);
    }
    nodeLayer[i] = li;
    nodePos[i] = node.pos;
    nodeComponent[i] = node.component;
    nodeCi[i] = node.ci;
    nodeKey[i] = componentKey(node.layer, node.component);
  }
  const m = graph.edges.length;
  const edgeSource = new Int32Array(m);
  const edgeTarget = new Int32Array(m);
  const edgeValue = new Float32Array(m);
  for (let j = 0; j < m; j++) {
    const edge = graph.edges[j]!;
    edgeSource[j] = edge.source;
    edgeTarget[j] = edge.target;
    edgeValue[j] = edge.value;
  }
  return {
    promptId: graph.id,
    tokens: graph.tokens,
    layers,
    nodeLayer,
    nodePos,
    nodeComponent,
    nodeCi,
    nodeKey,
    edgeSource,
    edgeTarget,
    edgeValue,
    meanCi: new Map(Object.entries(graph.mean_ci ?? {})),
    promptCount: new Map(Object.entries(graph.prompt_counts ?? {})),
    nPrompts,
    outputTokens: new Map(Object.entries(graph.output_tokens ?? {}).map(([id, text]) => [Number(id), text])),
    normalize: graph.normalize,
    nEdgesTotal: graph.n_edges_total,
    nEdgesDropped: graph.n_edges_dropped,
  };
}

export const FILE_FORMAT = "locattr-graph";
export const FILE_VERSION = 1;

/** An exported graph: the API's prompt response plus the model's layer order and the component
 * details the page had fetched, so File mode shows the same view without a server. */
export interface GraphFile extends PromptGraph {
  format: typeof FILE_FORMAT;
  version: typeof FILE_VERSION;
  layer_order: string[];
  components: Record<string, ComponentDetail>;
  /** Prompts in the database it was exported from (for the share filter). */
  n_prompts: number;
}

export interface OpenedFile {
  graph: PromptGraph;
  layerOrder: string[];
  components: Record<string, ComponentDetail>;
  nPrompts: number;
}

export function toGraphFile(
  graph: PromptGraph,
  layerOrder: string[],
  components: Record<string, ComponentDetail>,
  nPrompts = 0,
): GraphFile {
  return { format: FILE_FORMAT, version: FILE_VERSION, ...graph, layer_order: layerOrder, components, n_prompts: nPrompts };
}

function fail(message: string): never {
  throw new Error(`not a locattr graph file: ${message}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parse an exported graph (or a raw `/api/prompt/{id}` response); throws a readable Error. */
export function parseGraphFile(text: string): OpenedFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    fail(`invalid JSON (${(error as Error).message})`);
  }
  if (!isRecord(data)) fail("expected a JSON object");
  if (data.format !== undefined && data.format !== FILE_FORMAT) fail(`format is ${String(data.format)}`);
  if (data.version !== undefined && data.version !== FILE_VERSION) {
    fail(`version ${String(data.version)} (this page reads version ${FILE_VERSION})`);
  }
  const { tokens, nodes, edges } = data;
  if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === "string")) fail("`tokens` must be a list of strings");
  if (!Array.isArray(nodes)) fail("`nodes` must be a list");
  if (!Array.isArray(edges)) fail("`edges` must be a list");
  nodes.forEach((node: unknown, i) => {
    if (
      !isRecord(node) ||
      typeof node.layer !== "string" ||
      !Number.isInteger(node.pos) ||
      !Number.isInteger(node.component) ||
      typeof node.ci !== "number"
    ) {
      fail(`nodes[${i}] needs layer (string), pos, component (integers) and ci (number)`);
    }
  });
  edges.forEach((edge: unknown, j) => {
    if (
      !isRecord(edge) ||
      !Number.isInteger(edge.source) ||
      !Number.isInteger(edge.target) ||
      typeof edge.value !== "number" ||
      (edge.source as number) < 0 ||
      (edge.target as number) < 0 ||
      (edge.source as number) >= nodes.length ||
      (edge.target as number) >= nodes.length
    ) {
      fail(`edges[${j}] needs source and target (indices into nodes) and a numeric value`);
    }
  });
  const normalize = data.normalize ?? "none";
  if (normalize !== "none" && normalize !== "l1_target" && normalize !== "l2_target") fail("unknown `normalize`");
  const graph: PromptGraph = {
    id: Number.isInteger(data.id) ? (data.id as number) : 0,
    tokens: tokens as string[],
    token_ids: Array.isArray(data.token_ids) ? (data.token_ids as number[]) : [],
    source: isRecord(data.source) ? data.source : {},
    nodes: nodes as PromptGraph["nodes"],
    edges: edges as PromptGraph["edges"],
    n_nodes_total: typeof data.n_nodes_total === "number" ? data.n_nodes_total : nodes.length,
    n_edges_total: typeof data.n_edges_total === "number" ? data.n_edges_total : edges.length,
    n_edges_dropped: typeof data.n_edges_dropped === "number" ? data.n_edges_dropped : 0,
    normalize,
    mean_ci: isRecord(data.mean_ci) ? (data.mean_ci as Record<string, number>) : {},
    output_tokens: isRecord(data.output_tokens) ? (data.output_tokens as Record<string, string>) : {},
    prompt_counts: isRecord(data.prompt_counts) ? (data.prompt_counts as Record<string, number>) : {},
  };
  const layerOrder = Array.isArray(data.layer_order)
    ? data.layer_order.filter((l): l is string => typeof l === "string")
    : [];
  const components = isRecord(data.components) ? (data.components as Record<string, ComponentDetail>) : {};
  const nPrompts = typeof data.n_prompts === "number" && data.n_prompts >= 0 ? data.n_prompts : 0;
  return { graph, layerOrder, components, nPrompts };
}
