// Where every shown node goes: one row per layer (q/k/v of a block share one), inputs at the
// bottom and outputs at the top; one column per token position. World units are CSS pixels
// at zoom 1; y grows downwards as on a canvas.
import { OUTPUT_LAYER, WTE_LAYER, type GraphData } from "./data";
import type { Visible } from "./filter";

export interface LayoutOptions {
  nodeSize: number;
  nodeGap: number;
  /** Nodes per line inside one (row, token) cell before wrapping to the next line. */
  maxPerLine: number;
  minColumnWidth: number;
  columnPad: number;
  rowGap: number;
}

export const DEFAULT_LAYOUT: LayoutOptions = {
  nodeSize: 6,
  nodeGap: 3,
  maxPerLine: 16,
  minColumnWidth: 24,
  columnPad: 6,
  rowGap: 24,
};

/** Line lengths tried when fitting a layout to the canvas's shape. */
export const LINE_CHOICES = [2, 3, 4, 6, 8, 12, 16, 24, 32, 48];

export interface Row {
  key: string;
  label: string;
  /** Layers drawn in this row, in model order (q, k, v for a shared attention row). */
  layers: string[];
  /** Top edge and height in world units. */
  y: number;
  height: number;
}

export interface Column {
  pos: number;
  token: string;
  x: number;
  width: number;
}

export interface Layout {
  maxPerLine: number;
  /** Top-left corner of node i's square (NaN for hidden nodes). */
  x: Float32Array;
  y: Float32Array;
  nodeSize: number;
  /** Bottom row (inputs) first. */
  rows: Row[];
  columns: Column[];
  width: number;
  height: number;
}

