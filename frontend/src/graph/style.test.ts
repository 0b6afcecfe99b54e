import { describe, expect, it } from "vitest";
import { BATCH_ORDER, EDGE_BATCHES, HAIRLINE, THICK_EDGES, batchStyle, edgeBatch, edgeLevel } from "./style";

describe("edge styles", () => {
  it("levels grow with |value| and ignore the sign", () => {
    expect(edgeLevel(1, 1)).toBe(7);
    expect(edgeLevel(-1, 1)).toBe(7);
    expect(edgeLevel(0.01, 1)).toBeLessThan(edgeLevel(0.5, 1));
    expect(edgeLevel(0, 0)).toBe(0);
  });

  it("colours by sign, opacity and width by strength", () => {
    const strong = batchStyle(edgeBatch(0.9, 1, 0));
    const weak = batchStyle(edgeBatch(0.01, 1, 0));
    expect(strong.alpha).toBeGreaterThan(weak.alpha);
    expect(strong.width).toBeGreaterThan(weak.width);
    expect(batchStyle(edgeBatch(-0.9, 1, 0)).color).not.toBe(strong.color);
  });

  it("only the strongest THICK_EDGES edges are wider than a hairline", () => {
    expect(batchStyle(edgeBatch(1, 1, THICK_EDGES - 1)).width).toBeGreaterThan(HAIRLINE);
    const capped = batchStyle(edgeBatch(1, 1, THICK_EDGES));
    expect(capped.width).toBe(HAIRLINE);
    expect(capped.alpha).toBe(batchStyle(edgeBatch(1, 1, 0)).alpha);
  });

  it("draws every batch exactly once", () => {
    expect([...BATCH_ORDER].sort((a, b) => a - b)).toEqual(Array.from({ length: EDGE_BATCHES }, (_, i) => i));
  });
});
