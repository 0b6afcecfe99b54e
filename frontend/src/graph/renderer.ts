// Canvas drawing of one graph with zoom and pan. The full picture (edges batched into a few
// paths per colour and strength, nodes, labels) is drawn into an offscreen "base" canvas; hover
// and pins are drawn over a copy of it, so they cost one image copy plus the few edges involved.
import { OUTPUT_LAYER, WTE_LAYER, type GraphData } from "./data";
import type { Visible } from "./filter";
import { HitGrid } from "./hitgrid";
import type { Layout } from "./layout";
import { record, timingOptions } from "../perf";
import { BATCH_ORDER, EDGE_BATCHES, HAIRLINE, NODE_LEVELS, THICK_EDGES, batchStyle, edgeBatch, nodeColor, nodeLevel } from "./style";

export interface Scene {
  graph: GraphData;
  visible: Visible;
  layout: Layout;
}

export interface RendererEvents {
  hover(node: number | null, event: PointerEvent): void;
  click(node: number, event: PointerEvent): void;
}

interface View {
  scale: number;
  tx: number;
  ty: number;
}

const LEFT = 150; // CSS px gutter for row labels
const BOTTOM = 46; // CSS px gutter for token labels
const PAD = 12;
const MIN_SCALE = 0.02;
const MAX_SCALE = 12;
const PIN = "#d97706";
const HOVER = "#7c3aed";
const PREVIEW_ABOVE_MS = 12;
const HIGHLIGHT_THICK = 300; // wide strokes in a hover highlight, strongest first // redraw fully on every frame only when a full draw is this fast

interface Prepared {
  scene: Scene;
  edgePaths: Path2D[];
  nodePaths: Path2D[];
  grid: HitGrid;
  byKey: Map<string, number[]>;
  adjacencyStart: Int32Array;
  adjacency: Int32Array;
  /** Rank of each shown edge by |value| (0 = strongest). */
  rank: Int32Array;
}

export class GraphRenderer {
  private prepared: Prepared | null = null;
  private view: View = { scale: 1, tx: 0, ty: 0 };
  private readonly base = document.createElement("canvas");
  private baseView: View | null = null;
  private hoverKey: string | null = null;
  private pinned: ReadonlySet<string> = new Set();
  private frame: number | null = null;
  private settle: number | null = null;
  private fullDrawMs = 0;
  private drag: { x: number; y: number; view: View; moved: boolean } | null = null;
  private cssWidth = 0;
  private cssHeight = 0;
  /** Whether the view is still a fit (no pan or zoom since): resizing then fits again. */
  private fitted = true;

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

  /** Show a new scene: fits it into view and draws it at once (synchronously). */
  setScene(scene: Scene | null, keepView = false): void {
    const t0 = performance.now();
    this.prepared = scene ? prepare(scene) : null;
    const t1 = performance.now();
    if (!keepView || !this.baseView) this.fit(false);
    this.drawFull();
    record("render:paths", t1 - t0);
    record("render:draw", performance.now() - t1);
  }

  setHighlight(hoverKey: string | null, pinned: ReadonlySet<string>): void {
    if (hoverKey === this.hoverKey && pinned === this.pinned) return;
    this.hoverKey = hoverKey;
    this.pinned = pinned;
    this.composite();
  }

  /** Fit the whole graph into the canvas. */
  fit(draw = true): void {
    const layout = this.prepared?.scene.layout;
    const width = Math.max(1, this.cssWidth - LEFT - 2 * PAD);
    const height = Math.max(1, this.cssHeight - BOTTOM - 2 * PAD);
    if (!layout || layout.width <= 0 || layout.height <= 0) {
      this.view = { scale: 1, tx: LEFT + PAD, ty: PAD };
    } else {
      const scale = clamp(Math.min(width / layout.width, height / layout.height, 2.5), MIN_SCALE, MAX_SCALE);
      this.view = {
        scale,
        tx: LEFT + PAD + (width - layout.width * scale) / 2,
        ty: PAD + (height - layout.height * scale) / 2,
      };
    }
    this.fitted = true;
    if (draw) this.drawFull();
  }

