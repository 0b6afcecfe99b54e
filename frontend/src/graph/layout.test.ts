import { describe, expect, it } from "vitest";
import { toGraphData } from "./data";
import { DEFAULT_FILTERS, filterGraph } from "./filter";
import { DEFAULT_LAYOUT, fitLayout, layoutGraph, naturalLayerOrder, orderRows, rowKeyOf } from "./layout";
import { promptGraph } from "./testing";

const ORDER = [
  "h.0.attn.q_proj",
  "h.0.attn.k_proj",
  "h.0.attn.v_proj",
  "h.0.attn.o_proj",
  "h.0.mlp.c_fc",
  "h.0.mlp.down_proj",
  "h.1.attn.q_proj",
];

describe("rows", () => {
  it("q, k and v of a block share a row; others get their own", () => {
    expect(rowKeyOf("h.3.attn.k_proj")).toBe("h.3.attn.qkv");
    expect(rowKeyOf("h.3.attn.o_proj")).toBe("h.3.attn.o_proj");
    const rows = orderRows(ORDER, ["output", "h.0.mlp.c_fc", "wte"]);
    expect(rows.map((r) => r.label)).toEqual([
      "wte",
      "h.0.attn.q/k/v",
      "h.0.attn.o_proj",
      "h.0.mlp.c_fc",
      "h.0.mlp.down_proj",
      "h.1.attn.q/k/v",
      "output",
    ]);
    expect(rows[1]!.layers).toEqual(["h.0.attn.q_proj", "h.0.attn.k_proj", "h.0.attn.v_proj"]);
  });

  it("orders unknown layer names by block, then projection", () => {
    expect(naturalLayerOrder(["h.1.mlp.c_fc", "h.0.mlp.down_proj", "h.0.attn.v_proj", "h.0.attn.q_proj"])).toEqual([
      "h.0.attn.q_proj",
      "h.0.attn.v_proj",
      "h.0.mlp.down_proj",
      "h.1.mlp.c_fc",
    ]);
    expect(orderRows([], ["h.1.mlp.c_fc", "h.0.mlp.c_fc"]).map((r) => r.key)).toEqual(["h.0.mlp.c_fc", "h.1.mlp.c_fc"]);
  });
});

describe("layoutGraph", () => {
  const data = toGraphData(
    promptGraph(
      ["The", " cat", " sat"],
      [
        ["h.0.attn.q_proj", 0, 5, 1], // 0
        ["h.0.attn.v_proj", 0, 6, 1], // 1
        ["h.0.mlp.c_fc", 0, 1, 1], // 2
        ["h.0.mlp.c_fc", 0, 2, 1], // 3
        ["h.0.mlp.c_fc", 2, 3, 1], // 4
        ["h.1.attn.q_proj", 2, 9, 1], // 5
      ],
      [
        [0, 2, 0.1],
        [1, 3, 0.9],
        [3, 5, 0.5],
        [4, 5, -0.2],
      ],
    ),
  );
  const visible = filterGraph(data, DEFAULT_FILTERS);
  const layout = layoutGraph(data, visible, ORDER);
  const centreY = (i: number) => layout.y[i]! + layout.nodeSize / 2;

  it("puts earlier layers lower (larger y) and every row in model order", () => {
    expect(centreY(0)).toBeGreaterThan(centreY(2));
    expect(centreY(2)).toBeGreaterThan(centreY(5));
    expect(centreY(0)).toBe(centreY(1)); // q and v share the row
    expect(layout.rows.map((r) => r.key)).toEqual([
      "h.0.attn.qkv",
      "h.0.attn.o_proj",
      "h.0.mlp.c_fc",
      "h.0.mlp.down_proj",
      "h.1.attn.qkv",
    ]);
    const ys = layout.rows.map((r) => r.y);
    expect([...ys].sort((a, b) => b - a)).toEqual(ys);
  });

  it("puts each node in its token's column, more important nodes first", () => {
    for (const i of visible.nodes) {
      const column = layout.columns[data.nodePos[i]!]!;
      expect(layout.x[i]).toBeGreaterThanOrEqual(column.x);
      expect(layout.x[i]! + layout.nodeSize).toBeLessThanOrEqual(column.x + column.width);
    }
    expect(layout.x[3]).toBeLessThan(layout.x[2]!); // c_fc:2 carries 1.4, c_fc:1 only 0.1
    expect(layout.columns.map((c) => c.token)).toEqual(["The", " cat", " sat"]);
    expect(layout.width).toBe(layout.columns.reduce((sum, c) => sum + c.width, 0));
  });

  it("never overlaps two nodes", () => {
    const seen = new Set<string>();
    for (const i of visible.nodes) {
      const at = `${layout.x[i]},${layout.y[i]}`;
      expect(seen.has(at)).toBe(false);
      seen.add(at);
    }
  });

  it("leaves hidden nodes unplaced", () => {
    const some = filterGraph(data, { ...DEFAULT_FILTERS, topK: 1 });
    const partial = layoutGraph(data, some, ORDER);
    expect(Number.isNaN(partial.x[0]!)).toBe(true);
    expect(Number.isNaN(partial.x[1]!)).toBe(false);
  });

  it("wraps a crowded cell into lines and grows the row", () => {
    const nodes: [string, number, number, number][] = Array.from({ length: 40 }, (_, c) => ["h.0.mlp.c_fc", 0, c, 1]);
    const crowded = toGraphData(promptGraph(["x"], nodes, []));
    const all = filterGraph(crowded, DEFAULT_FILTERS);
    const wrapped = layoutGraph(crowded, all, ORDER, { ...DEFAULT_LAYOUT, maxPerLine: 8 });
    expect(new Set(Array.from(wrapped.y)).size).toBe(5);
    expect(new Set(Array.from(wrapped.x)).size).toBe(8);
  });

  it("fits the canvas shape: a tall canvas gets a narrower layout than a wide one", () => {
    const nodes: [string, number, number, number][] = Array.from({ length: 60 }, (_, c) => ["h.0.mlp.c_fc", c % 3, c, 1]);
    const many = toGraphData(promptGraph(["a", "b", "c"], nodes, []));
    const all = filterGraph(many, DEFAULT_FILTERS);
    const tall = fitLayout(many, all, ORDER, 0.5);
    const wide = fitLayout(many, all, ORDER, 4);
    expect(tall.width / tall.height).toBeLessThan(wide.width / wide.height);
  });
});
