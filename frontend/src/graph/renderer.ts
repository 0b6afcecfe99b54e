// Canvas drawing of one graph with zoom and pan. The full picture (edges batched into a few
// paths per colour and strength, nodes, labels) is drawn into an offscreen "base" canvas; hover,
// selection, focus and pins are drawn over a copy of it, so they cost one image copy plus the
// few edges involved.
import { record, timingOptions } from "../perf";
import { LABEL_FONT_PX, planAxis, type AxisPlan } from "./axis";
import { OUTPUT_LAYER, WTE_LAYER, outputToken, type GraphData } from "./data";
import type { Visible } from "./filter";
import { HitGrid } from "./hitgrid";
import type { Layout } from "./layout";
import {
  BATCH_ORDER,
  CASING,
  EDGE_BATCHES,
  HAIRLINE,
  NODE_LEVELS,
  THICK_EDGES,
  batchStyle,
  edgeBatch,
  nodeColor,
  nodeLevel,
} from "./style";

export interface Scene {
  graph: GraphData;
  visible: Visible;
  layout: Layout;
}

/** What is drawn over the base picture. */
export interface Highlight {
  hoverKey: string | null;
  /** Index of the hovered edge, -1 for none. */
  hoverEdge: number;
  pinned: ReadonlySet<string>;
  /** Index of the selected node, -1 for none. */
  selected: number;
  /** The focused token position: the rest is dimmed. */
  focus: number | null;
}

export interface RendererEvents {
  hover(node: number | null, edge: number | null, event: PointerEvent): void;
  click(node: number, event: PointerEvent): void;
  /** An edge (with no node under the pointer) was clicked. */
  clickEdge(edge: number, event: PointerEvent): void;
  /** A token label (either axis) was clicked. */
  column(pos: number): void;
}

/** A token label as drawn, for tests: `full` is false when it had to be shortened. */
export interface AxisLabel {
  axis: "input" | "output";
  pos: number;
  text: string;
  drawn: string;
  angle: number;
  full: boolean;
}

interface View {
  scale: number;
  tx: number;
  ty: number;
}

interface Gutters {
  left: number;
  top: number;
  bottom: number;
  input: AxisPlan;
  output: AxisPlan | null;
}

const PAD = 12;
const RIGHT = 12;
const GUTTER_CAP = 130;
const ROW_FONT = "11px system-ui, sans-serif";
const TOKEN_FONT = `${LABEL_FONT_PX}px ui-monospace, monospace`;
const PIN = "#d97706";
const HOVER = "#7c3aed";
const SELECTED = "#111827";
const MAX_ZOOM = 10; // beyond the fit, at most this many CSS px per world unit
const PREVIEW_ABOVE_MS = 12;
const HIGHLIGHT_THICK = 300; // wide strokes in a highlight, strongest first
const EDGE_SLACK_PX = 4;
const DEFAULT_GUTTERS: Gutters = {
  left: 120,
  top: PAD,
  bottom: 40,
  input: { angle: 0, gutter: 40, room: 40, every: 1 },
  output: null,
};

interface Prepared {
  scene: Scene;
  edgePaths: Path2D[];
  /** The wide strokes, for their white casing. */
  thickPath: Path2D;
  nodePaths: Path2D[];
  grid: HitGrid;
  byKey: Map<string, number[]>;
  byPos: Map<number, number[]>;
  adjacencyStart: Int32Array;
  adjacency: Int32Array;
  /** Rank of each shown edge by |value| (0 = strongest). */
  rank: Int32Array;
  /** Segment ends of the shown edges, in visible.edges order (world units). */
  ends: Float32Array;
  /** Strongest predicted token per position, for the top axis. */
  outputLabels: Map<number, string>;
}

export class GraphRenderer {
  private prepared: Prepared | null = null;
  private view: View = { scale: 1, tx: 0, ty: 0 };
  private fitScale = 1;
  private gutters: Gutters = DEFAULT_GUTTERS;
  private readonly base = document.createElement("canvas");
  private baseView: View | null = null;
  private highlight: Highlight = { hoverKey: null, hoverEdge: -1, pinned: new Set(), selected: -1, focus: null };
  private frame: number | null = null;
  private settle: number | null = null;
  private fullDrawMs = 0;
  private drag: { x: number; y: number; view: View; moved: boolean } | null = null;
  private cssWidth = 0;
  private cssHeight = 0;
  /** Whether the view is still a fit (no pan or zoom since): resizing then fits again. */
  private fitted = true;
  private labels: AxisLabel[] = [];
  private plannedFor: GraphData | null = null;