  /** Width / height of the plot area (the canvas less its label gutters). */
  plotAspect(): number {
    const width = Math.max(1, this.cssWidth - LEFT - 2 * PAD);
    const height = Math.max(1, this.cssHeight - BOTTOM - 2 * PAD);
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

  nodeAt(clientX: number, clientY: number): number {
    const prepared = this.prepared;
    if (!prepared) return -1;
    const rect = this.canvas.getBoundingClientRect();
    const sx = clientX - rect.left;
    const sy = clientY - rect.top;
    if (sx < LEFT || sy > this.cssHeight - BOTTOM) return -1;
    const { scale, tx, ty } = this.view;
    return prepared.grid.find((sx - tx) / scale, (sy - ty) / scale, 3 / scale);
  }

  toBlob(): Promise<Blob> {
    return new Promise((resolve, reject) =>
      this.canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the canvas is empty"))), "image/png"),
    );
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
    if (first || this.fitted) this.fit(false);
    this.drawFull();
  }

  /** Redraw the base picture at the current view, then hover and pins over it. */
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
    for (const batch of BATCH_ORDER) {
      const style = batchStyle(batch);
      ctx.strokeStyle = `rgba(${style.color}, ${style.alpha})`;
      ctx.lineWidth = (style.width === HAIRLINE ? HAIRLINE / dpr : style.width) / scale;
      ctx.stroke(prepared.edgePaths[batch]!);
    }
    prepared.nodePaths.forEach((path, k) => {
      ctx.fillStyle = nodeColor(k % NODE_LEVELS, k >= NODE_LEVELS);
      ctx.fill(path);
    });
    this.drawGutters(ctx, dpr);
  }

  private drawGutters(ctx: CanvasRenderingContext2D, dpr: number): void {
    const layout = this.prepared!.scene.layout;
    const { scale, tx, ty } = this.view;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const bottom = this.cssHeight - BOTTOM;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, LEFT, this.cssHeight);
    ctx.fillRect(0, bottom, this.cssWidth, BOTTOM);
    ctx.strokeStyle = "#d1d5db";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(LEFT - 0.5, 0);
    ctx.lineTo(LEFT - 0.5, bottom);
    ctx.lineTo(this.cssWidth, bottom);
    ctx.stroke();
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillStyle = "#374151";
    let lastY = Infinity;
    for (const row of layout.rows) {
      const y = (row.y + row.height / 2) * scale + ty;
      if (y < 0 || y > bottom || lastY - y < 12) continue; // bottom row first; skip overlaps
      ctx.fillText(fitText(ctx, row.label, LEFT - 12), LEFT - 8, y);
      lastY = y;
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(LEFT, bottom, this.cssWidth - LEFT, BOTTOM);
    ctx.clip();
    ctx.textAlign = "center";
    for (const column of layout.columns) {
      const x = (column.x + column.width / 2) * scale + tx;
      const width = column.width * scale;
      if (x + width / 2 < LEFT || x - width / 2 > this.cssWidth) continue;
      ctx.fillStyle = "#111827";
      ctx.font = "12px ui-monospace, monospace";
      ctx.fillText(fitText(ctx, visibleToken(column.token), Math.max(8, width - 4)), x, bottom + 14);
      ctx.fillStyle = "#9ca3af";
      ctx.font = "10px system-ui, sans-serif";
      if (width > 18) ctx.fillText(String(column.pos), x, bottom + 32);
    }
    ctx.restore();
  }

