// A graph as a standalone SVG document: the prompt as title, row and token labels (turned so
// each reads in full), the edges and nodes as drawn on the canvas, and the legend. The PNG
// export rasterises this document, so both exports show the same picture.
import { LABEL_FONT_PX, planAxis, type AxisPlan } from "./axis";
import { OUTPUT_LAYER, WTE_LAYER } from "./data";
import { rowTitle, topOutputLabels, visibleToken, type Scene } from "./renderer";
import { BATCH_ORDER, EDGE_BATCHES, HAIRLINE, NODE_LEVELS, batchStyle, edgeBatch, nodeColor, nodeLevel } from "./style";
import { LEGEND } from "./legend";

const CHAR_PX = 0.62 * LABEL_FONT_PX; // monospace advance
const MIN_COLUMN_PX = 22;
const MIN_WIDTH = 900;
const MAX_WIDTH = 4000;
const LEFT = 150;
const RIGHT = 24;
const TITLE_CHARS = 130;

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/(\s+)/)) {
    if (line.length + word.length > width && line.trim()) {
      lines.push(line.trimEnd());
      line = word.trimStart();
    } else {
      line += word;
    }
  }
  if (line.trim()) lines.push(line.trimEnd());
  return lines.slice(0, 6);
}

function axisLabels(plan: AxisPlan, texts: string[], xs: number[], edge: number, below: boolean, colour: string): string {
  return texts
    .map((text, c) => {
      if (!text || c % plan.every !== 0) return "";
      const x = xs[c]!.toFixed(1);
      if (plan.angle === 0) {
        return `<text x="${x}" y="${(below ? edge + 14 : edge - 8).toFixed(1)}" text-anchor="middle" fill="${colour}">${escape(text)}</text>`;
      }
      const y = (below ? edge + 6 : edge - 6).toFixed(1);
      const leanLeft = !below && plan.angle === 45; // as on the canvas
      const anchor = below || leanLeft ? "end" : "start";
      const angle = leanLeft ? plan.angle : -plan.angle;
      return `<text transform="translate(${x} ${y}) rotate(${angle})" text-anchor="${anchor}" dominant-baseline="middle" fill="${colour}">${escape(text)}</text>`;
    })
    .join("");
}