  constructor(
    readonly canvas: HTMLCanvasElement,
    private readonly events: RendererEvents,
  ) {
    canvas.addEventListener("pointerdown", this.onPointerDown);
    canvas.addEventListener("pointermove", this.onPointerMove);
    canvas.addEventListener("pointerup", this.onPointerUp);
    canvas.addEventListener("pointerleave", this.onPointerLeave);
    canvas.addEventListener("wheel", this.onWheel, { passive: false });
    canvas.addEventListener("dblclick", () => this.fit());
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  /** Show a new scene: fits it into view (unless `keepView`) and draws it at once. */
  setScene(scene: Scene | null, keepView = false): void {
    const t0 = performance.now();
    this.prepared = scene ? prepare(scene) : null;
    const t1 = performance.now();
    if (scene && this.plannedFor !== scene.graph) this.planGutters(scene.graph, scene.layout.rows.map((row) => row.label));
    if (!keepView || !this.baseView) this.fit(false);
    else this.view = this.clampView(this.view);
    this.drawFull();
    record("render:paths", t1 - t0);
    record("render:draw", performance.now() - t1);
  }

  setHighlight(highlight: Highlight): void {
    const h = this.highlight;
    if (
      h.hoverKey === highlight.hoverKey &&
      h.hoverEdge === highlight.hoverEdge &&
      h.pinned === highlight.pinned &&
      h.selected === highlight.selected &&
      h.focus === highlight.focus
    ) {
      return;
    }
    this.highlight = highlight;
    this.composite();
  }

  /** Fit the whole graph into the canvas. */
  fit(draw = true): void {
    const layout = this.prepared?.scene.layout;
    const { width, height } = this.plotSize();
    const { left, top } = this.gutters;
    if (!layout || layout.width <= 0 || layout.height <= 0) {
      this.fitScale = 1;
      this.view = { scale: 1, tx: left + PAD, ty: top + PAD };
    } else {
      const scale = Math.min(width / layout.width, height / layout.height, 2.5);
      this.fitScale = scale;
      this.view = {
        scale,
        tx: left + PAD + (width - layout.width * scale) / 2,
        ty: top + PAD + (height - layout.height * scale) / 2,
      };
    }
    this.fitted = true;
    if (draw) this.drawFull();
  }

  /** Width / height of the plot area (the canvas less its label gutters). */
  plotAspect(): number {
    const { width, height } = this.plotSize();
    return width / height;
  }

  /** Client (viewport) coordinates of the centre of node i, or null when hidden. */
  clientPosition(node: number): { x: number; y: number } | null {
    const layout = this.prepared?.scene.layout;
    if (!layout || Number.isNaN(layout.x[node]!)) return null;
    const rect = this.canvas.getBoundingClientRect();
    const half = layout.nodeSize / 2;
    return {
      x: rect.left + (layout.x[node]! + half) * this.view.scale + this.view.tx,
      y: rect.top + (layout.y[node]! + half) * this.view.scale + this.view.ty,
    };
  }

  /** Client coordinates of a point on shown edge j (`at` along it), or null when not shown. */
  edgeClientPoint(j: number, at = 0.5): { x: number; y: number } | null {
    const prepared = this.prepared;
    if (!prepared) return null;
    const k = prepared.scene.visible.edges.indexOf(j);
    if (k < 0) return null;
    const e = prepared.ends;
    const rect = this.canvas.getBoundingClientRect();
    const wx = e[4 * k]! + (e[4 * k + 2]! - e[4 * k]!) * at;
    const wy = e[4 * k + 1]! + (e[4 * k + 3]! - e[4 * k + 1]!) * at;
    return { x: rect.left + wx * this.view.scale + this.view.tx, y: rect.top + wy * this.view.scale + this.view.ty };
  }

  nodeAt(clientX: number, clientY: number): number {
    const prepared = this.prepared;
    const at = this.plotPoint(clientX, clientY);
    if (!prepared || !at) return -1;
    return prepared.grid.find(at.x, at.y, 3 / this.view.scale);
  }

  /** The shown edge nearest the point within a few pixels (the stronger on a tie), or -1. */
  edgeAt(clientX: number, clientY: number): number {
    const prepared = this.prepared;
    const at = this.plotPoint(clientX, clientY);
    if (!prepared || !at) return -1;
    const slack = EDGE_SLACK_PX / this.view.scale;
    const { x, y } = at;
    const e = prepared.ends;
    const edges = prepared.scene.visible.edges;
    let best = -1;
    let bestDistance = slack * slack;
    for (let k = 0; k < edges.length; k++) {
      const x0 = e[4 * k]!;
      const y0 = e[4 * k + 1]!;
      const x1 = e[4 * k + 2]!;
      const y1 = e[4 * k + 3]!;
      if (x < Math.min(x0, x1) - slack || x > Math.max(x0, x1) + slack) continue;
      if (y < Math.min(y0, y1) - slack || y > Math.max(y0, y1) + slack) continue;
      const dx = x1 - x0;
      const dy = y1 - y0;
      const length2 = dx * dx + dy * dy;
      const t = length2 > 0 ? Math.max(0, Math.min(1, ((x - x0) * dx + (y - y0) * dy) / length2)) : 0;
      const px = x0 + t * dx - x;
      const py = y0 + t * dy - y;
      const distance = px * px + py * py;
      if (distance < bestDistance) {
        bestDistance = distance;
        best = edges[k]!;
      }
    }
    return best;
  }

  /** Bring node i into view (keeping the zoom) if it is outside the plot area. */
  reveal(node: number): void {
    const layout = this.prepared?.scene.layout;
    if (!layout || Number.isNaN(layout.x[node]!)) return;
    const { scale } = this.view;
    const sx = (layout.x[node]! + layout.nodeSize / 2) * scale + this.view.tx;
    const sy = (layout.y[node]! + layout.nodeSize / 2) * scale + this.view.ty;
    const { left, top, bottom } = this.gutters;
    if (sx >= left && sx <= this.cssWidth - RIGHT && sy >= top && sy <= this.cssHeight - bottom) return;
    const cx = (left + this.cssWidth) / 2;
    const cy = (top + this.cssHeight - bottom) / 2;
    this.view = this.clampView({ scale, tx: this.view.tx + cx - sx, ty: this.view.ty + cy - sy });
    this.fitted = false;
    this.drawFull();
  }

  /** Shown nodes of component `key` (the index the highlights use). */
  nodesOf(key: string): readonly number[] {
    return this.prepared?.byKey.get(key) ?? [];
  }

  /** Rank of shown edge j by |value| (0 = strongest). */
  rankOf(edge: number): number {
    return this.prepared?.rank[edge] ?? -1;
  }

  /** The token labels as last drawn (tests check that each reads in full). */
  axisLabels(): AxisLabel[] {
    return this.labels.map((label) => ({ ...label }));
  }

  private plotSize(): { width: number; height: number } {
    const { left, top, bottom } = this.gutters;
    return {
      width: Math.max(1, this.cssWidth - left - RIGHT - 2 * PAD),
      height: Math.max(1, this.cssHeight - top - bottom - 2 * PAD),
    };
  }

  /** World coordinates of a client point inside the plot area, or null outside it. */
  private plotPoint(clientX: number, clientY: number): { x: number; y: number } | null {
    const rect = this.canvas.getBoundingClientRect();
    const sx = clientX - rect.left;
    const sy = clientY - rect.top;
    const { left, top, bottom } = this.gutters;
    if (sx < left || sy < top || sy > this.cssHeight - bottom) return null;
    const { scale, tx, ty } = this.view;
    return { x: (sx - tx) / scale, y: (sy - ty) / scale };
  }

  /** The column whose label lies under a client point in either token gutter, or -1. */
  private columnAt(clientX: number, clientY: number): number {
    const layout = this.prepared?.scene.layout;
    if (!layout) return -1;
    const rect = this.canvas.getBoundingClientRect();
    const sx = clientX - rect.left;
    const sy = clientY - rect.top;
    const { left, top, bottom } = this.gutters;
    const inGutter = sy > this.cssHeight - bottom || (this.gutters.output !== null && sy < top);
    if (!inGutter || sx < left) return -1;
    const wx = (sx - this.view.tx) / this.view.scale;
    const column = layout.columns.find((c) => wx >= c.x && wx < c.x + c.width);
    return column ? column.pos : -1;
  }

  /** Size the label gutters for `graph` (before its layout is fitted to `plotAspect()`): the
   * row labels' width, and token axes planned for columns as wide as the plot allows. */
  planGutters(graph: GraphData | null, rowLabels: readonly string[]): void {
    if (!graph) {
      this.gutters = DEFAULT_GUTTERS;
      return;
    }
    const ctx = this.base.getContext("2d")!;
    ctx.font = ROW_FONT;
    const left = Math.min(200, Math.max(70, ...rowLabels.map((label) => ctx.measureText(rowTitle(label)).width + 18)));
    ctx.font = TOKEN_FONT;
    const inputWidths = graph.tokens.map((token) => ctx.measureText(visibleToken(token)).width);
    const outputWidths = [...topOutputLabels(graph, null).values()].map((text) => ctx.measureText(text).width);
    const column = Math.max(1, this.cssWidth - left - RIGHT - 2 * PAD) / Math.max(1, graph.tokens.length);
    const input = planAxis(inputWidths, column, GUTTER_CAP);
    const output = outputWidths.length ? planAxis(outputWidths, column, GUTTER_CAP) : null;
    this.gutters = { left, top: output ? output.gutter : PAD, bottom: input.gutter, input, output };
    this.plannedFor = graph;
  }

  /** The view moved back so the graph covers the plot area (or lies inside it when smaller),
   * zoomed no further out than the fit. */
  private clampView(view: View): View {
    const layout = this.prepared?.scene.layout;
    if (!layout) return view;
    const scale = Math.min(Math.max(this.fitScale, MAX_ZOOM), Math.max(this.fitScale, view.scale));
    const { left, top, bottom } = this.gutters;
    const clampAxis = (offset: number, size: number, low: number, high: number): number => {
      const extent = size * scale;
      return extent <= high - low ? Math.min(high - extent, Math.max(low, offset)) : Math.min(low, Math.max(high - extent, offset));
    };
    return {
      scale,
      tx: clampAxis(view.tx, layout.width, left + PAD, this.cssWidth - RIGHT - PAD),
      ty: clampAxis(view.ty, layout.height, top + PAD, this.cssHeight - bottom - PAD),
    };
  }

  private resize(): void {
    const dpr = window.devicePixelRatio || 1;
    this.cssWidth = this.canvas.clientWidth;
    this.cssHeight = this.canvas.clientHeight;
    const width = Math.max(1, Math.round(this.cssWidth * dpr));
    const height = Math.max(1, Math.round(this.cssHeight * dpr));
    if (this.canvas.width === width && this.canvas.height === height) return;
    const first = this.canvas.width <= 300 && !this.baseView;
    this.canvas.width = this.base.width = width;
    this.canvas.height = this.base.height = height;
    const scene = this.prepared?.scene;
    if (scene) this.planGutters(scene.graph, scene.layout.rows.map((row) => row.label));
    if (first || this.fitted) this.fit(false);
    else this.view = this.clampView(this.view);
    this.drawFull();
  }

  /** Redraw the base picture at the current view, then the highlights over it. */
  private drawFull(): void {
    const started = performance.now();
    this.drawBase();
    this.composite();
    this.fullDrawMs = performance.now() - started;
  }

  private drawBase(): void {
    const ctx = this.base.getContext("2d", { alpha: false })!;
    const dpr = this.base.width / Math.max(1, this.cssWidth);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, this.base.width, this.base.height);
    this.baseView = { ...this.view };
    const prepared = this.prepared;
    this.labels = [];
    if (!prepared) return;
    const { layout } = prepared.scene;
    const { scale, tx, ty } = this.view;
    ctx.setTransform(dpr * scale, 0, 0, dpr * scale, dpr * tx, dpr * ty);
    layout.rows.forEach((row, r) => {
      if (r % 2 === 0) return;
      ctx.fillStyle = "#f6f7f9";
      ctx.fillRect(0, row.y, layout.width, row.height);
    });
    ctx.strokeStyle = "#e5e7eb";
    ctx.lineWidth = 1 / scale;
    ctx.beginPath();
    for (const column of layout.columns.slice(1)) {
      ctx.moveTo(column.x, 0);
      ctx.lineTo(column.x, layout.height);
    }
    ctx.stroke();
    ctx.lineCap = "butt";
    const casingAt = BATCH_ORDER.findIndex((batch) => batchStyle(batch).width > HAIRLINE);
    BATCH_ORDER.forEach((batch, k) => {
      if (k === casingAt) {
        ctx.strokeStyle = CASING;
        ctx.lineWidth = 4.5 / scale;
        ctx.stroke(prepared.thickPath);
      }
      const style = batchStyle(batch);
      ctx.strokeStyle = `rgba(${style.color}, ${style.alpha})`;
      ctx.lineWidth = (style.width === HAIRLINE ? HAIRLINE / dpr : style.width) / scale;
      ctx.stroke(prepared.edgePaths[batch]!);
    });
    prepared.nodePaths.forEach((path, k) => {
      ctx.fillStyle = nodeColor(k % NODE_LEVELS, k >= NODE_LEVELS);
      ctx.fill(path);
    });
    this.drawGutters(ctx, dpr);
  }