  /** Copy the base picture (moved or scaled if the view changed since), then pins and hover. */
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
    const { graph, layout, visible } = prepared.scene;
    const dpr = this.canvas.width / Math.max(1, this.cssWidth);
    const { scale, tx, ty } = this.view;
    const size = layout.nodeSize;
    const hovered = this.hoverKey ? (prepared.byKey.get(this.hoverKey) ?? []) : [];
    if (hovered.length > 0) {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "rgba(255, 255, 255, 0.75)";
      ctx.fillRect(LEFT, 0, this.cssWidth - LEFT, this.cssHeight - BOTTOM);
      ctx.save();
      ctx.beginPath();
      ctx.rect(LEFT, 0, this.cssWidth - LEFT, this.cssHeight - BOTTOM);
      ctx.clip();
      ctx.setTransform(dpr * scale, 0, 0, dpr * scale, dpr * tx, dpr * ty);
      const paths = Array.from({ length: EDGE_BATCHES }, () => new Path2D());
      const ends = new Path2D();
      const touching: number[] = [];
      for (const i of hovered) {
        for (let k = prepared.adjacencyStart[i]!; k < prepared.adjacencyStart[i + 1]!; k++) {
          touching.push(prepared.adjacency[k]!);
        }
      }
      // the hovered component's strongest edges get the wide strokes the budget allows
      touching.sort((a, b) => prepared.rank[a]! - prepared.rank[b]!);
      touching.forEach((j, k) => {
        const s = graph.edgeSource[j]!;
        const t = graph.edgeTarget[j]!;
        const rank = k < HIGHLIGHT_THICK ? 0 : THICK_EDGES;
        addEdge(paths[edgeBatch(graph.edgeValue[j]!, visible.maxAbs, rank)]!, layout, s, t);
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
      ctx.restore();
    }
    ctx.setTransform(dpr * scale, 0, 0, dpr * scale, dpr * tx, dpr * ty);
    const ring = (nodes: number[], color: string, width: number): void => {
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
    for (const key of this.pinned) ring(prepared.byKey.get(key) ?? [], PIN, 1.5);
    ring(hovered, HOVER, 2);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
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
      this.view = { scale: drag.view.scale, tx: drag.view.tx + dx, ty: drag.view.ty + dy };
      this.fitted = false;
      this.canvas.style.cursor = "grabbing";
      this.requestFrame();
      return;
    }
    const started = performance.now();
    const node = this.nodeAt(event.clientX, event.clientY);
    this.canvas.style.cursor = node >= 0 ? "pointer" : "grab";
    this.events.hover(node >= 0 ? node : null, event);
    record("hover", performance.now() - started);
  };

  private readonly onPointerUp = (event: PointerEvent): void => {
    const drag = this.drag;
    this.drag = null;
    this.canvas.style.cursor = "grab";
    if (drag && !drag.moved) {
      const node = this.nodeAt(event.clientX, event.clientY);
      if (node >= 0) this.events.click(node, event);
    }
  };

  private readonly onPointerLeave = (event: PointerEvent): void => {
    if (!this.drag) this.events.hover(null, event);
  };

  private readonly onWheel = (event: WheelEvent): void => {
    event.preventDefault();
    const rect = this.canvas.getBoundingClientRect();
    const mx = event.clientX - rect.left;
    const my = event.clientY - rect.top;
    const factor = Math.exp(-event.deltaY * (event.deltaMode === 1 ? 0.05 : 0.0015));
    const scale = clamp(this.view.scale * factor, MIN_SCALE, MAX_SCALE);
    const ratio = scale / this.view.scale;
    this.view = { scale, tx: mx - (mx - this.view.tx) * ratio, ty: my - (my - this.view.ty) * ratio };
    this.fitted = false;
    this.requestFrame();
  };
}

function prepare(scene: Scene): Prepared {
  const { graph, visible, layout } = scene;
  const edgePaths = Array.from({ length: EDGE_BATCHES }, () => new Path2D());
  const rank = new Int32Array(graph.edgeValue.length);
  // weakest first, so within a batch the strongest are drawn last
  for (let k = visible.edges.length - 1; k >= 0; k--) {
    const j = visible.edges[k]!;
    rank[j] = k;
    addEdge(edgePaths[edgeBatch(graph.edgeValue[j]!, visible.maxAbs, k)]!, layout, graph.edgeSource[j]!, graph.edgeTarget[j]!);
  }
  const nodePaths = Array.from({ length: 2 * NODE_LEVELS }, () => new Path2D());
  const outputLayer = graph.layers.indexOf(OUTPUT_LAYER);
  const wteLayer = graph.layers.indexOf(WTE_LAYER);
  const byKey = new Map<string, number[]>();
  for (const i of visible.nodes) {
    const layer = graph.nodeLayer[i]!;
    const level = layer === wteLayer ? NODE_LEVELS - 3 : nodeLevel(graph.nodeCi[i]!);
    const path = nodePaths[(layer === outputLayer ? NODE_LEVELS : 0) + level]!;
    path.rect(layout.x[i]!, layout.y[i]!, layout.nodeSize, layout.nodeSize);
    const key = graph.nodeKey[i]!;
    const members = byKey.get(key);
    if (members) members.push(i);
    else byKey.set(key, [i]);
  }
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
  return { scene, edgePaths, nodePaths, grid, byKey, adjacencyStart, adjacency, rank };
}

/** A curve leaving the source upwards and arriving at the target from below. */
function addEdge(path: Path2D, layout: Layout, source: number, target: number): void {
  const half = layout.nodeSize / 2;
  const sx = layout.x[source]! + half;
  const sy = layout.y[source]! + half;
  const tx = layout.x[target]! + half;
  const ty = layout.y[target]! + half;
  path.moveTo(sx, sy);
  path.lineTo(tx, ty);
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}

function visibleToken(token: string): string {
  return token.replace(/\n/g, "↵").replace(/\t/g, "→").replace(/^ /, "·");
}

function fitText(ctx: CanvasRenderingContext2D, text: string, width: number): string {
  if (ctx.measureText(text).width <= width) return text;
  let end = text.length;
  while (end > 1 && ctx.measureText(`${text.slice(0, end)}…`).width > width) end--;
  return `${text.slice(0, end)}…`;
}