const QKV = /^(.*)\.(q_proj|k_proj|v_proj)$/;
const KIND_RANK = ["q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "gate_proj", "up_proj", "down_proj", "c_proj"];

/** The row a layer is drawn in: the attention inputs of one block share a row. */
export function rowKeyOf(layer: string): string {
  const match = QKV.exec(layer);
  return match ? `${match[1]}.qkv` : layer;
}

function rowLabel(key: string): string {
  return key.endsWith(".qkv") ? `${key.slice(0, -4)}.q/k/v` : key;
}

/** A best-effort model order for layer names when the database's own order is unknown:
 * block number, then the usual order of projections inside a block, then name. */
export function naturalLayerOrder(names: Iterable<string>): string[] {
  const rank = (name: string): [number, number] => {
    const block = /(?:^|\.)(\d+)\./.exec(name);
    const kind = KIND_RANK.indexOf(name.slice(name.lastIndexOf(".") + 1));
    return [block ? Number(block[1]) : -1, kind < 0 ? KIND_RANK.length : kind];
  };
  return [...new Set(names)].sort((a, b) => {
    const [ba, ka] = rank(a);
    const [bb, kb] = rank(b);
    return ba - bb || ka - kb || (a < b ? -1 : a > b ? 1 : 0);
  });
}

/** Rows bottom to top: `wte`, the model's layers in order (then any others the graph names),
 * `output`. */
export function orderRows(layerOrder: readonly string[], graphLayers: readonly string[]): Row[] {
  const known = new Set(layerOrder);
  const extra = naturalLayerOrder(graphLayers.filter((l) => !known.has(l) && l !== WTE_LAYER && l !== OUTPUT_LAYER));
  const all = [
    ...(graphLayers.includes(WTE_LAYER) ? [WTE_LAYER] : []),
    ...layerOrder.filter((l) => l !== WTE_LAYER && l !== OUTPUT_LAYER),
    ...extra,
    ...(graphLayers.includes(OUTPUT_LAYER) ? [OUTPUT_LAYER] : []),
  ];
  const rows: Row[] = [];
  const byKey = new Map<string, Row>();
  for (const layer of all) {
    const key = rowKeyOf(layer);
    let row = byKey.get(key);
    if (!row) {
      row = { key, label: rowLabel(key), layers: [], y: 0, height: 0 };
      byKey.set(key, row);
      rows.push(row);
    }
    if (!row.layers.includes(layer)) row.layers.push(layer);
  }
  return rows;
}

/** Sum of |value| over the shown edges touching each node: orders nodes inside a cell. */
export function nodeImportance(graph: GraphData, visible: Visible): Float64Array {
  const importance = new Float64Array(graph.nodeCi.length);
  for (const j of visible.edges) {
    const magnitude = Math.abs(graph.edgeValue[j]!);
    importance[graph.edgeSource[j]!]! += magnitude;
    importance[graph.edgeTarget[j]!]! += magnitude;
  }
  return importance;
}

const MAX_ROW_GAP = 160;

/** Nodes grouped into (row, position) cells, each cell in drawing order with a slot per node. */
interface Cells {
  rows: Row[];
  nPos: number;
  tokens: string[];
  /** cell id (row * nPos + pos) -> node indices in slot order */
  members: Map<number, number[]>;
  /** cell id -> slots used (nodes plus one gap between the q, k and v groups) */
  used: Map<number, number>;
  slot: Int32Array;
}

function arrange(graph: GraphData, visible: Visible, layerOrder: readonly string[]): Cells {
  const rows = orderRows(layerOrder, graph.layers);
  const rowIndex = new Map(rows.map((row, i) => [row.key, i]));
  const layerRow = graph.layers.map((layer) => rowIndex.get(rowKeyOf(layer))!);
  const layerSub = graph.layers.map((layer) => rows[rowIndex.get(rowKeyOf(layer))!]!.layers.indexOf(layer));
  let nPos = graph.tokens.length;
  for (const i of visible.nodes) nPos = Math.max(nPos, graph.nodePos[i]! + 1);
  const importance = nodeImportance(graph, visible);
  const members = new Map<number, number[]>();
  for (const i of visible.nodes) {
    const cell = layerRow[graph.nodeLayer[i]!]! * nPos + graph.nodePos[i]!;
    const list = members.get(cell);
    if (list) list.push(i);
    else members.set(cell, [i]);
  }
  const slot = new Int32Array(graph.nodeCi.length);
  const used = new Map<number, number>();
  const sub = (i: number): number => layerSub[graph.nodeLayer[i]!]!;
  for (const [cell, list] of members) {
    list.sort(
      (a, b) => sub(a) - sub(b) || importance[b]! - importance[a]! || graph.nodeComponent[a]! - graph.nodeComponent[b]!,
    );
    let next = 0;
    list.forEach((i, k) => {
      if (k > 0 && sub(i) !== sub(list[k - 1]!)) next += 1; // a gap between q, k and v
      slot[i] = next++;
    });
    used.set(cell, next);
  }
  return { rows, nPos, tokens: graph.tokens, members, used, slot };
}

/** Lines per row and the widest line per column when cells wrap after `perLine` slots. */
function measure(cells: Cells, perLine: number): { lines: Int32Array; widest: Int32Array } {
  const lines = new Int32Array(cells.rows.length).fill(1);
  const widest = new Int32Array(cells.nPos);
  for (const [cell, slots] of cells.used) {
    const r = Math.floor(cell / cells.nPos);
    const p = cell % cells.nPos;
    lines[r] = Math.max(lines[r]!, Math.ceil(slots / perLine));
    widest[p] = Math.max(widest[p]!, Math.min(slots, perLine));
  }
  return { lines, widest };
}

function columnWidth(widest: number, options: LayoutOptions): number {
  const step = options.nodeSize + options.nodeGap;
  return Math.max(options.minColumnWidth, widest * step - options.nodeGap + 2 * options.columnPad);
}

function rowHeight(lines: number, options: LayoutOptions): number {
  return lines * (options.nodeSize + options.nodeGap) - options.nodeGap + options.rowGap;
}

function place(graph: GraphData, cells: Cells, options: LayoutOptions): Layout {
  const perLine = options.maxPerLine;
  const step = options.nodeSize + options.nodeGap;
  const { lines, widest } = measure(cells, perLine);
  const columns: Column[] = [];
  let x = 0;
  for (let p = 0; p < cells.nPos; p++) {
    const width = columnWidth(widest[p]!, options);
    columns.push({ pos: p, token: cells.tokens[p] ?? "", x, width });
    x += width;
  }
  const rows = cells.rows.map((row) => ({ ...row }));
  let y = 0;
  for (let r = rows.length - 1; r >= 0; r--) {
    rows[r]!.y = y;
    rows[r]!.height = rowHeight(lines[r]!, options);
    y += rows[r]!.height;
  }
  const nodeX = new Float32Array(graph.nodeCi.length).fill(Number.NaN);
  const nodeY = new Float32Array(graph.nodeCi.length).fill(Number.NaN);
  for (const [cell, list] of cells.members) {
    const row = rows[Math.floor(cell / cells.nPos)]!;
    const column = columns[cell % cells.nPos]!;
    const slots = cells.used.get(cell)!;
    const left = column.x + (column.width - (Math.min(slots, perLine) * step - options.nodeGap)) / 2;
    const top = row.y + (row.height - (Math.ceil(slots / perLine) * step - options.nodeGap)) / 2;
    for (const i of list) {
      nodeX[i] = left + (cells.slot[i]! % perLine) * step;
      nodeY[i] = top + Math.floor(cells.slot[i]! / perLine) * step;
    }
  }
  return { maxPerLine: perLine, x: nodeX, y: nodeY, nodeSize: options.nodeSize, rows, columns, width: x, height: y };
}

/** The layout whose width / height is closest to `aspect` (on a log scale) among line lengths
 * LINE_CHOICES: wide canvases get long lines of nodes per cell, tall ones stacked short lines.
 * A layout still wider than `aspect` gets taller gaps between rows (room for the edges). */
export function fitLayout(
  graph: GraphData,
  visible: Visible,
  layerOrder: readonly string[],
  aspect: number,
  options: LayoutOptions = DEFAULT_LAYOUT,
): Layout {
  const cells = arrange(graph, visible, layerOrder);
  let best = { perLine: options.maxPerLine, miss: Infinity, width: 1, height: 1 };
  for (const perLine of LINE_CHOICES) {
    const { lines, widest } = measure(cells, perLine);
    const width = widest.reduce((sum, w) => sum + columnWidth(w, options), 0);
    const height = lines.reduce((sum, l) => sum + rowHeight(l, options), 0);
    const miss = Math.abs(Math.log(width / Math.max(1, height) / aspect));
    if (miss < best.miss - 1e-9) best = { perLine, miss, width, height };
  }
  const missing = best.width / aspect - best.height;
  const rowGap =
    missing > 0 && cells.rows.length > 0
      ? Math.min(MAX_ROW_GAP, options.rowGap + missing / cells.rows.length)
      : options.rowGap;
  return place(graph, cells, { ...options, maxPerLine: best.perLine, rowGap });
}

export function layoutGraph(
  graph: GraphData,
  visible: Visible,
  layerOrder: readonly string[],
  options: LayoutOptions = DEFAULT_LAYOUT,
): Layout {
  return place(graph, arrange(graph, visible, layerOrder), options);
}