  private drawGutters(ctx: CanvasRenderingContext2D, dpr: number): void {
    const prepared = this.prepared!;
    const layout = prepared.scene.layout;
    const { scale, ty } = this.view;
    const { left, top, bottom: bottomGutter } = this.gutters;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const bottom = this.cssHeight - bottomGutter;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, left, this.cssHeight);
    ctx.fillRect(0, bottom, this.cssWidth, bottomGutter);
    ctx.fillRect(0, 0, this.cssWidth, top);
    ctx.strokeStyle = "#d1d5db";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(left - 0.5, top);
    ctx.lineTo(left - 0.5, bottom);
    ctx.lineTo(this.cssWidth, bottom);
    if (this.gutters.output) {
      ctx.moveTo(left - 0.5, top - 0.5);
      ctx.lineTo(this.cssWidth, top - 0.5);
    }
    ctx.stroke();
    ctx.font = ROW_FONT;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillStyle = "#374151";
    let lastY = Infinity;
    for (const row of layout.rows) {
      const y = (row.y + row.height / 2) * scale + ty;
      if (y < top || y > bottom || lastY - y < 12) continue; // bottom row first; skip overlaps
      ctx.fillText(fitText(ctx, rowTitle(row.label), left - 12), left - 8, y);
      lastY = y;
    }
    const tokens = layout.columns.map((c) => visibleToken(c.token));
    this.drawAxis(ctx, "input", this.gutters.input, bottom, tokens);
    if (this.gutters.output) {
      const outputs = layout.columns.map((c) => prepared.outputLabels.get(c.pos) ?? "");
      this.drawAxis(ctx, "output", this.gutters.output, top, outputs);
    }
  }

  /** One axis of token labels: below the plot (`input`, edge = the plot's bottom) or above it
   * (`output`, edge = its top), turned as `plan` says. */
  private drawAxis(ctx: CanvasRenderingContext2D, axis: "input" | "output", plan: AxisPlan, edge: number, texts: string[]): void {
    const layout = this.prepared!.scene.layout;
    const { scale, tx } = this.view;
    const below = axis === "input";
    ctx.save();
    ctx.beginPath();
    // the gutter's whole width: turned labels of the first columns lean into the empty corner
    ctx.rect(0, below ? edge : 0, this.cssWidth, below ? this.cssHeight - edge : edge);
    ctx.clip();
    ctx.textBaseline = "middle";
    layout.columns.forEach((column, c) => {
      const text = texts[c] ?? "";
      const x = (column.x + column.width / 2) * scale + tx;
      const width = column.width * scale;
      if (!text || c % plan.every !== 0 || x < this.gutters.left || x > this.cssWidth) return;
      ctx.font = TOKEN_FONT;
      ctx.fillStyle = below ? "#111827" : "#166534";
      const drawn = fitText(ctx, text, plan.angle === 0 ? Math.max(8, width - 4) : plan.room);
      this.labels.push({ axis, pos: column.pos, text, drawn, angle: plan.angle, full: drawn === text });
      if (plan.angle === 0) {
        ctx.textAlign = "center";
        ctx.fillText(drawn, x, below ? edge + 12 : edge - 10);
        if (below && width > 18) {
          ctx.fillStyle = "#9ca3af";
          ctx.font = "10px system-ui, sans-serif";
          ctx.fillText(String(column.pos), x, edge + 28);
        }
        return;
      }
      ctx.save();
      ctx.translate(x, below ? edge + 6 : edge - 6);
      // both axes lean left at 45° (away from the canvas's right edge); at 90° they read upwards
      const leanLeft = !below && plan.angle === 45;
      ctx.rotate(((leanLeft ? plan.angle : -plan.angle) * Math.PI) / 180);
      ctx.textAlign = below || leanLeft ? "right" : "left";
      ctx.fillText(drawn, 0, 0);
      ctx.restore();
    });
    ctx.restore();
  }

  /** Copy the base picture (moved or scaled if the view changed since), then the highlights. */
  private composite(): void {
    const started = performance.now();
    const ctx = this.canvas.getContext("2d", { alpha: false })!;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const baseView = this.baseView;
    if (baseView && baseView.scale === this.view.scale && baseView.tx === this.view.tx && baseView.ty === this.view.ty) {
      ctx.drawImage(this.base, 0, 0);
    } else if (baseView) {
      const dpr = this.canvas.width / Math.max(1, this.cssWidth);
      const ratio = this.view.scale / baseView.scale;
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      ctx.drawImage(
        this.base,
        dpr * (this.view.tx - baseView.tx * ratio),
        dpr * (this.view.ty - baseView.ty * ratio),
        this.base.width * ratio,
        this.base.height * ratio,
      );
    }
    const prepared = this.prepared;
    if (prepared) this.drawHighlights(ctx, prepared);
    if (timingOptions.flush) ctx.getImageData(0, 0, 1, 1);
    record("composite", performance.now() - started);
  }

  private drawHighlights(ctx: CanvasRenderingContext2D, prepared: Prepared): void {
    const { layout } = prepared.scene;
    const dpr = this.canvas.width / Math.max(1, this.cssWidth);
    const { scale, tx, ty } = this.view;
    const size = layout.nodeSize;
    const { hoverKey, hoverEdge, pinned, selected, focus } = this.highlight;
    const hovered = hoverKey ? (prepared.byKey.get(hoverKey) ?? []) : [];
    const focused = focus !== null ? (prepared.byPos.get(focus) ?? []) : [];
    const { left, top, bottom } = this.gutters;
    const plot = { x: left, y: top, w: this.cssWidth - left, h: this.cssHeight - bottom - top };
    // what is emphasised (the rest dimmed): the hovered component, else the focused position,
    // else the selected node
    const chosen = selected >= 0 && !Number.isNaN(layout.x[selected]!) ? [selected] : [];
    const emphasis = hovered.length ? hovered : focus !== null ? focused : chosen;
    if (emphasis.length || focus !== null) {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "rgba(255, 255, 255, 0.78)";
      ctx.fillRect(plot.x, plot.y, plot.w, plot.h);
      ctx.save();
      ctx.beginPath();
      ctx.rect(plot.x, plot.y, plot.w, plot.h);
      ctx.clip();
      ctx.setTransform(dpr * scale, 0, 0, dpr * scale, dpr * tx, dpr * ty);
      const column = focus !== null ? layout.columns[focus] : undefined;
      if (!hovered.length && column) {
        ctx.fillStyle = "rgba(124, 58, 237, 0.06)";
        ctx.fillRect(column.x, 0, column.width, layout.height);
      }
      this.drawEdgesOf(ctx, prepared, emphasis, dpr);
      ctx.restore();
    }
    ctx.setTransform(dpr * scale, 0, 0, dpr * scale, dpr * tx, dpr * ty);
    const ring = (nodes: readonly number[], color: string, width: number): void => {
      if (nodes.length === 0) return;
      const path = new Path2D();
      const grow = 1.5 / scale;
      for (const i of nodes) path.rect(layout.x[i]! - grow, layout.y[i]! - grow, size + 2 * grow, size + 2 * grow);
      ctx.fillStyle = color;
      ctx.fill(path);
      ctx.strokeStyle = color;
      ctx.lineWidth = width / scale;
      ctx.stroke(path);
    };
    for (const key of pinned) ring(prepared.byKey.get(key) ?? [], PIN, 1.5);
    ring(hovered, HOVER, 2);
    if (selected >= 0 && !Number.isNaN(layout.x[selected]!)) {
      // an open square around the node (white, then dark), visible on any shade
      const grow = 4 / scale;
      const path = new Path2D();
      path.rect(layout.x[selected]! - grow, layout.y[selected]! - grow, size + 2 * grow, size + 2 * grow);
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 4 / scale;
      ctx.stroke(path);
      ctx.strokeStyle = SELECTED;
      ctx.lineWidth = 2 / scale;
      ctx.stroke(path);
    }
    if (hoverEdge >= 0) {
      const { graph, visible } = prepared.scene;
      const s = graph.edgeSource[hoverEdge]!;
      const t = graph.edgeTarget[hoverEdge]!;
      const path = new Path2D();
      addEdge(path, layout, s, t);
      ctx.strokeStyle = CASING;
      ctx.lineWidth = 6 / scale;
      ctx.stroke(path);
      const style = batchStyle(edgeBatch(graph.edgeValue[hoverEdge]!, visible.maxAbs, 0));
      ctx.strokeStyle = `rgb(${style.color})`;
      ctx.lineWidth = 3 / scale;
      ctx.stroke(path);
      ring([s, t], HOVER, 2);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  /** The shown edges touching `nodes`, drawn strong (the strongest ones wide). */
  private drawEdgesOf(ctx: CanvasRenderingContext2D, prepared: Prepared, nodes: readonly number[], dpr: number): void {
    const { graph, layout, visible } = prepared.scene;
    const scale = this.view.scale;
    const size = layout.nodeSize;
    const paths = Array.from({ length: EDGE_BATCHES }, () => new Path2D());
    const ends = new Path2D();
    const touching = new Set<number>();
    for (const i of nodes) {
      for (let k = prepared.adjacencyStart[i]!; k < prepared.adjacencyStart[i + 1]!; k++) touching.add(prepared.adjacency[k]!);
      ends.rect(layout.x[i]!, layout.y[i]!, size, size);
    }
    [...touching]
      .sort((a, b) => prepared.rank[a]! - prepared.rank[b]!)
      .forEach((j, k) => {
        const s = graph.edgeSource[j]!;
        const t = graph.edgeTarget[j]!;
        addEdge(paths[edgeBatch(graph.edgeValue[j]!, visible.maxAbs, k < HIGHLIGHT_THICK ? 0 : THICK_EDGES)]!, layout, s, t);
        ends.rect(layout.x[s]!, layout.y[s]!, size, size);
        ends.rect(layout.x[t]!, layout.y[t]!, size, size);
      });
    ctx.lineCap = "butt";
    for (const batch of BATCH_ORDER) {
      const style = batchStyle(batch);
      ctx.strokeStyle = `rgba(${style.color}, ${Math.min(1, style.alpha + 0.3)})`;
      ctx.lineWidth = (style.width === HAIRLINE ? HAIRLINE / dpr : style.width + 0.5) / scale;
      ctx.stroke(paths[batch]!);
    }
    ctx.fillStyle = "#374151";
    ctx.fill(ends);
  }

  private requestFrame(): void {
    if (this.frame !== null) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      if (this.fullDrawMs <= PREVIEW_ABOVE_MS) {
        this.drawFull();
        return;
      }
      this.composite();
      if (this.settle !== null) clearTimeout(this.settle);
      this.settle = window.setTimeout(() => {
        this.settle = null;
        this.drawFull();
      }, 140);
    });
  }

  private readonly onPointerDown = (event: PointerEvent): void => {
    if (event.button !== 0) return;
    this.drag = { x: event.clientX, y: event.clientY, view: { ...this.view }, moved: false };
    this.canvas.setPointerCapture(event.pointerId);
  };

  private readonly onPointerMove = (event: PointerEvent): void => {
    const drag = this.drag;
    if (drag) {
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      drag.moved = true;
      this.view = this.clampView({ scale: drag.view.scale, tx: drag.view.tx + dx, ty: drag.view.ty + dy });
      this.fitted = false;
      this.canvas.style.cursor = "grabbing";
      this.requestFrame();
      return;
    }
    const started = performance.now();
    const node = this.nodeAt(event.clientX, event.clientY);
    const t0 = performance.now();
    const edge = node >= 0 ? -1 : this.edgeAt(event.clientX, event.clientY);
    if (node < 0) record("edge_hit", performance.now() - t0);
    const column = node < 0 && edge < 0 ? this.columnAt(event.clientX, event.clientY) : -1;
    this.canvas.style.cursor = node >= 0 || column >= 0 ? "pointer" : edge >= 0 ? "crosshair" : "grab";
    this.events.hover(node >= 0 ? node : null, edge >= 0 ? edge : null, event);
    record(node >= 0 ? "hover" : "edge_hover", performance.now() - started);
  };

  private readonly onPointerUp = (event: PointerEvent): void => {
    const drag = this.drag;
    this.drag = null;
    this.canvas.style.cursor = "grab";
    if (drag && !drag.moved) {
      const node = this.nodeAt(event.clientX, event.clientY);
      if (node >= 0) {
        this.events.click(node, event);
        return;
      }
      const column = this.columnAt(event.clientX, event.clientY);
      if (column >= 0) {
        this.events.column(column);
        return;
      }
      const edge = this.edgeAt(event.clientX, event.clientY);
      if (edge >= 0) this.events.clickEdge(edge, event);
    }
  };

  private readonly onPointerLeave = (event: PointerEvent): void => {
    if (!this.drag) this.events.hover(null, null, event);
  };

  private readonly onWheel = (event: WheelEvent): void => {
    event.preventDefault();
    const rect = this.canvas.getBoundingClientRect();
    const mx = event.clientX - rect.left;
    const my = event.clientY - rect.top;
    const factor = Math.exp(-event.deltaY * (event.deltaMode === 1 ? 0.05 : 0.0015));
    const wanted = this.view.scale * factor;
    const scale = Math.min(Math.max(this.fitScale, MAX_ZOOM), Math.max(this.fitScale, wanted));
    const ratio = scale / this.view.scale;
    this.view = this.clampView({ scale, tx: mx - (mx - this.view.tx) * ratio, ty: my - (my - this.view.ty) * ratio });
    this.fitted = false;
    this.requestFrame();
  };
}