/** The scene as an SVG document; `title` is the prompt's text. */
export function graphSvg(scene: Scene, title: string, subtitle: string): string {
  const { graph, visible, layout } = scene;
  const narrowest = Math.max(1, Math.min(...layout.columns.map((c) => c.width)));
  const s = Math.min(MAX_WIDTH / Math.max(1, layout.width), Math.max(MIN_COLUMN_PX / narrowest, MIN_WIDTH / Math.max(1, layout.width)));
  const tokens = layout.columns.map((c) => visibleToken(c.token));
  const outputLayer = graph.layers.indexOf(OUTPUT_LAYER);
  const best = topOutputLabels(graph, visible.nodes);
  const outputs = layout.columns.map((c) => best.get(c.pos) ?? "");
  const column = narrowest * s;
  const inputPlan = planAxis(tokens.map((t) => t.length * CHAR_PX), column, 400);
  const outputPlan = best.size ? planAxis(outputs.map((t) => t.length * CHAR_PX), column, 400) : null;
  const titleLines = wrap(title, TITLE_CHARS);
  const titleHeight = 16 + titleLines.length * 18 + 20;
  const plotTop = titleHeight + (outputPlan ? outputPlan.gutter : 8);
  const plotHeight = layout.height * s;
  const plotBottom = plotTop + plotHeight;
  const legendTop = plotBottom + inputPlan.gutter + 12;
  const width = Math.ceil(LEFT + layout.width * s + RIGHT);
  const height = Math.ceil(legendTop + 24 * LEGEND.length + 12);
  const X = (x: number) => (LEFT + x * s).toFixed(1);
  const Y = (y: number) => (plotTop + y * s).toFixed(1);
  const half = layout.nodeSize / 2;

  const paths = Array.from({ length: EDGE_BATCHES }, () => [] as string[]);
  for (let k = visible.edges.length - 1; k >= 0; k--) {
    const j = visible.edges[k]!;
    const a = graph.edgeSource[j]!;
    const b = graph.edgeTarget[j]!;
    paths[edgeBatch(graph.edgeValue[j]!, visible.maxAbs, k)]!.push(
      `M${X(layout.x[a]! + half)} ${Y(layout.y[a]! + half)}L${X(layout.x[b]! + half)} ${Y(layout.y[b]! + half)}`,
    );
  }
  const edges = BATCH_ORDER.map((batch) => {
    const style = batchStyle(batch);
    const d = paths[batch]!.join("");
    if (!d) return "";
    const strokeWidth = style.width === HAIRLINE ? 0.8 : style.width;
    return `<path d="${d}" stroke="rgb(${style.color})" stroke-opacity="${style.alpha.toFixed(3)}" stroke-width="${strokeWidth.toFixed(2)}" fill="none"/>`;
  }).join("");
  const nodePaths = Array.from({ length: 2 * NODE_LEVELS }, () => [] as string[]);
  const wteLayer = graph.layers.indexOf(WTE_LAYER);
  const size = (layout.nodeSize * s).toFixed(1);
  for (const i of visible.nodes) {
    const layer = graph.nodeLayer[i]!;
    const level = layer === wteLayer ? NODE_LEVELS - 3 : nodeLevel(graph.nodeCi[i]!);
    nodePaths[(layer === outputLayer ? NODE_LEVELS : 0) + level]!.push(`M${X(layout.x[i]!)} ${Y(layout.y[i]!)}h${size}v${size}h-${size}z`);
  }
  const nodes = nodePaths
    .map((list, k) => (list.length ? `<path d="${list.join("")}" fill="${nodeColor(k % NODE_LEVELS, k >= NODE_LEVELS)}"/>` : ""))
    .join("");
  const bands = layout.rows
    .map((row, r) => (r % 2 ? `<rect x="${X(0)}" y="${Y(row.y)}" width="${(layout.width * s).toFixed(1)}" height="${(row.height * s).toFixed(1)}" fill="#f6f7f9"/>` : ""))
    .join("");
  const rowLabels = layout.rows
    .map((row) => `<text x="${LEFT - 8}" y="${Y(row.y + row.height / 2)}" text-anchor="end" dominant-baseline="middle">${escape(rowTitle(row.label))}</text>`)
    .join("");
  const xs = layout.columns.map((c) => LEFT + (c.x + c.width / 2) * s);
  const legend = LEGEND.map((item, k) => {
    const y = legendTop + 24 * k + 8;
    const swatch =
      item.kind === "edge"
        ? `<line x1="${LEFT}" y1="${y}" x2="${LEFT + 28}" y2="${y}" stroke="${item.colour}" stroke-width="3"/>`
        : `<rect x="${LEFT + 8}" y="${y - 6}" width="12" height="12" fill="${item.colour}"/>`;
    return `${swatch}<text x="${LEFT + 38}" y="${y}" dominant-baseline="middle">${escape(item.text)}</text>`;
  }).join("");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<g font-family="system-ui, sans-serif" font-size="15" fill="#111827">`,
    ...titleLines.map((line, k) => `<text x="16" y="${28 + 18 * k}" font-family="ui-monospace, monospace" font-size="14">${escape(line)}</text>`),
    `<text x="16" y="${titleHeight - 8}" font-size="12" fill="#6b7280">${escape(subtitle)}</text>`,
    `</g>`,
    bands,
    `<g>${edges}</g><g>${nodes}</g>`,
    `<g font-family="system-ui, sans-serif" font-size="11" fill="#374151">${rowLabels}</g>`,
    `<g font-family="ui-monospace, monospace" font-size="${LABEL_FONT_PX}">`,
    axisLabels(inputPlan, tokens, xs, plotBottom, true, "#111827"),
    outputPlan ? axisLabels(outputPlan, outputs, xs, plotTop, false, "#166534") : "",
    `</g>`,
    `<g font-family="system-ui, sans-serif" font-size="12" fill="#374151">${legend}</g>`,
    `</svg>`,
  ].join("\n");
}