function prepare(scene: Scene): Prepared {
  const { graph, visible, layout } = scene;
  const edgePaths = Array.from({ length: EDGE_BATCHES }, () => new Path2D());
  const thickPath = new Path2D();
  const rank = new Int32Array(graph.edgeValue.length);
  const ends = new Float32Array(4 * visible.edges.length);
  const half = layout.nodeSize / 2;
  // weakest first, so within a batch the strongest are drawn last
  for (let k = visible.edges.length - 1; k >= 0; k--) {
    const j = visible.edges[k]!;
    const s = graph.edgeSource[j]!;
    const t = graph.edgeTarget[j]!;
    rank[j] = k;
    ends[4 * k] = layout.x[s]! + half;
    ends[4 * k + 1] = layout.y[s]! + half;
    ends[4 * k + 2] = layout.x[t]! + half;
    ends[4 * k + 3] = layout.y[t]! + half;
    const batch = edgeBatch(graph.edgeValue[j]!, visible.maxAbs, k);
    addEdge(edgePaths[batch]!, layout, s, t);
    if (batchStyle(batch).width > HAIRLINE) addEdge(thickPath, layout, s, t);
  }
  const nodePaths = Array.from({ length: 2 * NODE_LEVELS }, () => new Path2D());
  const outputLayer = graph.layers.indexOf(OUTPUT_LAYER);
  const wteLayer = graph.layers.indexOf(WTE_LAYER);
  const byKey = new Map<string, number[]>();
  const byPos = new Map<number, number[]>();
  for (const i of visible.nodes) {
    const layer = graph.nodeLayer[i]!;
    const level = layer === wteLayer ? NODE_LEVELS - 3 : nodeLevel(graph.nodeCi[i]!);
    const path = nodePaths[(layer === outputLayer ? NODE_LEVELS : 0) + level]!;
    path.rect(layout.x[i]!, layout.y[i]!, layout.nodeSize, layout.nodeSize);
    push(byKey, graph.nodeKey[i]!, i);
    push(byPos, graph.nodePos[i]!, i);
  }
  const outputLabels = topOutputLabels(graph, visible.nodes);
  const n = graph.nodeCi.length;
  const adjacencyStart = new Int32Array(n + 1);
  for (const j of visible.edges) {
    adjacencyStart[graph.edgeSource[j]! + 1]! += 1;
    adjacencyStart[graph.edgeTarget[j]! + 1]! += 1;
  }
  for (let i = 0; i < n; i++) adjacencyStart[i + 1]! += adjacencyStart[i]!;
  const adjacency = new Int32Array(adjacencyStart[n]!);
  const fill = adjacencyStart.slice(0, n);
  for (const j of visible.edges) {
    adjacency[fill[graph.edgeSource[j]!]!++] = j;
    adjacency[fill[graph.edgeTarget[j]!]!++] = j;
  }
  const grid = new HitGrid(layout.x, layout.y, layout.nodeSize, visible.nodes, layout.width, layout.height);
  return { scene, edgePaths, thickPath, nodePaths, grid, byKey, byPos, adjacencyStart, adjacency, rank, ends, outputLabels };
}

/** Per position, the most probable predicted token among `nodes` (all nodes when null) as
 * "token 0.62". */
export function topOutputLabels(graph: GraphData, nodes: Int32Array | null): Map<number, string> {
  const outputLayer = graph.layers.indexOf(OUTPUT_LAYER);
  const best = new Map<number, number>();
  if (outputLayer < 0) return new Map();
  const consider = (i: number): void => {
    if (graph.nodeLayer[i] !== outputLayer) return;
    const at = best.get(graph.nodePos[i]!);
    if (at === undefined || graph.nodeCi[i]! > graph.nodeCi[at]!) best.set(graph.nodePos[i]!, i);
  };
  if (nodes) for (const i of nodes) consider(i);
  else for (let i = 0; i < graph.nodeCi.length; i++) consider(i);
  return new Map([...best].map(([pos, i]) => [pos, `${visibleToken(outputToken(graph, i))} ${graph.nodeCi[i]!.toFixed(2)}`]));
}

function push<K>(map: Map<K, number[]>, key: K, value: number): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function addEdge(path: Path2D, layout: Layout, source: number, target: number): void {
  const half = layout.nodeSize / 2;
  path.moveTo(layout.x[source]! + half, layout.y[source]! + half);
  path.lineTo(layout.x[target]! + half, layout.y[target]! + half);
}

/** Row labels for people: the pseudo-layers say what they hold. */
export function rowTitle(label: string): string {
  if (label === WTE_LAYER) return "input tokens";
  if (label === OUTPUT_LAYER) return "predictions";
  return label;
}

/** Token text made visible: a leading space as a dot, newlines and tabs as arrows. */
export function visibleToken(token: string): string {
  return token.replace(/\n/g, "↵").replace(/\t/g, "→").replace(/^ /, "·");
}

function fitText(ctx: CanvasRenderingContext2D, text: string, width: number): string {
  if (ctx.measureText(text).width <= width) return text;
  let end = text.length;
  while (end > 1 && ctx.measureText(`${text.slice(0, end)}…`).width > width) end--;
  return `${text.slice(0, end)}…`;
}
